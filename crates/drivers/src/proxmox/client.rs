//! The HTTPS client of the Proxmox VE REST API: token header, the
//! `/api2/json` base path, the `{"data": ...}` envelope, and errors that say
//! what was asked, of whom, and what to do about it.
//!
//! It wraps reqwest's blocking client, which runs its own runtime on its
//! own thread: the driver may be created and used on any thread that is
//! not an async task (the daemon calls drivers from `spawn_blocking`).

use super::config::ProxmoxConfig;
use crate::https::error_chain;
use crate::DriverError;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::cell::Cell;
use std::time::Duration;

/// One cluster's API endpoints (the configured node first, then the
/// fallbacks) with its token.
pub(crate) struct Api {
    http: Client,
    /// `https://HOST:PORT/api2/json` of each node Keel may ask.
    bases: Vec<String>,
    /// The one asked now: the next is tried when it cannot be reached.
    current: Cell<usize>,
    authorization: String,
    token_id: String,
    requests: Cell<u64>,
}

/// HTTP method of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

impl Api {
    /// A client for `config` (the secret already read).
    pub(crate) fn new(config: &ProxmoxConfig, secret: &str) -> Result<Self, DriverError> {
        let setup = |message: String| DriverError::Hypervisor {
            context: format!("setting up the client of {}", config.url),
            message,
        };
        if config.insecure {
            tracing::warn!(
                url = %config.url,
                "proxmox.insecure = true: the cluster's TLS certificate is NOT verified; \
                 pin it with proxmox.fingerprint instead"
            );
        }
        let trust = crate::https::Trust {
            fingerprint: config.fingerprint.clone(),
            ca_file: config.ca_file.clone(),
            insecure: config.insecure,
        };
        let http = crate::https::blocking_client(
            &trust,
            "proxmox",
            Duration::from_secs_f64(config.request_timeout_seconds),
        )
        .map_err(setup)?;
        Ok(Self {
            http,
            bases: std::iter::once(&config.url)
                .chain(&config.fallback_urls)
                .map(|u| format!("{}/api2/json", u.trim_end_matches('/')))
                .collect(),
            current: Cell::new(0),
            authorization: format!("PVEAPIToken={}={}", config.token_id, secret.trim()),
            token_id: config.token_id.clone(),
            requests: Cell::new(0),
        })
    }

    /// Requests sent so far (for the one-request-per-interval check).
    pub(crate) fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// GET `path` (under /api2/json) with `query`; `need` names the
    /// privilege the call needs, for the 403 message.
    pub(crate) fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        need: &str,
    ) -> Result<Value, DriverError> {
        self.get_as(path, query, need)
    }

    /// GET `path` and read its `data` as a `T` straight from the bytes
    /// (no intermediate JSON tree: the resource list of a big cluster is
    /// the one large answer of every interval).
    pub(crate) fn get_as<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        need: &str,
    ) -> Result<T, DriverError> {
        self.call(Method::Get, path, query, need)
    }

    /// GET `path`, `None` when this Proxmox VE version has no such method
    /// (501: pve-manager's REST handler answers "Method ... not
    /// implemented" for a path it does not know).
    pub(crate) fn get_unless_missing<T: DeserializeOwned>(
        &self,
        path: &str,
        need: &str,
    ) -> Result<Option<T>, DriverError> {
        match self.call_optional(Method::Get, path, &[], need) {
            Err(Missing::NotImplemented) => Ok(None),
            Err(Missing::Error(e)) => Err(e),
            Ok(Some(v)) => Ok(Some(v)),
            Ok(None) => Err(DriverError::Hypervisor {
                context: format!("GET {path}"),
                message: "the answer's \"data\" is null".into(),
            }),
        }
    }

    /// POST `path` with form parameters `form`.
    pub(crate) fn post(
        &self,
        path: &str,
        form: &[(&str, String)],
        need: &str,
    ) -> Result<Value, DriverError> {
        self.call(Method::Post, path, form, need)
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        need: &str,
    ) -> Result<T, DriverError> {
        match self.call_optional(method, path, params, need) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(DriverError::Hypervisor {
                context: format!("{} {path}", method.as_str()),
                message: "the answer has no \"data\" (null)".into(),
            }),
            Err(Missing::NotImplemented) => Err(DriverError::Hypervisor {
                context: format!("{} {path}", method.as_str()),
                message: "HTTP 501: this Proxmox VE version has no such method".into(),
            }),
            Err(Missing::Error(e)) => Err(e),
        }
    }

    /// Sends the request to the current node, then to the next ones while
    /// a node cannot be reached (connect error or timeout).
    fn send(
        &self,
        method: Method,
        path: &str,
        encoded: &str,
    ) -> Result<reqwest::blocking::Response, String> {
        let mut last = String::new();
        for attempt in 0..self.bases.len() {
            let index = (self.current.get() + attempt) % self.bases.len();
            let url = format!("{}{}", self.bases[index], path);
            let request = match method {
                Method::Get if encoded.is_empty() => self.http.get(url),
                Method::Get => self.http.get(format!("{url}?{encoded}")),
                Method::Post => self
                    .http
                    .post(url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(encoded.to_string()),
            };
            match request.header("Authorization", &self.authorization).send() {
                Ok(response) => {
                    if index != self.current.get() {
                        tracing::warn!(
                            url = %self.bases[index],
                            "the Proxmox VE node asked so far cannot be reached: asking this one"
                        );
                        self.current.set(index);
                    }
                    return Ok(response);
                }
                // A POST that timed out may have been done: not repeated.
                Err(e) if e.is_connect() || (e.is_timeout() && method == Method::Get) => {
                    last = format!("{}: {}", self.bases[index], error_chain(&e));
                }
                Err(e) => return Err(error_chain(&e)),
            }
        }
        Err(last)
    }

    /// The call; `Ok(None)` for `{"data": null}` (what a method declared
    /// to return null answers, e.g. the HA migrate request of pve-ha-manager
    /// 4.x, `src/PVE/API2/HA/Resources.pm`).
    fn call_optional<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
        need: &str,
    ) -> Result<Option<T>, Missing> {
        self.requests.set(self.requests.get() + 1);
        let context = format!("{} {}", method.as_str(), path);
        let encoded = encode_params(params);
        let fail = |message: String| DriverError::Hypervisor {
            context: context.clone(),
            message,
        };
        let response = self.send(method, path, &encoded).map_err(fail)?;
        let status = response.status();
        let body = response
            .bytes()
            .map_err(|e| fail(format!("reading the answer: {}", error_chain(&e))))?;
        match status {
            StatusCode::UNAUTHORIZED => Err(fail(format!(
                "401: the cluster rejected API token {} (unknown token, wrong secret or expired); \
                 check proxmox.token_id and the secret",
                self.token_id
            ))
            .into()),
            StatusCode::FORBIDDEN => Err(fail(format!(
                "403: API token {} lacks {need}{}; grant it (docs/proxmox.md lists the roles), \
                 and note a token with privilege separation needs its own ACL entries",
                self.token_id,
                server_message(&body)
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            ))
            .into()),
            StatusCode::NOT_IMPLEMENTED => Err(Missing::NotImplemented),
            s if s.is_success() => parse_optional_envelope(&body).map_err(|m| fail(m).into()),
            s => Err(fail(format!(
                "HTTP {}{}",
                s.as_u16(),
                server_message(&body)
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ))
            .into()),
        }
    }
}

