//! Shape checks of request bodies that serde's types do not make: the
//! constraints the OpenAPI document (`openapi.json`) states as patterns and
//! ranges. They run in the handlers before any state is consulted, so a
//! request the document calls invalid is always a 400 naming the field,
//! and one it calls valid is refused only for the state it meets (an
//! unknown VM, a conflicting rule).

use crate::api::ApiError;
use axum::http::StatusCode;
use keel_model::{Resource, Resources, Rules, VmGroupRule};

/// Largest integer a JSON number carries exactly (2^53 - 1): the bound
/// of ids and millisecond times in the document.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A 400 naming `field`.
pub(crate) fn bad_field(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("{field}: {message}"),
    )
}

/// A name sent in a body (schema `Name`: pattern `^\S([^\n\r]*\S)?$`):
/// not empty, no leading or trailing whitespace, no line break.
pub(crate) fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| !c.is_whitespace());
    if edge_ok(name.chars().next())
        && edge_ok(name.chars().next_back())
        && !name.contains(['\n', '\r'])
    {
        Ok(())
    } else {
        Err(bad_field(
            field,
            format!("{name:?} is not a name (not empty, no leading or trailing whitespace, no line break)"),
        ))
    }
}

/// Amounts of a placement request (schema `ResourcesInput`): each >= 0.
pub(crate) fn check_amounts(field: &str, amounts: &Resources) -> Result<(), ApiError> {
    match amounts.first_invalid() {
        None => Ok(()),
        Some((resource, value)) => Err(bad_field(
            &format!("{field}.{}", amount_key(resource)),
            format!("{value} must be a number >= 0"),
        )),
    }
}

/// The JSON key of a resource in `Resources`.
fn amount_key(resource: Resource) -> &'static str {
    match resource {
        Resource::Cpu => "cpu_cores",
        Resource::Memory => "memory_bytes",
        Resource::Disk => "disk_bytes_per_second",
        Resource::Network => "network_bytes_per_second",
    }
}

fn check_positive(field: &str, value: f64) -> Result<(), ApiError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(bad_field(field, format!("{value} must be a number > 0")))
    }
}

/// A group rule (affinity, anti-affinity, pin) at `field`.
pub(crate) fn check_group_rule(field: &str, rule: &VmGroupRule) -> Result<(), ApiError> {
    check_name(&format!("{field}name"), &rule.name)?;
    for (i, vm) in rule.vms.iter().enumerate() {
        check_name(&format!("{field}vms[{i}]"), vm)?;
    }
    Ok(())
}

/// A VM-host rule at `field`.
pub(crate) fn check_vm_host_rule(
    field: &str,
    rule: &keel_model::VmHostRule,
) -> Result<(), ApiError> {
    check_name(&format!("{field}name"), &rule.name)?;
    for (i, vm) in rule.vms.iter().enumerate() {
        check_name(&format!("{field}vms[{i}]"), vm)?;
    }
    for (i, host) in rule.hosts.iter().enumerate() {
        check_name(&format!("{field}hosts[{i}]"), host)?;
    }
    check_positive(&format!("{field}weight"), rule.weight)
}

/// A whole rule set (schema `Rules`).
pub(crate) fn check_rules(rules: &Rules) -> Result<(), ApiError> {
    for (kind, list) in [
        ("affinity", &rules.affinity),
        ("anti_affinity", &rules.anti_affinity),
        ("pin", &rules.pin),
    ] {
        for (i, rule) in list.iter().enumerate() {
            check_group_rule(&format!("{kind}[{i}]."), rule)?;
        }
    }
    for (i, rule) in rules.vm_host.iter().enumerate() {
        check_vm_host_rule(&format!("vm_host[{i}]."), rule)?;
    }
    for (i, host) in rules.maintenance.iter().enumerate() {
        check_name(&format!("maintenance[{i}]"), host)?;
    }
    check_positive("overcommit.cpu", rules.overcommit.cpu)?;
    check_positive("overcommit.memory", rules.overcommit.memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_pattern() {
        for good in ["a", "vm-001", "my vm", "x\u{2028}y", "ü"] {
            assert!(check_name("name", good).is_ok(), "{good:?}");
        }
        for bad in ["", " a", "a ", "a\nb", "a\rb", "\t", "a\u{a0}"] {
            let e = check_name("vms[2]", bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.starts_with("vms[2]: "), "{}", e.message);
        }
    }

    #[test]
    fn negative_amounts_name_their_field() {
        let r = Resources {
            memory_bytes: -1.0,
            ..Resources::ZERO
        };
        let e = check_amounts("size", &r).unwrap_err();
        assert!(
            e.message.starts_with("size.memory_bytes: -1"),
            "{}",
            e.message
        );
        assert!(check_amounts("size", &Resources::ZERO).is_ok());
    }

    #[test]
    fn rules_name_the_broken_field() {
        let mut rules = Rules::default();
        assert!(check_rules(&rules).is_ok());
        rules.overcommit.memory = 0.0;
        let e = check_rules(&rules).unwrap_err();
        assert!(
            e.message.starts_with("overcommit.memory: "),
            "{}",
            e.message
        );
        rules.overcommit.memory = 1.0;
        rules.affinity.push(VmGroupRule {
            name: "ok".into(),
            vms: vec!["vm-1".into(), " vm-2".into()],
        });
        let e = check_rules(&rules).unwrap_err();
        assert!(
            e.message.starts_with("affinity[0].vms[1]: "),
            "{}",
            e.message
        );
    }
}
