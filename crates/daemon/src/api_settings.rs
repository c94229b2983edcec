//! API routes of the run-time settings and the rules:
//! `GET/PATCH /api/v1/settings`, `GET/PUT /api/v1/rules`,
//! `POST /api/v1/rules/{kind}`, `DELETE /api/v1/rules/{kind}/{name}`.
//! Mounted by [`crate::api::router`] behind the bearer token.

use crate::api::{blocking, body_bytes, json_body, ApiError, ApiResult, AppState};
use crate::settings::{NamedRule, RuleKind, SettingsChange};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use keel_model::Rules;
use std::sync::Arc;

/// The routes of this module, to merge into the guarded router.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/settings", get(settings).patch(change_settings))
        .route("/api/v1/rules", get(rules).put(replace_rules))
        .route("/api/v1/rules/{kind}", post(add_rule))
        .route("/api/v1/rules/{kind}/{name}", delete(remove_rule))
}

async fn settings(State(state): State<Arc<AppState>>) -> Response {
    Json(state.service.settings()).into_response()
}

async fn change_settings(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let change: SettingsChange = json_body(
        &body_bytes(body)?,
        r#"{"automation": "manual"|"partial"|"full", "level": 1-5}, either or both"#,
    )?;
    let service = state.service.clone();
    let settings = blocking(move || service.change_settings(change)).await?;
    tracing::info!(automation = ?settings.automation, level = settings.level, "settings changed");
    Ok(Json(settings).into_response())
}

async fn rules(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    let service = state.service.clone();
    Ok(Json(blocking(move || Ok(service.rules())).await?).into_response())
}

async fn replace_rules(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let rules: Rules = json_body(
        &body_bytes(body)?,
        "the whole rule set as GET /api/v1/rules returns it",
    )?;
    crate::api_shape::check_rules(&rules)?;
    let service = state.service.clone();
    let rules = blocking(move || service.replace_rules(rules)).await?;
    tracing::info!("rules replaced through the API");
    Ok(Json(rules).into_response())
}

/// The `kind` path parameter; another word is a 400, as the document's
/// enum of kinds makes it invalid.
fn rule_kind(raw: &str) -> ApiResult<RuleKind> {
    RuleKind::parse(raw).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "path parameter kind = {raw:?}: expected affinity, anti_affinity, vm_host or pin"
            ),
        )
    })
}

async fn add_rule(
    State(state): State<Arc<AppState>>,
    Path(kind): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let kind = rule_kind(&kind)?;
    let bytes = body_bytes(body)?;
    let rule = match kind {
        RuleKind::VmHost => {
            let rule = json_body(
                &bytes,
                r#"{"name", "vms": [...], "hosts": [...], "kind": "must"|"must_not"|"should"|"should_not", "weight"?}"#,
            )?;
            crate::api_shape::check_vm_host_rule("", &rule)?;
            NamedRule::VmHost(rule)
        }
        _ => {
            let rule = json_body(&bytes, r#"{"name", "vms": [...]}"#)?;
            crate::api_shape::check_group_rule("", &rule)?;
            NamedRule::Group(rule)
        }
    };
    let service = state.service.clone();
    let rules = blocking(move || service.add_rule(kind, rule)).await?;
    tracing::info!(kind = kind.name(), "rule added through the API");
    Ok((StatusCode::CREATED, Json(rules)).into_response())
}

async fn remove_rule(
    State(state): State<Arc<AppState>>,
    Path((kind, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let kind = rule_kind(&kind)?;
    let service = state.service.clone();
    let removed = name.clone();
    let rules = blocking(move || service.remove_rule(kind, &removed)).await?;
    tracing::info!(kind = kind.name(), rule = %name, "rule removed through the API");
    Ok(Json(rules).into_response())
}
