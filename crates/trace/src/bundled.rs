//! The bundled PlanetLab day and the compact file format that holds it.
//!
//! `data/planetlab-20110303.keeltrace.gz` (at the workspace root) is
//! PlanetLab day 2011-03-03 as shipped with CloudSim: 1052 VMs, 288 samples
//! of 300 s, VMs in sorted (byte) order of their file names. See
//! `data/ATTRIBUTION.md` for its origin and citation.
//!
//! # Format `keeltrace` version 1
//!
//! A gzip stream whose decompressed bytes are, integers little-endian:
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `KEELTRC1` |
//! | 8 | interval in seconds, `f64` |
//! | 4 | number of VMs `n`, `u32` |
//! | 4 | samples per VM `s`, `u32` |
//! | n times | VM name: length `u16`, then that many bytes of UTF-8 |
//! | n x s | CPU samples, VM after VM, one `u8` each: integer percent 0..=100 |
//!
//! A sample `v` decodes to `v as f64 / 100.0`, exactly what the PlanetLab
//! loader (and CloudSim) produces, so only traces whose every value is such a
//! quotient, and which carry no usage, can be packed. Regenerate the file
//! with `cargo run --release -p keel-trace --example pack_planetlab -- SRC DST`.

use std::io::{Read, Write};

use keel_model::{VmSeries, WorkloadTrace};

use crate::error::{Result, TraceLoadError};

const MAGIC: &[u8; 8] = b"KEELTRC1";

/// Largest decompressed packed trace accepted (a guard against gzip bombs).
const MAX_UNPACKED_BYTES: u64 = 1 << 30;

/// The bundled file: PlanetLab 2011-03-03, packed by [`pack_planetlab`].
pub const BUNDLED_PLANETLAB_DAY: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/planetlab-20110303.keeltrace.gz"
));

/// PlanetLab day 2011-03-03 (CloudSim's `20110303` folder): 1052 VMs x 288
/// samples of 300 s, VMs in sorted file-name order, names = file names.
/// Identical to `load_planetlab(".../20110303", &TraceOrder::Sorted)`.
pub fn bundled_planetlab_day() -> WorkloadTrace {
    // The bytes are part of this crate and checked by its tests.
    unpack_planetlab(BUNDLED_PLANETLAB_DAY).expect("the bundled PlanetLab day is well-formed")
}

