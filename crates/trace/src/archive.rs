//! Streaming reads of tar archives, plain or compressed with xz or gzip.
//!
//! Nothing is extracted to disk: members are handed to the caller one after
//! the other as readers. For xz (the GWA-T-12 distribution format) the
//! pure-Rust `lzma-rs` decoder runs on a second thread and hands decompressed
//! chunks over a bounded channel.
//!
//! Memory: `lzma-rs` 0.3 decodes each xz *block* whole in memory (its LZMA2
//! decoder accumulates the block, then its xz layer copies it once more) before
//! writing any of it out. xz files made by `xz` without `-T`/`--block-size`,
//! like the Bitbrains Rnd archive (one 212 MiB block), therefore cost about
//! twice their uncompressed size in memory while loading (about 440 MiB peak
//! for Rnd VMs 1-250) and decoding does not overlap parsing. Multi-block files
//! stream block by block. A decoder with a bounded dictionary window would lift
//! this; none is used here to stay with the workspace's `lzma-rs`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

use crate::error::{Result, TraceLoadError};

/// Magic bytes that open an xz stream.
pub(crate) const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0x00];
/// Magic bytes that open a gzip stream.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Largest chunk handed from the decoder thread to the reader.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the two threads.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Does the file at `path` start with `magic`?
pub(crate) fn starts_with(path: &Path, magic: &[u8]) -> Result<bool> {
    let mut file = File::open(path).map_err(|e| TraceLoadError::io(path, e))?;
    let mut head = vec![0; magic.len()];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(TraceLoadError::io(path, e)),
        }
    }
    Ok(got == magic.len() && head == magic)
}

/// The path shown in errors for member `entry` of `archive`: `archive!/entry`.
pub(crate) fn member_path(archive: &Path, entry: &str) -> PathBuf {
    PathBuf::from(format!("{}!/{entry}", archive.display()))
}

/// Calls `visit(file_name, member_path, reader)` for every regular file of the
/// tar archive at `path`, in archive order. The archive may be plain, xz- or
/// gzip-compressed (detected by magic bytes). `file_name` is the last path
/// component (members whose name is not UTF-8 are skipped).
pub(crate) fn for_each_member(
    path: &Path,
    mut visit: impl FnMut(&str, &Path, &mut dyn BufRead) -> Result<()>,
) -> Result<()> {
    let file = File::open(path).map_err(|e| TraceLoadError::io(path, e))?;
    let mut input = BufReader::with_capacity(1 << 16, file);
    let head = input.fill_buf().map_err(|e| TraceLoadError::io(path, e))?;
    if head.starts_with(&XZ_MAGIC) {
        read_xz_tar(path, input, visit)
    } else if head.starts_with(&GZIP_MAGIC) {
        read_tar(
            path,
            flate2::bufread::MultiGzDecoder::new(input),
            &mut visit,
        )
    } else {
        read_tar(path, input, &mut visit)
    }
}

fn read_xz_tar(
    path: &Path,
    mut input: BufReader<File>,
    mut visit: impl FnMut(&str, &Path, &mut dyn BufRead) -> Result<()>,
) -> Result<()> {
    let (tx, rx) = sync_channel(CHUNKS_IN_FLIGHT);
    let decoder = thread::spawn(move || {
        let mut output = ChunkWriter { tx };
        lzma_rs::xz_decompress(&mut input, &mut output)
    });
    // The reader (and with it the receiving end) is dropped when `read_tar`
    // returns, so a decoder blocked on a full channel wakes up with BrokenPipe.
    let read = read_tar(path, ChunkReader::new(rx), &mut visit);
    let decoded = decoder.join();
    let xz_error = |message: String| TraceLoadError::Io {
        path: path.into(),
        source: io::Error::new(io::ErrorKind::InvalidData, format!("xz: {message}")),
    };
    match decoded {
        Err(_) => Err(xz_error("the decoder panicked on this input".into())),
        Ok(Err(lzma_rs::error::Error::IoError(e))) if e.kind() == io::ErrorKind::BrokenPipe => {
            // We stopped reading: either an error of our own, or the tar
            // end-of-archive marker came before the end of the xz stream.
            read
        }
        // A corrupt or truncated stream explains any error the reader saw.
        Ok(Err(e)) => Err(xz_error(e.to_string())),
        Ok(Ok(())) => read,
    }
}

