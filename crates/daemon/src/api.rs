//! The REST API under /api/v1, /healthz and /metrics, on axum.
//!
//! Every route but /healthz and the dashboard's data-free page shell
//! ([`crate::dashboard`]) needs `Authorization: Bearer <token>`. Errors
//! are JSON `{"code": ..., "message": ...}` with a matching status code.
//! Request bodies are capped at [`MAX_BODY_BYTES`]. Handlers that may block
//! on the driver run on blocking threads.

use crate::auth::token_matches;
use crate::plans::PlanError;
use crate::service::{Service, ServiceError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Largest request body accepted, bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The OpenAPI 3 document served at /api/v1/openapi.json.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// Every route: method and path (OpenAPI path syntax).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/cluster"),
    ("get", "/api/v1/plans"),
    ("get", "/api/v1/plans/{id}"),
    ("post", "/api/v1/plans/{id}/apply"),
    ("post", "/api/v1/plans/{id}/reject"),
    ("post", "/api/v1/hosts/{name}/maintenance"),
    ("delete", "/api/v1/hosts/{name}/maintenance"),
    ("get", "/api/v1/settings"),
    ("patch", "/api/v1/settings"),
    ("get", "/api/v1/rules"),
    ("put", "/api/v1/rules"),
    ("post", "/api/v1/rules/vm_host"),
    ("post", "/api/v1/rules/{kind}"),
    ("delete", "/api/v1/rules/{kind}/{name}"),
    ("post", "/api/v1/placements"),
    ("get", "/api/v1/vms/{name}/samples"),
    ("get", "/api/v1/hosts/{name}/samples"),
    ("get", "/api/v1/imbalance"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/actions"),
    ("get", "/api/v1/allocation"),
    ("put", "/api/v1/allocation"),
];

/// What the handlers share.
pub struct AppState {
    /// The daemon.
    pub service: Arc<Service>,
    /// The bearer token.
    pub token: String,
    /// The host-local allocation policy (`/api/v1/allocation`).
    pub allocation: std::sync::Mutex<keel_alloc::config::AllocConfig>,
}

/// An API error: status, stable code, human message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiError {
    /// HTTP status.
    #[serde(skip)]
    pub status: StatusCode,
    /// Stable machine-readable code (`unauthorized`, `not_found`, ...).
    pub code: &'static str,
    /// What went wrong, for a human.
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            ServiceError::Plan(PlanError::NotFound(_)) | ServiceError::UnknownHost(_) => {
                Self::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            ServiceError::Plan(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            ServiceError::Stale { .. } => Self::new(StatusCode::CONFLICT, "stale_plan", message),
            ServiceError::Control(_) => Self::new(StatusCode::BAD_GATEWAY, "driver_error", message),
            ServiceError::InvalidSetting { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_setting", message)
            }
            ServiceError::Placement(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_placement",
                message,
            ),
            ServiceError::NoHost(_) => Self::new(StatusCode::CONFLICT, "no_host", message),
            ServiceError::InvalidRules(_) | ServiceError::RulesDoNotFit(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_rules", message)
            }
            ServiceError::RuleExists { .. } => Self::new(StatusCode::CONFLICT, "conflict", message),
            ServiceError::UnknownRule { .. } => {
                Self::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            ServiceError::Store(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "store_error", message)
            }
        }
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The router: API, /metrics and /healthz over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/plans", get(plans))
        .route("/api/v1/plans/{id}", get(plan))
        .route("/api/v1/plans/{id}/apply", post(apply))
        .route("/api/v1/plans/{id}/reject", post(reject))
        .route(
            "/api/v1/hosts/{name}/maintenance",
            post(enter_maintenance).delete(leave_maintenance),
        )
        .merge(crate::api_settings::routes())
        .merge(crate::placement_api::routes())
        .merge(crate::api_alloc::routes())
        .route(
            "/api/v1/vms/{name}/samples",
            get(crate::history_api::vm_samples),
        )
        .route(
            "/api/v1/hosts/{name}/samples",
            get(crate::history_api::host_samples),
        )
        .route("/api/v1/imbalance", get(crate::history_api::imbalance))
        .route("/api/v1/audit", get(crate::history_api::audit))
        .route("/api/v1/actions", get(crate::history_api::actions))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(crate::dashboard::router())
        .merge(guarded)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn require_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if token_matches(t.trim(), &state.token) => next.run(request).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong bearer token")
            .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing header Authorization: Bearer <token> (the token is the file `token` in the data directory)",
        )
        .into_response(),
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.service.metrics(),
    )
        .into_response()
}

