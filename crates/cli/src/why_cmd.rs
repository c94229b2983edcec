//! `keel why VM`: why Keel moved a VM, in one screen: for each migration
//! of the VM (newest last), the control round and plan that decided it,
//! the move's reason, benefit and cost, the inputs the decision used
//! (estimated demand and its samples, reservation, limit, shares,
//! migration-cost inputs, source and target loads before and after) and
//! the outcome. Asks `keel serve`'s `GET /api/v1/actions?vm=NAME`.

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Arguments of `keel why`.
#[derive(Debug, Args)]
pub struct WhyArgs {
    /// The VM's name.
    pub vm: String,
    /// The daemon's URL.
    #[arg(long, default_value = "http://127.0.0.1:7878")]
    pub server: String,
    /// File holding the bearer token [default: `token` in the data directory].
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The daemon's data directory, for its token [default: $XDG_DATA_HOME/keel
    /// or ~/.local/share/keel].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// SHA-256 fingerprint of the daemon's certificate (HTTPS with a
    /// self-signed certificate).
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// Most migrations shown (newest).
    #[arg(long, default_value_t = 5)]
    pub limit: usize,
    /// Print the API's JSON answer instead of the text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `keel why`.
pub fn run(args: WhyArgs) -> Result<()> {
    if !(1..=10_000).contains(&args.limit) {
        bail!("--limit {}: expected 1 to 10000", args.limit);
    }
    let token_file = match (&args.token_file, &args.data_dir) {
        (Some(f), _) => f.clone(),
        (None, Some(d)) => d.join("token"),
        (None, None) => crate::serve_cmd::default_data_dir()?.join("token"),
    };
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading the token from {}", token_file.display()))?
        .trim()
        .to_string();
    let url = format!(
        "{}/api/v1/actions?vm={}&limit={}",
        args.server.trim_end_matches('/'),
        percent_encode(&args.vm),
        args.limit
    );
    let answer = get(&url, &token, args.fingerprint.clone())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    print!("{}", render(&args.vm, &answer));
    Ok(())
}

#[cfg(not(feature = "https"))]
fn get(url: &str, _token: &str, _fingerprint: Option<String>) -> Result<Value> {
    bail!("GET {url}: keel was built without the `https` feature (on by default)")
}

#[cfg(feature = "https")]
fn get(url: &str, token: &str, fingerprint: Option<String>) -> Result<Value> {
    let trust = keel_drivers::https::Trust {
        fingerprint,
        ca_file: None,
        insecure: false,
    };
    let client =
        keel_drivers::https::blocking_client(&trust, "why", std::time::Duration::from_secs(30))
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let reply = client
        .get(url)
        .bearer_auth(token)
        .send()
        .map_err(|e| anyhow::anyhow!("GET {url}: {}", keel_drivers::https::error_chain(&e)))?;
    let status = reply.status();
    let body = reply
        .bytes()
        .map_err(|e| anyhow::anyhow!("GET {url}: {}", keel_drivers::https::error_chain(&e)))?;
    let value: Value = serde_json::from_slice(&body).with_context(|| {
        format!(
            "GET {url}: HTTP {}: the answer is not JSON",
            status.as_u16()
        )
    })?;
    if !status.is_success() {
        bail!(
            "GET {url}: HTTP {}: {}",
            status.as_u16(),
            value["message"].as_str().unwrap_or("no message")
        );
    }
    Ok(value)
}

/// Escapes everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// CPU and memory of a resource vector, as `1.25 cores, 3.0 GiB`.
fn cpu_mem(v: &Value) -> String {
    format!(
        "{:.2} cores, {:.1} GiB",
        num(&v["cpu_cores"]),
        num(&v["memory_bytes"]) / GIB
    )
}

/// CPU and memory load fractions, as `cpu 91 %, memory 40 %`.
fn load(v: &Value) -> String {
    format!(
        "cpu {:.0} %, memory {:.0} %",
        100.0 * num(&v["cpu_cores"]),
        100.0 * num(&v["memory_bytes"])
    )
}

/// The lines of one move's decision inputs (`keel_control::MoveInputs`
/// as JSON); nothing when they were not recorded.
pub fn render_inputs(out: &mut String, i: &Value) {
    if i.is_null() {
        return;
    }
    let _ = writeln!(
        out,
        "  inputs:  demand {} (cpu {}, memory {}; {} samples), held {}",
        cpu_mem(&i["demand"]),
        i["cpu_estimator"].as_str().unwrap_or("?"),
        i["memory_estimator"].as_str().unwrap_or("?"),
        i["samples"],
        cpu_mem(&i["effective_demand"]),
    );
    let limit = if i["limit"].is_null() {
        "none".to_string()
    } else {
        cpu_mem(&i["limit"])
    };
    let _ = writeln!(
        out,
        "           reservation {}, limit {limit}, shares {}, dirty {:.0} MB/s, local disk {:.1} GiB, by {}",
        cpu_mem(&i["reservation"]),
        num(&i["shares"]),
        num(&i["memory_dirty_bytes_per_second"]) / 1e6,
        num(&i["local_disk_bytes"]) / GIB,
        i["decided_by"].as_str().unwrap_or("?"),
    );
    let _ = writeln!(
        out,
        "  loads:   source {} -> {};  target {} -> {}",
        load(&i["source"]["before"]),
        load(&i["source"]["after"]),
        load(&i["target"]["before"]),
        load(&i["target"]["after"]),
    );
}

/// The one-screen text of an `actions?vm=` answer.
pub fn render(vm: &str, answer: &Value) -> String {
    let mut out = String::new();
    let actions = answer["actions"].as_array().cloned().unwrap_or_default();
    if actions.is_empty() {
        let _ = writeln!(
            out,
            "Keel has not moved {vm} (no migration in its history)."
        );
        return out;
    }
    for a in &actions {
        let plan = &a["plan"];
        let _ = writeln!(
            out,
            "{vm}: {} -> {}   plan {} ({}, {}), round at driver time {:.0} s",
            a["source"].as_str().unwrap_or("?"),
            a["target"].as_str().unwrap_or("?"),
            plan["id"],
            plan["trigger"].as_str().unwrap_or("?"),
            plan["state"].as_str().unwrap_or("?"),
            num(&plan["driver_time_seconds"]),
        );
        match &a["decision"] {
            Value::Null => {
                let _ = writeln!(out, "  decision: not recorded");
            }
            d => {
                let reason = match d["reason"]["kind"].as_str() {
                    Some("hard_rule") => {
                        format!("hard rule {}", d["reason"]["rule"].as_str().unwrap_or("?"))
                    }
                    Some(kind) => kind.replace('_', " "),
                    None => "?".into(),
                };
                let _ = writeln!(
                    out,
                    "  why:     {reason} (wave {}): imbalance -{:.4}, cost {:.1} s, {:.1} GiB to copy",
                    d["wave"],
                    num(&d["imbalance_reduction"]),
                    num(&d["cost_seconds"]),
                    num(&d["migrated_bytes"]) / GIB,
                );
                render_inputs(&mut out, &d["inputs"]);
            }
        }
        let outcome = match a["outcome"].as_str() {
            Some("done") => format!(
                "done in {:.1} s, downtime {} ms",
                num(&a["seconds"]),
                a["downtime_ms"]
                    .as_f64()
                    .map_or("?".into(), |d| format!("{d:.0}"))
            ),
            Some(other) => format!("{other}: {}", a["error"].as_str().unwrap_or("")),
            None => "in flight (or the daemon stopped meanwhile)".into(),
        };
        let _ = writeln!(out, "  outcome: {outcome}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_for_the_query() {
        assert_eq!(percent_encode("web-1.a_b~"), "web-1.a_b~");
        assert_eq!(percent_encode("a b&c/é"), "a%20b%26c%2F%C3%A9");
    }

    #[test]
    fn an_empty_history_says_so() {
        let text = render("x", &serde_json::json!({"vm": "x", "actions": []}));
        assert!(text.contains("has not moved x"), "{text}");
    }
}
