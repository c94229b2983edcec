//! The history routes of the API: samples per VM and per host, the
//! imbalance over time, the audit log, the actions (migrations). Query parameters: `since_ms` (Unix
//! ms, default one hour ago) and `limit` (1 to [`MAX_LIMIT`], default
//! [`DEFAULT_LIMIT`]); the newest `limit` rows at or after `since_ms` are
//! returned oldest first. A bad or unknown parameter is a 400 naming it.

use crate::api::{blocking, ApiError, ApiResult, AppState};
use crate::service::ServiceError;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// Rows returned when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 1000;
/// Largest `limit` accepted.
pub const MAX_LIMIT: usize = 10_000;
/// How far back `since_ms` defaults to, ms (one hour).
pub const DEFAULT_WINDOW_MS: u64 = 3_600_000;

/// Parsed query parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Oldest time wanted, ms since the Unix epoch.
    pub since_ms: u64,
    /// Most rows wanted.
    pub limit: usize,
}

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// Parses `since_ms` (if `allow_since`) and `limit` from a raw query string;
/// `now_ms` gives the default window.
pub fn parse_query(
    raw: Option<&str>,
    now_ms: u64,
    allow_since: bool,
) -> Result<HistoryQuery, ApiError> {
    let mut q = HistoryQuery {
        since_ms: now_ms.saturating_sub(DEFAULT_WINDOW_MS),
        limit: DEFAULT_LIMIT,
    };
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "since_ms" if allow_since => {
                q.since_ms = value
                    .parse()
                    .ok()
                    .filter(|ms| *ms <= crate::api_shape::MAX_SAFE_INTEGER)
                    .ok_or_else(|| {
                        bad(format!(
                            "query parameter since_ms = {value:?}: expected milliseconds since the Unix epoch (a whole number from 0 to 2^53 - 1)"
                        ))
                    })?;
            }
            "limit" => {
                q.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "query parameter limit = {value:?}: expected a whole number from 1 to {MAX_LIMIT}"
                        ))
                    })?;
            }
            _ => {
                let known = if allow_since {
                    "since_ms and limit"
                } else {
                    "limit"
                };
                return Err(bad(format!(
                    "unknown query parameter {key:?}: this route takes {known}"
                )));
            }
        }
    }
    Ok(q)
}

fn not_found(what: &str, name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no {what} {name:?} in the cluster or its history"),
    )
}

/// `GET /api/v1/vms/{name}/samples`.
pub async fn vm_samples(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let service = state.service.clone();
    let q = parse_query(raw.as_deref(), service.now_unix_ms(), true)?;
    let current = service
        .cluster()
        .and_then(|v| v.vms.into_iter().find(|vm| vm.name == name))
        .map(|vm| vm.host);
    let vm = name.clone();
    let (host, samples) = blocking(move || {
        let store = service.store();
        let host = match current {
            Some(h) => Some(h),
            None => store.last_host_of(&vm)?,
        };
        if host.is_none() {
            return Ok((None, Vec::new()));
        }
        Ok::<_, ServiceError>((host, store.vm_samples(&vm, q.since_ms, q.limit)?))
    })
    .await?;
    let Some(host) = host else {
        return Err(not_found("VM", &name));
    };
    Ok(Json(serde_json::json!({"vm": name, "host": host, "samples": samples})).into_response())
}

/// `GET /api/v1/hosts/{name}/samples`.
pub async fn host_samples(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let service = state.service.clone();
    let q = parse_query(raw.as_deref(), service.now_unix_ms(), true)?;
    let current = service
        .cluster()
        .is_some_and(|v| v.hosts.iter().any(|h| h.name == name));
    let host = name.clone();
    let samples = blocking(move || {
        let store = service.store();
        if !current && !store.knows_host(&host)? {
            return Ok(None);
        }
        Ok::<_, ServiceError>(Some(store.host_samples(&host, q.since_ms, q.limit)?))
    })
    .await?;
    let Some(samples) = samples else {
        return Err(not_found("host", &name));
    };
    Ok(Json(serde_json::json!({"host": name, "samples": samples})).into_response())
}

/// `GET /api/v1/imbalance`.
pub async fn imbalance(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let service = state.service.clone();
    let q = parse_query(raw.as_deref(), service.now_unix_ms(), true)?;
    let points = blocking(move || {
        Ok::<_, ServiceError>(service.store().imbalance_points(q.since_ms, q.limit)?)
    })
    .await?;
    Ok(Json(serde_json::json!({ "points": points })).into_response())
}

