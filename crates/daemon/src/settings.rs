//! What an operator may change while the daemon runs: the automation level,
//! the migration threshold level and the placement rules. Every change is
//! checked before it takes effect (rules against the cluster as last
//! observed); a refused change leaves everything as it was.

use crate::control::{ControlError, ControlLoop};
use crate::service::DynDriver;
use crate::service::{Automation, Service, ServiceError};
use crate::store::{Store, StoreError};
use keel_model::{Rules, VmGroupRule, VmHostRule};
use keel_policy::balance::KeelBalancer;
use serde::{Deserialize, Serialize};

/// The run-time settings as the API shows them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Settings {
    /// Automation level.
    pub automation: Automation,
    /// Migration threshold level, 1 (mandatory moves only) to 5 (most eager).
    pub level: u8,
}

/// A change of settings; absent fields stay as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    /// New automation level.
    pub automation: Option<Automation>,
    /// New migration threshold level (1-5).
    pub level: Option<i64>,
}

/// The four kinds of named rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// VMs kept on one host.
    Affinity,
    /// VMs kept on different hosts.
    AntiAffinity,
    /// VMs bound to or kept off hosts, hard or soft.
    VmHost,
    /// VMs that stay where they are.
    Pin,
}

impl RuleKind {
    /// Every kind, in the order of the rules file.
    pub const ALL: [RuleKind; 4] = [
        RuleKind::Affinity,
        RuleKind::AntiAffinity,
        RuleKind::VmHost,
        RuleKind::Pin,
    ];

    /// The name used in paths and in the rules file.
    pub fn name(self) -> &'static str {
        match self {
            RuleKind::Affinity => "affinity",
            RuleKind::AntiAffinity => "anti_affinity",
            RuleKind::VmHost => "vm_host",
            RuleKind::Pin => "pin",
        }
    }

    /// The kind named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    fn names(self, rules: &Rules) -> Vec<&str> {
        match self {
            RuleKind::VmHost => rules.vm_host.iter().map(|r| r.name.as_str()).collect(),
            group => group_list(rules, group)
                .iter()
                .map(|r| r.name.as_str())
                .collect(),
        }
    }
}

fn group_list(rules: &Rules, kind: RuleKind) -> &Vec<VmGroupRule> {
    match kind {
        RuleKind::Affinity => &rules.affinity,
        RuleKind::AntiAffinity => &rules.anti_affinity,
        RuleKind::Pin | RuleKind::VmHost => &rules.pin,
    }
}

fn group_list_mut(rules: &mut Rules, kind: RuleKind) -> &mut Vec<VmGroupRule> {
    match kind {
        RuleKind::Affinity => &mut rules.affinity,
        RuleKind::AntiAffinity => &mut rules.anti_affinity,
        RuleKind::Pin | RuleKind::VmHost => &mut rules.pin,
    }
}

/// One named rule, of a group kind or a VM-host rule.
#[derive(Debug, Clone, PartialEq)]
pub enum NamedRule {
    /// An affinity, anti-affinity or pin rule.
    Group(VmGroupRule),
    /// A VM-host rule.
    VmHost(VmHostRule),
}

impl NamedRule {
    fn name(&self) -> &str {
        match self {
            NamedRule::Group(r) => &r.name,
            NamedRule::VmHost(r) => &r.name,
        }
    }
}

impl Service {
    /// The run-time settings now.
    pub fn settings(&self) -> Settings {
        let tuning = self.tuning();
        Settings {
            automation: tuning.automation,
            level: tuning.planner.level,
        }
    }

    /// Changes the automation level and/or the migration threshold level;
    /// the next round uses them.
    pub fn change_settings(&self, change: SettingsChange) -> Result<Settings, ServiceError> {
        let level = match change.level {
            None => None,
            Some(level @ 1..=5) => Some(level as u8),
            Some(other) => {
                return Err(ServiceError::InvalidSetting {
                    setting: "level",
                    value: other.to_string(),
                    expected: "1 to 5",
                })
            }
        };
        let mut control = self.control();
        let mut tuning = self.tuning.write().unwrap_or_else(|e| e.into_inner());
        if let Some(automation) = change.automation {
            tuning.automation = automation;
        }
        if let Some(level) = level {
            tuning.planner.level = level;
            control.set_balancer(Box::new(KeelBalancer {
                config: tuning.planner,
            }));
            control.set_concurrency(crate::service::concurrency_of(&tuning.planner));
        }
        let now = Settings {
            automation: tuning.automation,
            level: tuning.planner.level,
        };
        drop(tuning);
        self.remember(&control);
        drop(control);
        let detail = format!("automation {:?}, level {}", now.automation, now.level);
        self.audit("api", "settings.change", "settings", &detail);
        Ok(now)
    }

    /// The rules in force.
    pub fn rules(&self) -> Rules {
        self.control().rules().clone()
    }

