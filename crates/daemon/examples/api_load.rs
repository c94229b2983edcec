//! Load test of a running `keel serve`: an open-loop stream of API requests
//! at a fixed rate over keep-alive connections on loopback, with latency
//! percentiles measured from each request's scheduled time (so a stalled
//! server shows as latency, not as a quietly lower rate), and a check that
//! the control loop kept its interval meanwhile (`keel_iterations_total`).
//!
//!     cargo run --release -p keel-cli -- serve --data-dir /tmp/keel-load &
//!     cargo run --release -p keel-daemon --example api_load -- \
//!         --url 127.0.0.1:7878 --token-file /tmp/keel-load/token \
//!         --rate 2000 --seconds 30 --connections 32 --interval 2
//!
//! Only loopback addresses are accepted. Requests cycle over
//! GET /api/v1/cluster, /api/v1/plans, /api/v1/settings and /healthz.
//! Exit status 0 only if no request failed and the rounds kept time.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const PATHS: [&str; 4] = [
    "/api/v1/cluster",
    "/api/v1/plans",
    "/api/v1/settings",
    "/healthz",
];

struct Args {
    addr: SocketAddr,
    token: String,
    rate_per_second: f64,
    seconds: f64,
    connections: usize,
    interval_seconds: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = "127.0.0.1:7878".to_string();
    let mut token = None;
    let (mut rate, mut seconds, mut connections, mut interval) = (2000.0, 30.0, 32.0, 2.0);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| format!("{flag} {v:?}: expected a positive number"))
        };
        match flag.as_str() {
            "--url" => addr = value,
            "--token" => token = Some(value),
            "--token-file" => {
                let text = std::fs::read_to_string(&value)
                    .map_err(|e| format!("--token-file {value}: {e}"))?;
                token = Some(text.trim().to_string());
            }
            "--rate" => rate = number(&value)?,
            "--seconds" => seconds = number(&value)?,
            "--connections" => connections = number(&value)?,
            "--interval" => interval = number(&value)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("--url {addr:?}: {e} (expected ADDR:PORT)"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--url {addr}: only loopback addresses are load-tested"
        ));
    }
    Ok(Args {
        addr,
        token: token.ok_or("--token or --token-file is required")?,
        rate_per_second: rate,
        seconds,
        connections: (connections as usize).max(1),
        interval_seconds: interval,
    })
}

/// One keep-alive connection: sends GETs and reads whole responses.
struct Connection {
    reader: BufReader<TcpStream>,
    headers: String,
}

impl Connection {
    async fn open(addr: SocketAddr, token: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream),
            headers: format!("Host: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"),
        })
    }

    /// GET `path`: the status code and the body.
    async fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let request = format!("GET {path} HTTP/1.1\r\n{}", self.headers);
        self.reader.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        self.reader.read_line(&mut line).await?;
        let status = line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = None;
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length.ok_or_else(|| std::io::Error::other("no Content-Length"))?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

/// Latencies (seconds, from the scheduled send time) and failures.
#[derive(Default)]
struct Tally {
    latencies_seconds: Vec<f64>,
    errors: u64,
    non_2xx: u64,
}

async fn worker(args: Arc<Args>, index: usize, start: Instant) -> Tally {
    let period = args.connections as f64 / args.rate_per_second;
    let count = (args.seconds / period) as usize;
    let offset = period * index as f64 / args.connections as f64;
    let mut tally = Tally::default();
    let mut connection = None;
    for k in 0..count {
        let due = start + Duration::from_secs_f64(offset + period * k as f64);
        tokio::time::sleep_until(due.into()).await;
        if connection.is_none() {
            connection = Connection::open(args.addr, &args.token).await.ok();
        }
        let Some(c) = connection.as_mut() else {
            tally.errors += 1;
            continue;
        };
        match c.get(PATHS[(index + k) % PATHS.len()]).await {
            Ok((status, _)) => {
                tally.latencies_seconds.push(due.elapsed().as_secs_f64());
                if !(200..300).contains(&status) {
                    tally.non_2xx += 1;
                }
            }
            Err(_) => {
                tally.errors += 1;
                connection = None;
            }
        }
    }
    tally
}

/// The daemon's control-round counter.
async fn rounds_so_far(args: &Args) -> Result<f64, String> {
    let mut c = Connection::open(args.addr, &args.token)
        .await
        .map_err(|e| format!("connecting to {}: {e}", args.addr))?;
    let (status, body) = c.get("/metrics").await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("GET /metrics: status {status} (wrong token?)"));
    }
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("keel_iterations_total "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no keel_iterations_total in /metrics".to_string())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(args: Args) -> Result<bool, String> {
    let args = Arc::new(args);
    let rounds_before = rounds_so_far(&args).await?;
    let start = Instant::now() + Duration::from_millis(100);
    let workers: Vec<_> = (0..args.connections)
        .map(|i| tokio::spawn(worker(args.clone(), i, start)))
        .collect();
    let mut all = Tally::default();
    for w in workers {
        let t = w.await.map_err(|e| e.to_string())?;
        all.latencies_seconds.extend(t.latencies_seconds);
        all.errors += t.errors;
        all.non_2xx += t.non_2xx;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rounds = rounds_so_far(&args).await? - rounds_before;
    all.latencies_seconds.sort_by(f64::total_cmp);
    let ms = |p| percentile(&all.latencies_seconds, p) * 1e3;
    let done = all.latencies_seconds.len();
    let mean_round_interval = elapsed / rounds.max(1.0);
    println!(
        "requests {done} in {elapsed:.1} s ({:.0}/s, target {:.0}/s), errors {}, non-2xx {}",
        done as f64 / elapsed,
        args.rate_per_second,
        all.errors,
        all.non_2xx
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        ms(50.0),
        ms(90.0),
        ms(99.0),
        ms(99.9),
        ms(100.0)
    );
    println!(
        "control rounds meanwhile: {rounds} (mean interval {mean_round_interval:.2} s, configured {:.2} s)",
        args.interval_seconds
    );
    let kept_interval = mean_round_interval <= args.interval_seconds * 1.1;
    Ok(all.errors == 0 && all.non_2xx == 0 && kept_interval)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("api_load: {e}");
            return ExitCode::from(2);
        }
    };
    // One worker thread: the generator must not take both cores from the
    // daemon it measures.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => Err(format!("starting the runtime: {e}")),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("api_load: {e}");
            ExitCode::FAILURE
        }
    }
}