async fn cluster(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    match state.service.cluster() {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the cluster has not been observed yet",
        )),
    }
}

/// `GET /api/v1/plans[?limit=N]`: the newest `limit` plans kept (default
/// 1000), oldest first.
async fn plans(State(state): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let q = crate::history_api::parse_query(raw.as_deref(), state.service.now_unix_ms(), false)?;
    let mut plans = state.service.plans();
    let skip = plans.len().saturating_sub(q.limit);
    plans.drain(..skip);
    let body = serde_json::json!({ "automation": state.service.automation(), "plans": plans });
    Ok(Json(body).into_response())
}

/// A plan id from the path: a whole number from 1 to 2^53 - 1 (the
/// document's `PlanId`).
fn plan_id(raw: &str) -> ApiResult<u64> {
    raw.parse()
        .ok()
        .filter(|id| (1..=crate::api_shape::MAX_SAFE_INTEGER).contains(id))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("path parameter id = {raw:?}: expected a plan id, a whole number from 1 to 2^53 - 1"),
            )
        })
}

async fn plan(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(state.service.plan(plan_id(&id)?)?).into_response())
}

/// Optional body of apply, reject and maintenance: who asks, for the record.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    by: Option<String>,
}

/// The request body's bytes; a body over the size limit or unreadable is
/// a JSON error.
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(status, code, e.body_text())
    })
}

/// A JSON request body as `T`; `expected` tells the caller what to send.
/// The message names the field that did not fit (`size.cpu_cores: invalid
/// type ...`), which serde_json's own errors give only as line and column.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    expected: &str,
) -> ApiResult<T> {
    let bad = |message: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("request body: {message} (expected {expected})"),
        )
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        match e.path().to_string().as_str() {
            "." => bad(e.inner().to_string()),
            field => bad(format!("field {field}: {}", e.inner())),
        }
    })?;
    deserializer.end().map_err(|e| bad(e.to_string()))?;
    Ok(value)
}

fn action_body(body: Result<Bytes, BytesRejection>) -> ApiResult<ActionBody> {
    let bytes = body_bytes(body)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActionBody::default());
    }
    json_body(&bytes, "{\"by\": \"who\"} or nothing")
}

/// Who asks, for plan notes and the audit log: the body's `by` (at most
/// 64 characters), else `api` (the one bearer token).
fn who(body: &ActionBody) -> String {
    match &body.by {
        Some(by) => format!("{:.64}", by),
        None => "api".to_string(),
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(ApiError::from)
}

fn run_in_background(service: Arc<Service>, id: u64) {
    tokio::task::spawn_blocking(move || {
        if let Err(e) = service.run_plan(id) {
            tracing::warn!(plan = id, error = %e, "executing the plan failed");
        }
    });
}

async fn apply(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = plan_id(&id)?;
    let by = who(&action_body(body)?);
    let service = state.service.clone();
    let record = blocking(move || service.begin_apply(id, &by)).await?;
    tracing::info!(plan = id, moves = record.moves.len(), "applying plan");
    run_in_background(state.service.clone(), id);
    Ok((StatusCode::ACCEPTED, Json(record)).into_response())
}

async fn reject(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = plan_id(&id)?;
    let by = who(&action_body(body)?);
    let record = state.service.reject(id, &by)?;
    Ok(Json(record).into_response())
}

async fn enter_maintenance(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let by = who(&action_body(body)?);
    let service = state.service.clone();
    let host = name.clone();
    let plan = blocking(move || service.enter_maintenance(&host, &by)).await?;
    tracing::info!(host = %name, plan = ?plan, "host entered maintenance");
    if let Some(id) = plan {
        run_in_background(state.service.clone(), id);
    }
    let body = serde_json::json!({"host": name, "maintenance": true, "evacuation_plan": plan});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn leave_maintenance(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let by = who(&action_body(body)?);
    let service = state.service.clone();
    let host = name.clone();
    blocking(move || service.leave_maintenance(&host, &by)).await?;
    tracing::info!(host = %name, "host left maintenance");
    Ok(Json(serde_json::json!({"host": name, "maintenance": false})).into_response())
}
