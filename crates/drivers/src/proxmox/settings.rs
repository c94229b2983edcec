//! The cluster settings read every `rules_refresh_seconds`: the version
//! (`GET /version`), the HA placement settings (9.x rules, 8.x groups, and
//! the resources' failback), the CRS options (`/cluster/options`).

use super::client::Api;
use super::ha_config::{self, HaGroup, HaPlacement, HaResource};
use super::rules::HaRule;
use super::version::{PveVersion, VersionAnswer};
use crate::DriverError;
use serde_json::Value;

/// The release of the node Keel talks to; a node that answers no usable
/// release is taken for the newest Keel knows (9.x), with a warning.
pub(crate) fn read_version(api: &Api) -> Result<PveVersion, DriverError> {
    let answer: VersionAnswer = api.get_as("/version", &[], "a valid token (any user)")?;
    Ok(PveVersion::of(&answer).unwrap_or_else(|| {
        tracing::warn!(
            release = ?answer.release,
            version = ?answer.version,
            "unreadable Proxmox VE release: assuming 9.x"
        );
        PveVersion { major: 9, minor: 0 }
    }))
}

/// The HA placement settings. On 9.x the rules; on 8.x (or a 9.x node
/// that answers 501 for the rules) the groups.
pub(crate) fn read_ha_placement(
    api: &Api,
    version: PveVersion,
) -> Result<HaPlacement, DriverError> {
    const NEED: &str = "Sys.Audit on /";
    let resources: Vec<HaResource> = api.get_as("/cluster/ha/resources", &[], NEED)?;
    if version.has_ha_rules() {
        if let Some(rules) = api.get_unless_missing::<Vec<HaRule>>("/cluster/ha/rules", NEED)? {
            return Ok(ha_config::from_rules(rules, &resources));
        }
    }
    let groups: Vec<HaGroup> = api
        .get_unless_missing("/cluster/ha/groups", NEED)?
        .unwrap_or_default();
    Ok(ha_config::from_groups(&groups, &resources))
}

/// Whether the CRS balances HA guests on its own: `crs` of
/// `/cluster/options` is the parsed property string, an object (pve-cluster
/// `src/PVE/DataCenterConfig.pm` parses it, pve-manager
/// `PVE/API2/Cluster.pm` returns it as is); the raw string form is read too.
pub(crate) fn crs_auto_rebalance(crs: Option<&Value>) -> bool {
    match crs {
        Some(Value::Object(map)) => map.get("ha-auto-rebalance").is_some_and(truthy),
        Some(Value::String(text)) => text.split(',').any(|kv| {
            kv.trim()
                .split_once('=')
                .is_some_and(|(k, v)| k == "ha-auto-rebalance" && truthy(&Value::from(v)))
        }),
        _ => false,
    }
}

/// A Proxmox VE boolean as the API gives it: true, 1, "1", "yes", "on"...
pub(super) fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().unwrap_or(0.0) != 0.0,
        Value::String(s) => matches!(s.as_str(), "1" | "true" | "yes" | "on"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crs_is_read_as_object_or_property_string() {
        assert!(!crs_auto_rebalance(None));
        assert!(crs_auto_rebalance(Some(
            &json!({"ha": "dynamic", "ha-auto-rebalance": 1})
        )));
        assert!(crs_auto_rebalance(Some(
            &json!({"ha-auto-rebalance": true})
        )));
        assert!(crs_auto_rebalance(Some(&json!({"ha-auto-rebalance": "1"}))));
        assert!(!crs_auto_rebalance(Some(
            &json!({"ha": "static", "ha-rebalance-on-start": 1})
        )));
        assert!(crs_auto_rebalance(Some(&json!(
            "ha=dynamic,ha-auto-rebalance=1"
        ))));
        assert!(!crs_auto_rebalance(Some(&json!("ha-auto-rebalance=0"))));
        assert!(!crs_auto_rebalance(Some(&json!(""))));
    }
}
