//! The HA stack's placement settings in one form for both versions:
//! node-affinity rules (9.x `/cluster/ha/rules`; 8.x HA groups turned into
//! the rules pve-ha-manager 5.0 migrates them to) and which resources fail
//! back to their preferred nodes.
//!
//! - 9.x: `failback` is a resource option, on unless set to 0
//!   (pve-ha-manager `src/PVE/HA/Config.pm`, read_and_check_resources_config).
//! - 8.x: a resource names a `group`; the group's `restricted` is the
//!   rule's `strict`, its `nofailback` the inverse of `failback`
//!   (pve-ha-manager 4.x `src/PVE/HA/Groups.pm`).
//! - Rules PVE found infeasible carry an `errors` object and are not
//!   applied by the CRM (`src/PVE/API2/HA/Rules.pm`, check_feasibility):
//!   Keel ignores them as well.

use super::observe::flag;
use super::rules::HaRule;
use super::settings::truthy;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;

/// One entry of `GET /cluster/ha/resources`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct HaResource {
    pub sid: String,
    /// 8.x: the HA group.
    #[serde(default)]
    pub group: Option<String>,
    /// 9.x: fail back to the highest-priority nodes (default on).
    #[serde(default)]
    pub failback: Option<Value>,
}

/// One entry of `GET /cluster/ha/groups` (8.x).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct HaGroup {
    pub group: String,
    #[serde(default)]
    pub nodes: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    pub restricted: bool,
    #[serde(default, deserialize_with = "flag")]
    pub nofailback: bool,
}

/// The HA placement settings Keel maps to rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct HaPlacement {
    /// Rules the CRM applies (disabled and infeasible ones left out).
    pub rules: Vec<HaRule>,
    /// vmids of HA resources with failback off.
    pub no_failback: HashSet<u64>,
}

/// The vmid of a service id `vm:100`, `ct:101` or `100`.
pub(crate) fn sid_vmid(sid: &str) -> Option<u64> {
    sid.rsplit(':').next()?.trim().parse().ok()
}

/// 9.x: rules and resources as read.
pub(crate) fn from_rules(rules: Vec<HaRule>, resources: &[HaResource]) -> HaPlacement {
    let no_failback = resources
        .iter()
        .filter(|r| r.failback.as_ref().is_some_and(|v| !truthy(v)))
        .filter_map(|r| sid_vmid(&r.sid))
        .collect();
    let rules = rules
        .into_iter()
        .filter(|r| !r.disable)
        .filter(|r| {
            let infeasible = r
                .errors
                .as_ref()
                .is_some_and(|e| e.as_object().is_none_or(|o| !o.is_empty()));
            if infeasible {
                tracing::info!(
                    rule = %r.rule,
                    errors = %r.errors.clone().unwrap_or_default(),
                    "HA rule marked infeasible by Proxmox VE: ignored, as the CRM ignores it"
                );
            }
            !infeasible
        })
        .collect();
    HaPlacement { rules, no_failback }
}

/// 8.x: each group with members becomes a node-affinity rule.
pub(crate) fn from_groups(groups: &[HaGroup], resources: &[HaResource]) -> HaPlacement {
    let mut placement = HaPlacement::default();
    for g in groups {
        let members: Vec<&str> = resources
            .iter()
            .filter(|r| r.group.as_deref() == Some(g.group.as_str()))
            .map(|r| r.sid.as_str())
            .collect();
        if members.is_empty() {
            continue;
        }
        if g.nofailback {
            placement
                .no_failback
                .extend(members.iter().filter_map(|s| sid_vmid(s)));
        }
        placement.rules.push(HaRule {
            rule: format!("group {}", g.group),
            kind: Some("node-affinity".into()),
            resources: Some(members.join(",")),
            nodes: g.nodes.clone(),
            affinity: None,
            strict: g.restricted,
            disable: false,
            errors: None,
        });
    }
    placement
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_become_rules_and_nofailback_is_kept() {
        let groups: Vec<HaGroup> = serde_json::from_str(
            r#"[{"group":"g1","nodes":"a:2,b","restricted":1,"nofailback":0,"type":"group"},
                {"group":"g2","nodes":"c","nofailback":1,"type":"group"},
                {"group":"empty","nodes":"a","type":"group"}]"#,
        )
        .unwrap();
        let resources: Vec<HaResource> = serde_json::from_str(
            r#"[{"sid":"vm:100","group":"g1"},{"sid":"ct:101","group":"g2"},{"sid":"vm:102"}]"#,
        )
        .unwrap();
        let p = from_groups(&groups, &resources);
        assert_eq!(p.rules.len(), 2);
        assert!(p.rules[0].strict);
        assert_eq!(p.rules[0].resources.as_deref(), Some("vm:100"));
        assert_eq!(p.no_failback, HashSet::from([101]));
    }

    #[test]
    fn infeasible_and_disabled_rules_are_ignored() {
        let rules: Vec<HaRule> = serde_json::from_str(
            r#"[{"rule":"ok","type":"node-affinity","resources":"vm:1","nodes":"a"},
                {"rule":"bad","type":"node-affinity","resources":"vm:2","nodes":"a",
                 "errors":{"resources":"resource 'vm:2' is already used in another node affinity rule"}},
                {"rule":"off","type":"node-affinity","resources":"vm:3","nodes":"a","disable":1}]"#,
        )
        .unwrap();
        let resources: Vec<HaResource> = serde_json::from_str(
            r#"[{"sid":"vm:1","failback":0},{"sid":"vm:2","failback":1},{"sid":"vm:3"}]"#,
        )
        .unwrap();
        let p = from_rules(rules, &resources);
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.rules[0].rule, "ok");
        assert_eq!(p.no_failback, HashSet::from([1]));
    }
}