fn read_tar(
    path: &Path,
    reader: impl Read,
    visit: &mut dyn FnMut(&str, &Path, &mut dyn BufRead) -> Result<()>,
) -> Result<()> {
    let io_err = |e| TraceLoadError::io(path, e);
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let entry_path = entry.path().map_err(io_err)?.into_owned();
        let Some(name) = entry_path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let name = name.to_owned();
        let shown = member_path(path, &entry_path.to_string_lossy());
        let mut reader = BufReader::with_capacity(1 << 16, entry);
        visit(&name, &shown, &mut reader)?;
    }
    Ok(())
}

/// Sends what the decoder writes, in chunks, to the reading thread.
struct ChunkWriter {
    tx: SyncSender<Vec<u8>>,
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK);
        self.tx
            .send(buf[..n].to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "reader stopped"))?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads the chunks sent by a [`ChunkWriter`]; end of input when the sender is gone.
struct ChunkReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl ChunkReader {
    fn new(rx: Receiver<Vec<u8>>) -> Self {
        Self {
            rx,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a tar archive of `(name, contents)` members.
    pub(crate) fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    pub(crate) fn xz(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        lzma_rs::xz_compress(&mut &data[..], &mut out).unwrap();
        out
    }

    fn collect(path: &Path) -> Result<Vec<(String, String)>> {
        let mut seen = Vec::new();
        for_each_member(path, |name, shown, reader| {
            let mut bytes = Vec::new();
            reader
                .read_to_end(&mut bytes)
                .map_err(|e| TraceLoadError::io(shown, e))?;
            assert!(shown.to_string_lossy().contains("!/"));
            seen.push((
                name.to_owned(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
            Ok(())
        })?;
        Ok(seen)
    }

    #[test]
    fn reads_plain_xz_and_gzip_tars() {
        let big = vec![b'x'; 3 * CHUNK + 17];
        let tar = tar_of(&[("d/1.csv", b"one"), ("2.csv", &big)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("a.tar", tar.clone()),
            ("a.tar.xz", xz(&tar)),
            ("a.tgz", gz),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let seen = collect(&p).unwrap();
            assert_eq!(seen.len(), 2, "{name}");
            assert_eq!(seen[0], ("1.csv".into(), "one".into()));
            assert_eq!(seen[1].1.len(), big.len());
        }
    }

    #[test]
    fn corrupt_xz_is_an_error_not_a_panic_or_hang() {
        let tar = tar_of(&[("1.csv", &vec![b'7'; 100_000])]);
        let mut bytes = xz(&tar);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.tar.xz");
        let mid = bytes.len() / 2;
        // lzma-rs writes xz without a block check, so a flipped data byte may
        // go unnoticed: it must only not panic or hang. Real xz files carry CRC64.
        bytes[mid] ^= 0x55;
        std::fs::write(&p, &bytes).unwrap();
        let _ = collect(&p);
        bytes[mid] ^= 0x55;
        bytes[7] ^= 0x01; // stream flags, covered by the header CRC32
        std::fs::write(&p, &bytes).unwrap();
        assert!(collect(&p).is_err());
        bytes[7] ^= 0x01;
        bytes.truncate(mid);
        std::fs::write(&p, &bytes).unwrap();
        let err = collect(&p).unwrap_err();
        assert!(err.to_string().contains("bad.tar.xz"), "{err}");
    }

    #[test]
    fn visitor_error_stops_the_decoder() {
        let tar = tar_of(&[("1.csv", &vec![b'7'; 5 * CHUNK]), ("2.csv", b"x")]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tar.xz");
        std::fs::write(&p, xz(&tar)).unwrap();
        let err = for_each_member(&p, |_, _, _| {
            Err(TraceLoadError::EmptyFile {
                path: "stop".into(),
            })
        })
        .unwrap_err();
        assert!(matches!(err, TraceLoadError::EmptyFile { .. }));
    }
}
