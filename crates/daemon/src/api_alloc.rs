//! `GET/PUT /api/v1/allocation`: the host-local allocation policy (shares,
//! reservations, limits, pools; see docs/allocation.md), validated by
//! keel-alloc against the cluster as last observed: values, unknown VMs,
//! reservations above limits, and admission control on each host (the
//! reservations of the VMs on a host must fit its capacity). Kept in the
//! history database (as the operator sent it) and read back at start;
//! `keel agent` on each host follows it when its file has a `[daemon]`
//! section (docs/allocation.md), or enforces a policy of its own file.

use crate::api::{blocking, body_bytes, ApiError, ApiResult, AppState};
use crate::api_shape::check_name;
use crate::view::ClusterView;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keel_alloc::config::{AllocConfig, Bounds, ConfigError, PoolAlloc, VmAlloc};
use keel_alloc::units::Units;
use keel_control::VmAllocation;
use keel_model::Resources;
use std::collections::HashMap;
use std::sync::Arc;

/// The routes of this module, to merge into the guarded router.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/allocation", get(allocation).put(replace))
}

/// Checks `policy` against `cluster`: every value and name on the whole
/// cluster, then each host's VMs against its capacity (a capacity of 0,
/// not measured, does not bound).
pub fn validate_for_cluster(
    policy: &AllocConfig,
    cluster: &ClusterView,
) -> Result<(), ConfigError> {
    let all: Vec<&str> = cluster.vms.iter().map(|v| v.name.as_str()).collect();
    policy.validate(&all, [f64::INFINITY; 3])?;
    for h in &cluster.hosts {
        let here: Vec<&str> = cluster
            .vms
            .iter()
            .filter(|v| v.host == h.name)
            .map(|v| v.name.as_str())
            .collect();
        let bound = |x: f64| if x > 0.0 { x } else { f64::INFINITY };
        let c = &h.capacity;
        let cap = [
            bound(c.cpu_cores),
            bound(c.memory_bytes),
            bound(c.disk_bytes_per_second),
        ];
        policy
            .retain_vms(&|n: &str| here.contains(&n))
            .validate(&here, cap)?;
    }
    Ok(())
}

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_allocation",
        e.to_string(),
    )
}

async fn allocation(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    let policy = state
        .allocation
        .lock()
        .map_err(|_| invalid("allocation policy unavailable"))?
        .clone();
    Ok(Json(policy).into_response())
}

async fn replace(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = body_bytes(body)?;
    let policy = parse_policy(&bytes)?;
    check_shape(&policy)?;
    let service = state.service.clone();
    let cluster = blocking(move || Ok(service.cluster())).await?;
    match &cluster {
        Some(c) => validate_for_cluster(&policy, c).map_err(invalid)?,
        None => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_observed",
                "the cluster has not been observed yet: cannot check the policy's VMs",
            ))
        }
    }
    {
        let mut stored = state
            .allocation
            .lock()
            .map_err(|_| invalid("allocation policy unavailable"))?;
        *stored = policy.clone();
    }
    let service = state.service.clone();
    let entitled = vm_allocations(&policy);
    blocking(move || {
        service.control().set_allocation(entitled);
        Ok(())
    })
    .await?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let service = state.service.clone();
    let vms = policy.vm_names().len();
    blocking(move || {
        if let Err(e) = service.store().set_meta(POLICY_KEY, &text) {
            tracing::warn!(error = %e, "storing the allocation policy failed: a restart will start without it");
        }
        service.audit("api", "allocation.change", "allocation", &format!("{vms} VMs"));
        Ok(())
    })
    .await?;
    tracing::info!(vms, "allocation policy replaced through the API");
    Ok(Json(policy).into_response())
}

