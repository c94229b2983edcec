//! Human units in the allocation TOML: `"2GiB"`, `"1500MHz"`, `"50MB/s"`,
//! `"500 IOPS"`, turned into Keel's units (cores, bytes, bytes/s) before
//! the config is deserialized.
//!
//! | resource | plain number | strings accepted |
//! |---|---|---|
//! | `cpu` | cores | `cores`, `core`, `MHz`, `GHz` (over the host's nominal MHz) |
//! | `memory` | bytes | `B`, `kB` `MB` `GB` `TB` (10^3n), `KiB` `MiB` `GiB` `TiB` (2^10n) |
//! | `disk` | bytes/s | the memory units followed by `/s`; `IOPS` (limit only: moved to `disk_iops_limit`) |
//!
//! Units are case-sensitive except `IOPS`, `MHz` and `GHz`, so that `MB`
//! (10^6) and `Mb` (bits) cannot be confused.

use crate::config::ConfigError;
use toml::{Table, Value};

/// What converting units needs from the host.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Units {
    /// The host's nominal CPU frequency, MHz (for CPU amounts in MHz).
    pub cpu_mhz: Option<f64>,
}

const BYTE_UNITS: [(&str, f64); 9] = [
    ("B", 1.0),
    ("kB", 1e3),
    ("MB", 1e6),
    ("GB", 1e9),
    ("TB", 1e12),
    ("KiB", 1024.0),
    ("MiB", 1048576.0),
    ("GiB", 1073741824.0),
    ("TiB", 1099511627776.0),
];

/// What a string quantity turned out to be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quantity {
    /// In Keel's unit for the resource (cores, bytes, bytes/s).
    Amount(f64),
    /// Disk operations per second.
    Iops(f64),
}

/// Splits `"1.5 GiB"` into the number and the unit (spaces allowed).
fn split(text: &str) -> Option<(f64, &str)> {
    let t = text.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')))
        .unwrap_or(t.len());
    // An exponent's `e` followed by a unit letter (e.g. "5e") is not a number.
    let number: f64 = t[..end].parse().ok()?;
    Some((number, t[end..].trim()))
}

/// Parses one quantity of `resource` (`cpu`, `memory` or `disk`).
pub fn parse_quantity(resource: &str, text: &str, units: &Units) -> Result<Quantity, String> {
    let (n, unit) = split(text).ok_or_else(|| "not a number followed by a unit".to_string())?;
    let bytes = |u: &str| BYTE_UNITS.iter().find(|(name, _)| *name == u).map(|x| x.1);
    let q = match resource {
        "cpu" => match unit.to_ascii_lowercase().as_str() {
            "" | "core" | "cores" => Quantity::Amount(n),
            "mhz" | "ghz" => {
                let mhz = units.cpu_mhz.filter(|m| m.is_finite() && *m > 0.0).ok_or_else(|| {
                    "CPU in MHz needs the host's nominal MHz (agent config cpu_mhz, or /proc/cpuinfo)"
                        .to_string()
                })?;
                let f = if unit.eq_ignore_ascii_case("ghz") {
                    1000.0
                } else {
                    1.0
                };
                Quantity::Amount(n * f / mhz)
            }
            _ => return Err(format!("unknown CPU unit {unit:?} (cores, MHz or GHz)")),
        },
        "memory" => match bytes(unit) {
            Some(f) => Quantity::Amount(n * f),
            None if unit.is_empty() => Quantity::Amount(n),
            None => {
                return Err(format!(
                    "unknown memory unit {unit:?} (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
                ))
            }
        },
        "disk" => {
            if unit.eq_ignore_ascii_case("iops") {
                Quantity::Iops(n)
            } else if let Some(f) = unit.strip_suffix("/s").and_then(bytes) {
                Quantity::Amount(n * f)
            } else if unit.is_empty() {
                Quantity::Amount(n)
            } else {
                return Err(format!("unknown disk unit {unit:?} (B/s, kB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s or IOPS)"));
            }
        }
        _ => return Err(format!("no units for {resource}")),
    };
    Ok(q)
}