    /// Replaces every rule (maintenance hosts and overcommit included)
    /// after checking the new set against the cluster as last observed.
    pub fn replace_rules(&self, rules: Rules) -> Result<Rules, ServiceError> {
        let mut control = self.control();
        check_unique_names(&rules)?;
        control.check_rules(&rules).map_err(rules_error)?;
        *control.rules_mut() = rules.clone();
        self.remember(&control);
        self.refresh_view(&mut control)?;
        self.audit("api", "rules.change", "rules", &rules_summary(&rules));
        Ok(rules)
    }

    /// Adds one named rule of `kind`; its name must be new within the kind.
    pub fn add_rule(&self, kind: RuleKind, rule: NamedRule) -> Result<Rules, ServiceError> {
        let control = self.control();
        let mut rules = control.rules().clone();
        drop(control);
        if kind.names(&rules).contains(&rule.name()) {
            return Err(ServiceError::RuleExists {
                kind: kind.name(),
                name: rule.name().to_string(),
            });
        }
        match (kind, rule) {
            (RuleKind::VmHost, NamedRule::VmHost(r)) => rules.vm_host.push(r),
            (RuleKind::VmHost, NamedRule::Group(r)) => {
                return Err(ServiceError::InvalidRules(format!(
                    "rule {:?}: a vm_host rule needs hosts and kind",
                    r.name
                )))
            }
            (group, NamedRule::Group(r)) => group_list_mut(&mut rules, group).push(r),
            (group, NamedRule::VmHost(r)) => {
                return Err(ServiceError::InvalidRules(format!(
                    "rule {:?}: a {} rule has only name and vms",
                    r.name,
                    group.name()
                )))
            }
        }
        self.replace_rules(rules)
    }

    /// Removes the rule of `kind` named `name`.
    pub fn remove_rule(&self, kind: RuleKind, name: &str) -> Result<Rules, ServiceError> {
        let mut control = self.control();
        let rules = control.rules_mut();
        let before = kind.names(rules).len();
        match kind {
            RuleKind::VmHost => rules.vm_host.retain(|r| r.name != name),
            group => group_list_mut(rules, group).retain(|r| r.name != name),
        }
        if kind.names(rules).len() == before {
            return Err(ServiceError::UnknownRule {
                kind: kind.name(),
                name: name.to_string(),
            });
        }
        let rules = rules.clone();
        self.remember(&control);
        // Removing a rule cannot make the rest conflict; refresh the view.
        self.refresh_view(&mut control)?;
        let detail = format!(
            "removed {} rule {name:?}; {}",
            kind.name(),
            rules_summary(&rules)
        );
        self.audit("api", "rules.change", "rules", &detail);
        Ok(rules)
    }
}

/// The audit log's one-line account of a rule set.
fn rules_summary(r: &Rules) -> String {
    format!(
        "{} affinity, {} anti_affinity, {} vm_host, {} pin, maintenance {:?}",
        r.affinity.len(),
        r.anti_affinity.len(),
        r.vm_host.len(),
        r.pin.len(),
        r.maintenance
    )
}

/// What an operator changed at run time, kept in the history database so a
/// restart continues with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeState {
    /// Automation level.
    pub automation: Automation,
    /// Migration threshold level.
    pub level: u8,
    /// The rules, maintenance hosts included.
    pub rules: Rules,
}

/// Key of [`RuntimeState`] in the store's meta table.
const RUNTIME_KEY: &str = "runtime";

impl Service {
    /// Stores the settings and rules in force as the state to resume
    /// after a restart. Called with the control loop locked, after a change.
    pub(crate) fn remember(&self, control: &ControlLoop<DynDriver>) {
        let tuning = self.tuning();
        let state = RuntimeState {
            automation: tuning.automation,
            level: tuning.planner.level,
            rules: control.rules().clone(),
        };
        let stored = serde_json::to_string(&state)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                self.store()
                    .set_meta(RUNTIME_KEY, &text)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = stored {
            tracing::warn!(error = %e, "storing the run-time settings failed: a restart will use the config's");
        }
    }
}

/// The state last set through the API, to resume with, unless the config
/// changed since (then the config wins and the stored state is dropped: an
/// operator who edits the file means it).
pub fn remembered(store: &Store, config_changed: bool) -> Result<Option<RuntimeState>, StoreError> {
    let Some(text) = store.meta(RUNTIME_KEY)? else {
        return Ok(None);
    };
    if config_changed {
        store.set_meta(RUNTIME_KEY, "")?;
        return Ok(None);
    }
    Ok(serde_json::from_str(&text).ok())
}

fn rules_error(e: ControlError) -> ServiceError {
    match e {
        ControlError::Rules(e) => ServiceError::RulesDoNotFit(e),
        other => ServiceError::Control(other),
    }
}

/// Rule names are unique within a kind (the API addresses rules by them);
/// numbers and names of VMs and hosts are checked by compiling the rules.
fn check_unique_names(rules: &Rules) -> Result<(), ServiceError> {
    for kind in RuleKind::ALL {
        let mut names = kind.names(rules);
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ServiceError::RuleExists {
                kind: kind.name(),
                name: w[0].to_string(),
            });
        }
    }
    Ok(())
}