/// What the policy gives each VM it names, for the planner: its own
/// reservation, limit and shares (a VM in a pool keeps its own values; the
/// pool's bounds divide a host's capacity among its members, which the
/// agents enforce and the planner does not model). A resource without a
/// limit is unbounded (`f64::MAX`, so the VM's size caps it); network has
/// no allocation.
pub fn vm_allocations(policy: &AllocConfig) -> HashMap<String, VmAllocation> {
    fn one(vm: &VmAlloc) -> VmAllocation {
        let [cpu, memory, disk] = vm.bounds();
        let limit = |b: &Bounds| b.limit.unwrap_or(f64::MAX);
        let has_limit = [cpu, memory, disk].iter().any(|b| b.limit.is_some());
        VmAllocation {
            reservation: Resources::new(cpu.reservation, memory.reservation, disk.reservation, 0.0),
            limit: has_limit
                .then(|| Resources::new(limit(&cpu), limit(&memory), limit(&disk), f64::MAX)),
            shares: vm
                .effective_shares()
                .unwrap_or(keel_alloc::config::DEFAULT_SHARES),
        }
    }
    fn walk(vms: &[VmAlloc], pools: &[PoolAlloc], out: &mut HashMap<String, VmAllocation>) {
        for vm in vms {
            out.insert(vm.name.clone(), one(vm));
        }
        for pool in pools {
            walk(&pool.vm, &pool.pool, out);
        }
    }
    let mut out = HashMap::new();
    walk(&policy.vm, &policy.pool, &mut out);
    out
}

/// What the document's `AllocationPolicyInput` says of each item, checked
/// before the cluster is consulted so that a shape error is never hidden
/// by a state one: names (400), then values, shares, duplicates,
/// reservations above limits and depth (422) with the policy's own VMs as
/// the known ones and no capacity bound.
fn check_shape(policy: &AllocConfig) -> ApiResult<()> {
    fn names(prefix: &str, vms: &[VmAlloc], pools: &[PoolAlloc]) -> ApiResult<()> {
        for (i, vm) in vms.iter().enumerate() {
            check_name(&format!("{prefix}vm[{i}].name"), &vm.name)?;
        }
        for (i, pool) in pools.iter().enumerate() {
            let at = format!("{prefix}pool[{i}].");
            check_name(&format!("{at}name"), &pool.name)?;
            names(&at, &pool.vm, &pool.pool)?;
        }
        Ok(())
    }
    names("", &policy.vm, &policy.pool)?;
    let own = policy.vm_names();
    let own: Vec<&str> = own.iter().map(String::as_str).collect();
    policy.validate(&own, [f64::INFINITY; 3]).map_err(invalid)
}

/// Key of the policy (the JSON the operator sent) in the store's meta table.
const POLICY_KEY: &str = "allocation_policy";

/// The policy last set through the API, from the history database; empty
/// when there is none or it no longer parses (logged).
pub(crate) fn remembered(service: &crate::service::Service) -> AllocConfig {
    let text = match service.store().meta(POLICY_KEY) {
        Ok(Some(text)) => text,
        Ok(None) => return AllocConfig::default(),
        Err(e) => {
            tracing::warn!(error = %e, "reading the stored allocation policy failed");
            return AllocConfig::default();
        }
    };
    match parse_policy(text.as_bytes()) {
        Ok(policy) => {
            tracing::info!(
                vms = policy.vm_names().len(),
                "allocation policy restored from the history database"
            );
            service.control().set_allocation(vm_allocations(&policy));
            policy
        }
        Err(e) => {
            tracing::warn!(error = %e.message, "the stored allocation policy no longer parses: starting without one");
            AllocConfig::default()
        }
    }
}

/// Parses a policy as JSON (amounts with units accepted, `null` as absent):
/// 400 if it is not JSON, 422 if it is not a policy.
fn parse_policy(bytes: &[u8]) -> ApiResult<AllocConfig> {
    AllocConfig::from_json(bytes, &Units::default()).map_err(|e| match e {
        ConfigError::Json(why) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!(
                "request body: {why} (expected {{\"vm\": [{{\"name\", \"shares\"|\"priority\", \"cpu\", \"memory\", \"disk\"}}], \"pool\": [...]}})"
            ),
        ),
        e => invalid(e),
    })
}
