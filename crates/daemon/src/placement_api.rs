//! Initial placement through the API: `POST /api/v1/placements` asks where
//! a new VM should start. Keel does not create VMs; the provisioning tool
//! (or the operator) asks, then starts the VM on the answer. The decision
//! is the planner's initial placement (`keel_policy::balance::placement`):
//! hard rules and capacity filter the hosts (each refusal with its reason),
//! the balancing objective plus soft-rule penalties ranks the rest.
//!
//! By automation level: `partial` and `full` answer `"decision": "place"`
//! (start it there), `manual` answers `"recommend"` with the same ranking
//! for an operator to choose from. Every answer is in the audit log.

use crate::api::{blocking, body_bytes, json_body, ApiResult, AppState};
use crate::service::{Automation, Service, ServiceError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use keel_model::{Resources, VmInfo};
use keel_policy::balance::placement::{place_new_vm, PlacementError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A new VM to place.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementRequest {
    /// Its name (rules may name it: add an anti-affinity rule first to
    /// keep it apart from its peers).
    pub name: String,
    /// Configured size: `cpu_cores` (vCPUs), `memory_bytes`, and I/O
    /// ceilings in bytes/s where known.
    pub size: Resources,
    /// Expected demand; default: its whole size (the safe assumption for a
    /// VM never seen).
    #[serde(default)]
    pub demand: Option<Resources>,
}

/// One host considered, best first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankedHost {
    /// Host name.
    pub host: String,
    /// Objective after placement plus soft-rule penalties (lower is better).
    pub score: f64,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    /// The VM asked about.
    pub vm: String,
    /// `place` (partial and full automation: start it on `host`) or
    /// `recommend` (manual: an operator chooses).
    pub decision: &'static str,
    /// The best host.
    pub host: String,
    /// Every host that can take it, best first.
    pub candidates: Vec<RankedHost>,
}

impl Service {
    /// Where `request`'s VM should start, on the cluster as last observed.
    pub fn place(&self, request: PlacementRequest, who: &str) -> Result<Placement, ServiceError> {
        if request.name.trim().is_empty() {
            return Err(ServiceError::Placement("name must not be empty".into()));
        }
        let (snapshot, rules) = self.control().placement_input()?.ok_or_else(|| {
            ServiceError::Placement("the cluster has not been observed yet".into())
        })?;
        if let Some(running) = snapshot.vms.iter().find(|v| v.name == request.name) {
            return Err(ServiceError::Placement(format!(
                "a VM named {:?} runs already (on {})",
                request.name, running.host
            )));
        }
        let demand = request.demand.unwrap_or(request.size);
        let vm = VmInfo::new(request.name.clone(), "", request.size, demand);
        let planner = self.tuning().planner;
        let (chosen, candidates) =
            place_new_vm(&snapshot, &rules, &vm, &planner).map_err(|e| match e {
                PlacementError::NoHost { .. } => ServiceError::NoHost(e.to_string()),
                other => ServiceError::Placement(other.to_string()),
            })?;
        let host_name = |id: keel_model::HostId| snapshot.hosts[id.index()].name.clone();
        let decision = match self.automation() {
            Automation::Manual => "recommend",
            Automation::Partial | Automation::Full => "place",
        };
        let placement = Placement {
            vm: request.name,
            decision,
            host: host_name(chosen),
            candidates: candidates
                .iter()
                .map(|c| RankedHost {
                    host: host_name(c.host),
                    score: c.score,
                })
                .collect(),
        };
        let detail = format!("{decision} on {}", placement.host);
        self.audit(who, "placement", &placement.vm, &detail);
        Ok(placement)
    }
}

/// The route of this module, to merge into the guarded router.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/placements", post(place))
}

async fn place(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: PlacementRequest = json_body(
        &body_bytes(body)?,
        r#"{"name", "size": {"cpu_cores", "memory_bytes", ...}, "demand"?: {...}}"#,
    )?;
    crate::api_shape::check_name("name", &request.name)?;
    crate::api_shape::check_amounts("size", &request.size)?;
    if let Some(demand) = &request.demand {
        crate::api_shape::check_amounts("demand", demand)?;
    }
    let service = state.service.clone();
    let placement = blocking(move || service.place(request, "api")).await?;
    tracing::info!(vm = %placement.vm, host = %placement.host, decision = placement.decision, "initial placement");
    Ok(Json(placement).into_response())
}