/// Packs a PlanetLab-like trace (values `k / 100`, `k` in 0..=100, no usage)
/// into the `keeltrace` format described in this module.
pub fn pack_planetlab(trace: &WorkloadTrace) -> Result<Vec<u8>> {
    let samples = trace.samples();
    let not_packable = |vm: &VmSeries, reason: String| TraceLoadError::NotPackable {
        vm: vm.name.clone(),
        reason,
    };
    let count = |n: usize, what: &str| {
        u32::try_from(n).map_err(|_| TraceLoadError::BadPacked(format!("too many {what}: {n}")))
    };
    let mut raw = Vec::with_capacity(24 + trace.vms.len() * (32 + samples));
    raw.extend_from_slice(MAGIC);
    raw.extend_from_slice(&trace.interval_seconds.to_le_bytes());
    raw.extend_from_slice(&count(trace.vms.len(), "VMs")?.to_le_bytes());
    raw.extend_from_slice(&count(samples, "samples")?.to_le_bytes());
    for vm in &trace.vms {
        let len = u16::try_from(vm.name.len())
            .map_err(|_| not_packable(vm, format!("name is {} bytes long", vm.name.len())))?;
        raw.extend_from_slice(&len.to_le_bytes());
        raw.extend_from_slice(vm.name.as_bytes());
    }
    for vm in &trace.vms {
        if vm.usage.is_some() {
            return Err(not_packable(vm, "it carries resource usage".into()));
        }
        if vm.cpu_utilization.len() != samples {
            return Err(not_packable(vm, "the trace is not rectangular".into()));
        }
        for (i, &cpu) in vm.cpu_utilization.iter().enumerate() {
            let percent = (cpu * 100.0).round();
            if !(0.0..=100.0).contains(&percent) || percent / 100.0 != cpu {
                return Err(not_packable(
                    vm,
                    format!("sample {i} = {cpu} is not an integer percentage / 100"),
                ));
            }
            raw.push(percent as u8);
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let io = |e: std::io::Error| TraceLoadError::BadPacked(e.to_string());
    gz.write_all(&raw).map_err(io)?;
    gz.finish().map_err(io)
}

/// Unpacks a trace packed by [`pack_planetlab`]. Malformed input is an error, never a panic.
pub fn unpack_planetlab(bytes: &[u8]) -> Result<WorkloadTrace> {
    let bad = |what: &str| TraceLoadError::BadPacked(what.into());
    let mut raw = Vec::with_capacity(bytes.len() * 2);
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_UNPACKED_BYTES)
        .read_to_end(&mut raw)
        .map_err(|e| TraceLoadError::BadPacked(format!("gzip: {e}")))?;
    let mut input = Cursor(&raw);
    if input.take(8).ok_or_else(|| bad("too short"))? != MAGIC {
        return Err(bad("not a keeltrace version 1 file (bad magic)"));
    }
    let interval = f64::from_le_bytes(input.array().ok_or_else(|| bad("no interval"))?);
    let vms = u32::from_le_bytes(input.array().ok_or_else(|| bad("no VM count"))?) as usize;
    let samples = u32::from_le_bytes(input.array().ok_or_else(|| bad("no sample count"))?) as usize;
    // Each VM takes at least 2 + samples bytes: refuse counts the data cannot hold.
    if vms.saturating_mul(samples.saturating_add(2)) > input.0.len() {
        return Err(bad("counts exceed the data"));
    }
    let mut names = Vec::with_capacity(vms);
    for _ in 0..vms {
        let len = u16::from_le_bytes(input.array().ok_or_else(|| bad("truncated names"))?);
        let name = input
            .take(len.into())
            .ok_or_else(|| bad("truncated names"))?;
        let name = std::str::from_utf8(name).map_err(|_| bad("a VM name is not UTF-8"))?;
        names.push(name.to_owned());
    }
    if input.0.len() != vms * samples {
        return Err(bad("sample data has the wrong length"));
    }
    let data = input.0;
    let series = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            // In bounds: data.len() == vms * samples, checked above.
            let values = &data[i * samples..(i + 1) * samples];
            let cpu_utilization = values
                .iter()
                .map(|&v| (v <= 100).then(|| f64::from(v) / 100.0))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("a sample exceeds 100 %"))?;
            Ok(VmSeries {
                name,
                cpu_utilization,
                usage: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    WorkloadTrace::new(interval, series).map_err(|e| TraceLoadError::BadPacked(e.to_string()))
}

/// A forward-only reader over a byte slice.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use keel_model::ResourceUsage;
    use proptest::prelude::*;

    use super::*;
    use crate::{load_planetlab, TraceOrder};

    fn vm(name: &str, cpu: Vec<f64>) -> VmSeries {
        VmSeries {
            name: name.into(),
            cpu_utilization: cpu,
            usage: None,
        }
    }

    #[test]
    fn bundled_day_has_the_expected_shape() {
        let t = bundled_planetlab_day();
        assert_eq!(t.vms.len(), 1052);
        assert_eq!(t.samples(), 288);
        assert_eq!(t.interval_seconds, 300.0);
        assert!(t
            .vms
            .windows(2)
            .all(|w| w[0].name.as_bytes() < w[1].name.as_bytes()));
        assert_eq!(
            t.vms[0].name,
            "146-179_surfsnel_dsl_internl_net_colostate_557"
        );
        assert!(BUNDLED_PLANETLAB_DAY.len() < 200 * 1024);
    }

    #[test]
    fn bundled_day_equals_the_shared_folder() {
        let Some(traces) = crate::shared_traces_dir() else {
            eprintln!(
                "SKIPPED bundled_day_equals_the_shared_folder: shared traces folder not found \
                 (expected ../shared/traces beside the workspace, or set KEEL_SHARED_DIR)"
            );
            return;
        };
        let folder = traces.join("planetlab/20110303");
        let loaded = load_planetlab(&folder, &TraceOrder::Sorted).unwrap();
        assert_eq!(bundled_planetlab_day(), loaded);
        assert_eq!(
            pack_planetlab(&loaded).unwrap(),
            BUNDLED_PLANETLAB_DAY,
            "regenerate data/"
        );
    }

    #[test]
    fn refuses_what_it_cannot_pack_exactly() {
        let cases = [
            vm("a", vec![0.123]),
            vm("a", vec![1.01]),
            vm("a", vec![-0.01]),
            vm("a", vec![f64::NAN]),
            vm(&"n".repeat(70_000), vec![0.5]),
            VmSeries {
                usage: Some(ResourceUsage::default()),
                ..vm("a", vec![0.5])
            },
        ];
        for case in cases {
            let trace = WorkloadTrace::new(300.0, vec![case]).unwrap();
            let err = pack_planetlab(&trace).unwrap_err();
            assert!(matches!(err, TraceLoadError::NotPackable { .. }), "{err}");
        }
    }

    #[test]
    fn malformed_packed_bytes_are_errors() {
        let good = pack_planetlab(&WorkloadTrace::new(60.0, vec![vm("a", vec![0.5; 4])]).unwrap())
            .unwrap();
        assert_eq!(unpack_planetlab(&good).unwrap().interval_seconds, 60.0);
        for bad in [&b""[..], b"KEELTRC1", &good[..good.len() - 3]] {
            assert!(matches!(
                unpack_planetlab(bad),
                Err(TraceLoadError::BadPacked(_))
            ));
        }
    }

    fn packable_trace() -> impl Strategy<Value = WorkloadTrace> {
        (1usize..6, 0usize..40, 1.0f64..1e6).prop_flat_map(|(vms, samples, interval)| {
            proptest::collection::vec(
                (".{0,20}", proptest::collection::vec(0u8..=100, samples)),
                vms,
            )
            .prop_map(move |series| {
                let vms = series
                    .into_iter()
                    .map(|(name, values)| {
                        vm(
                            &name,
                            values.into_iter().map(|v| f64::from(v) / 100.0).collect(),
                        )
                    })
                    .collect();
                WorkloadTrace::new(interval, vms).unwrap()
            })
        })
    }

    proptest! {
        #[test]
        fn pack_then_unpack_is_the_identity(trace in packable_trace()) {
            let bytes = pack_planetlab(&trace).unwrap();
            prop_assert_eq!(unpack_planetlab(&bytes).unwrap(), trace);
        }

        #[test]
        fn unpacking_garbage_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = unpack_planetlab(&raw);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(MAGIC).unwrap();
            gz.write_all(&raw).unwrap();
            let _ = unpack_planetlab(&gz.finish().unwrap());
        }
    }
}