/// `GET /api/v1/audit` (only `limit`).
pub async fn audit(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let service = state.service.clone();
    let q = parse_query(raw.as_deref(), service.now_unix_ms(), false)?;
    let entries =
        blocking(move || Ok::<_, ServiceError>(service.store().audit_entries(q.limit)?)).await?;
    Ok(Json(serde_json::json!({ "entries": entries })).into_response())
}

/// `GET /api/v1/actions` (`limit`, and `vm`): the migrations Keel started;
/// with `vm=NAME`, that VM's, each with the plan and round that decided it
/// and what the decision used (`keel why`).
pub async fn actions(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let service = state.service.clone();
    let (vm, rest) = take_param(raw.as_deref(), "vm")?;
    let q = parse_query(rest.as_deref(), service.now_unix_ms(), false)?;
    match vm {
        None => {
            let actions =
                blocking(move || Ok::<_, ServiceError>(service.store().actions(q.limit)?)).await?;
            Ok(Json(serde_json::json!({ "actions": actions })).into_response())
        }
        Some(vm) => {
            let name = vm.clone();
            let actions = blocking(move || {
                Ok::<_, ServiceError>(service.store().actions_of_vm(&name, q.limit)?)
            })
            .await?;
            Ok(Json(serde_json::json!({ "vm": vm, "actions": actions })).into_response())
        }
    }
}

/// Takes parameter `key` out of a raw query (percent-decoded; given at
/// most once, not empty) and returns it with the rest of the query.
fn take_param(raw: Option<&str>, key: &str) -> Result<(Option<String>, Option<String>), ApiError> {
    let mut value = None;
    let mut rest = Vec::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if k == key => {
                let decoded = percent_decode(v).filter(|d| !d.is_empty()).ok_or_else(|| {
                    bad(format!(
                        "query parameter {key} = {v:?}: expected a percent-encoded UTF-8 name"
                    ))
                })?;
                crate::api_shape::check_name(key, &decoded)?;
                if value.replace(decoded).is_some() {
                    return Err(bad(format!("query parameter {key} given twice")));
                }
            }
            _ => rest.push(pair),
        }
    }
    Ok((value, (!rest.is_empty()).then(|| rest.join("&"))))
}

/// Decodes `%XX` escapes and `+` (a space); `None` on a bad escape or
/// bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_defaults_values_and_errors() {
        let now = 10_000_000;
        let d = parse_query(None, now, true).unwrap();
        assert_eq!(
            (d.since_ms, d.limit),
            (now - DEFAULT_WINDOW_MS, DEFAULT_LIMIT)
        );
        let q = parse_query(Some("since_ms=5&limit=7"), now, true).unwrap();
        assert_eq!((q.since_ms, q.limit), (5, 7));
        for (raw, needle) in [
            ("since_ms=-1", "since_ms = \"-1\""),
            ("since_ms=abc", "since_ms = \"abc\""),
            ("limit=0", "limit = \"0\""),
            ("limit=10001", "limit = \"10001\""),
            ("limit", "limit = \"\""),
            ("until=3", "unknown query parameter \"until\""),
        ] {
            let e = parse_query(Some(raw), now, true).unwrap_err();
            assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "bad_request"));
            assert!(e.message.contains(needle), "{raw}: {}", e.message);
        }
        let e = parse_query(Some("since_ms=1"), now, false).unwrap_err();
        assert!(e.message.contains("takes limit"), "{}", e.message);
    }

    #[test]
    fn the_vm_parameter_is_taken_decoded_and_checked() {
        let (vm, rest) = take_param(Some("limit=3&vm=web%2D1+a"), "vm").unwrap();
        assert_eq!(vm.as_deref(), Some("web-1 a"));
        assert_eq!(rest.as_deref(), Some("limit=3"));
        let (vm, rest) = take_param(None, "vm").unwrap();
        assert_eq!((vm, rest), (None, None));
        for raw in [
            "vm=",
            "vm=%zz",
            "vm=%ff",
            "vm=a&vm=b",
            "vm=%4",
            "vm=+a",
            "vm=a%0A",
        ] {
            let e = take_param(Some(raw), "vm").unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{raw}");
            assert!(e.message.contains("vm"), "{raw}: {}", e.message);
        }
    }
}