/// Rewrites the string quantities of every `[[vm]]` and `[[pool]]` (at
/// any depth) of `table` into numbers.
pub fn resolve(table: &mut Table, units: &Units) -> Result<(), ConfigError> {
    for key in ["vm", "pool"] {
        let Some(Value::Array(items)) = table.get_mut(key) else {
            continue;
        };
        for item in items.iter_mut() {
            let Value::Table(t) = item else { continue };
            resolve_item(t, units)?;
            if key == "pool" {
                resolve(t, units)?;
            }
        }
    }
    Ok(())
}

fn resolve_item(t: &mut Table, units: &Units) -> Result<(), ConfigError> {
    let name = t
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
        .to_string();
    let mut iops_limit = None;
    for resource in crate::config::RESOURCES {
        let Some(Value::Table(bounds)) = t.get_mut(resource) else {
            continue;
        };
        for field in ["reservation", "limit"] {
            let Some(Value::String(text)) = bounds.get(field) else {
                continue;
            };
            let bad = |reason: String| ConfigError::Unit {
                item: name.clone(),
                field: format!("{resource}.{field}"),
                value: text.clone(),
                reason,
            };
            match parse_quantity(resource, text, units).map_err(bad)? {
                Quantity::Amount(x) => {
                    bounds.insert(field.into(), Value::Float(x));
                }
                Quantity::Iops(x) if field == "limit" => {
                    bounds.remove(field);
                    iops_limit = Some(x);
                }
                Quantity::Iops(_) => {
                    return Err(bad(
                        "an IOPS reservation cannot be enforced (only IOPS limits)".into(),
                    ))
                }
            }
        }
    }
    if let Some(x) = iops_limit {
        if t.contains_key("disk_iops_limit") {
            return Err(ConfigError::Unit {
                item: name,
                field: "disk.limit".into(),
                value: format!("{x} IOPS"),
                reason: "disk_iops_limit is given too".into(),
            });
        }
        t.insert("disk_iops_limit".into(), Value::Float(x));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Units = Units {
        cpu_mhz: Some(2500.0),
    };

    #[test]
    fn quantities() {
        let q = |r: &str, t: &str| parse_quantity(r, t, &HOST);
        assert_eq!(q("memory", "2GiB"), Ok(Quantity::Amount(2147483648.0)));
        assert_eq!(q("memory", "1.5 GB"), Ok(Quantity::Amount(1.5e9)));
        assert_eq!(q("memory", "4096"), Ok(Quantity::Amount(4096.0)));
        assert_eq!(q("cpu", "1250MHz"), Ok(Quantity::Amount(0.5)));
        assert_eq!(q("cpu", "5 GHz"), Ok(Quantity::Amount(2.0)));
        assert_eq!(q("cpu", "2 cores"), Ok(Quantity::Amount(2.0)));
        assert_eq!(q("disk", "50MB/s"), Ok(Quantity::Amount(5e7)));
        assert_eq!(q("disk", "1 MiB/s"), Ok(Quantity::Amount(1048576.0)));
        assert_eq!(q("disk", "500 iops"), Ok(Quantity::Iops(500.0)));
        assert!(q("memory", "2Gb")
            .unwrap_err()
            .contains("unknown memory unit"));
        assert!(q("memory", "GiB").is_err());
        assert!(q("disk", "50MB").is_err());
        assert!(parse_quantity("cpu", "100MHz", &Units::default())
            .unwrap_err()
            .contains("nominal MHz"));
    }

    #[test]
    fn iops_limits_move_to_their_field() {
        let mut t: Table = "[[pool]]\nname = \"p\"\n[[pool.vm]]\nname = \"a\"\ndisk = { limit = \"300 IOPS\" }\nmemory = { limit = \"1GiB\" }\n"
            .parse()
            .unwrap();
        resolve(&mut t, &HOST).unwrap();
        let vm = &t["pool"][0]["vm"][0];
        assert_eq!(vm["disk_iops_limit"].as_float(), Some(300.0));
        assert!(vm["disk"].get("limit").is_none());
        assert_eq!(vm["memory"]["limit"].as_float(), Some(1073741824.0));
    }
}
