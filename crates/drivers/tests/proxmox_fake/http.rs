//! A minimal HTTPS/1.1 server for the fake: rustls over std TCP, one
//! thread per connection, keep-alive, Content-Length bodies only (what
//! reqwest sends). Threads are named `fake-pve-*` so a benchmark can leave
//! their CPU time out of Keel's.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A parsed request.
pub struct Request {
    pub method: String,
    /// Path without the query, percent-decoded per segment later.
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What to send back.
pub enum Response {
    /// Status, reason phrase, body.
    Full(u16, String, Vec<u8>),
    /// Announce `length` bytes, send `body` (shorter), close.
    Truncated { length: usize, body: Vec<u8> },
}

/// Serves `handler` on 127.0.0.1 (any port) with `tls` until `stop`.
pub fn serve(
    tls: Arc<rustls::ServerConfig>,
    handler: Arc<dyn Fn(Request) -> Response + Send + Sync>,
    stop: Arc<AtomicBool>,
) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fake's port");
    let addr = listener.local_addr().expect("the fake's address");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    std::thread::Builder::new()
        .name("fake-pve-accept".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let tls = tls.clone();
                        let handler = handler.clone();
                        let stop = stop.clone();
                        let _ = std::thread::Builder::new()
                            .name("fake-pve-conn".into())
                            .spawn(move || connection(tcp, tls, handler, stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
        .expect("starting the fake");
    addr
}

fn connection(
    tcp: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    handler: Arc<dyn Fn(Request) -> Response + Send + Sync>,
    stop: Arc<AtomicBool>,
) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
    let Ok(conn) = rustls::ServerConnection::new(tls) else {
        return;
    };
    let mut stream = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    loop {
        let request = match read_request(&mut stream) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        let out = stream.get_mut();
        match handler(request) {
            Response::Full(status, reason, body) => {
                let head = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                if out
                    .write_all(head.as_bytes())
                    .and_then(|_| out.write_all(&body))
                    .and_then(|_| out.flush())
                    .is_err()
                {
                    return;
                }
            }
            Response::Truncated { length, body } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {length}\r\n\r\n"
                );
                let _ = out.write_all(head.as_bytes());
                let _ = out.write_all(&body);
                let _ = out.flush();
                out.conn.send_close_notify();
                let _ = out.flush();
                return;
            }
        }
    }
}

fn read_request<R: BufRead>(r: &mut R) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
    }))
}

/// Decodes `a=b&c=d` (percent and `+`).
pub fn decode_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Percent-decoding (`+` as space).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