/// Why a call gave no value.
enum Missing {
    /// 501: the method does not exist in this version.
    NotImplemented,
    Error(DriverError),
}

impl From<DriverError> for Missing {
    fn from(e: DriverError) -> Self {
        Missing::Error(e)
    }
}

/// The `data` of a `{"data": ...}` answer, `None` when it is null.
fn parse_optional_envelope<T: DeserializeOwned>(body: &[u8]) -> Result<Option<T>, String> {
    match parse_envelope::<Option<T>>(body) {
        Ok(v) => Ok(v),
        Err(m) if m.contains("no \"data\" member") => Ok(None),
        Err(m) => Err(m),
    }
}

/// The `{"data": ...}` envelope.
#[derive(serde::Deserialize)]
struct Envelope<T> {
    data: Option<T>,
}

/// The `data` of a `{"data": ...}` answer; an error naming the place for
/// malformed or truncated JSON, an unexpected shape or a missing envelope.
pub(crate) fn parse_envelope<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let envelope: Envelope<T> = serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "malformed or truncated JSON"
        } else {
            "unexpected JSON"
        };
        format!("{what} in the answer ({} bytes): {e}", body.len())
    })?;
    envelope
        .data
        .ok_or_else(|| "the answer has no \"data\" member (not a /api2/json answer)".into())
}

/// The message of an error answer: Proxmox VE puts it in the status line;
/// the body may carry `message` or per-parameter `errors`.
fn server_message(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let mut parts = Vec::new();
    if let Some(m) = value.get("message").and_then(Value::as_str) {
        parts.push(m.trim().to_string());
    }
    if let Some(errors) = value.get("errors").and_then(Value::as_object) {
        for (k, v) in errors {
            parts.push(format!("{k}: {}", v.as_str().unwrap_or("invalid").trim()));
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// `application/x-www-form-urlencoded` of `params` (also the query form).
pub(crate) fn encode_params(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986's unreserved characters (path
/// segments such as UPIDs, which hold `:` and `@`, and form values).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_and_bad_json_are_told_apart() {
        let ok: Value = parse_envelope(br#"{"data":[1]}"#).unwrap();
        assert_eq!(ok, serde_json::json!([1]));
        let truncated = parse_envelope::<Value>(br#"{"data":[{"id":"node/a""#).unwrap_err();
        assert!(truncated.contains("truncated JSON"), "{truncated}");
        let bare = parse_envelope::<Value>(br#"{"errors":{}}"#).unwrap_err();
        assert!(bare.contains("no \"data\""), "{bare}");
        let shape = parse_envelope::<Vec<u32>>(br#"{"data":{"a":1}}"#).unwrap_err();
        assert!(shape.contains("unexpected JSON"), "{shape}");
    }

    #[test]
    fn upids_and_values_are_encoded() {
        assert_eq!(
            percent_encode("UPID:pve1:0000:qmigrate:100:keel@pve!b:"),
            "UPID%3Apve1%3A0000%3Aqmigrate%3A100%3Akeel%40pve%21b%3A"
        );
        assert_eq!(
            encode_params(&[("target", "pve 2".into()), ("online", "1".into())]),
            "target=pve%202&online=1"
        );
    }

    #[test]
    fn server_messages_are_collected() {
        let body = br#"{"data":null,"message":"no such VM\n","errors":{"target":"invalid"}}"#;
        assert_eq!(server_message(body).unwrap(), "no such VM; target: invalid");
        assert_eq!(server_message(b"<html>"), None);
    }
}
