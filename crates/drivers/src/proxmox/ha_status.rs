//! Nodes in HA maintenance, from `GET /cluster/ha/status/current`.
//!
//! `ha-manager crm-command node-maintenance enable NODE` (Proxmox VE 7.3+)
//! and a shutdown under the `migrate` shutdown policy put the node's local
//! resource manager (LRM) into maintenance mode; the HA stack then moves
//! the node's HA-managed guests away. The documented status endpoint shows
//! each LRM as one entry of type `lrm` whose `status` is free text of the
//! form `NODE (STATE, TIME)`, where STATE is `maintenance mode` for such a
//! node (`active`, `idle`, `old timestamp - dead?`, ... otherwise). The
//! other source, `/cluster/ha/status/manager_status`, has no return schema
//! (an untyped object), so Keel reads the documented one.

use serde_json::Value;
use std::collections::BTreeSet;

/// The LRM state that means the node is in maintenance.
const MAINTENANCE: &str = "maintenance mode";

/// The nodes whose LRM is in maintenance mode, from the `data` of
/// `/cluster/ha/status/current`. Entries of other types, and entries
/// without a usable node or status, are skipped; an answer that is not a
/// list is an error (the caller keeps what it knew).
pub(crate) fn nodes_in_maintenance(data: &Value) -> Result<BTreeSet<String>, String> {
    let entries = data
        .as_array()
        .ok_or_else(|| format!("expected a list of status entries, got {}", kind_of(data)))?;
    Ok(entries
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some("lrm"))
        .filter_map(|e| {
            let node = e
                .get("node")
                .and_then(Value::as_str)
                .or_else(|| e.get("id").and_then(Value::as_str)?.strip_prefix("lrm:"))
                .filter(|n| !n.is_empty())?;
            let status = e.get("status").and_then(Value::as_str)?;
            (lrm_state(status) == MAINTENANCE).then(|| node.to_string())
        })
        .collect())
}

/// STATE of an LRM status text `NODE (STATE, TIME)`; the whole text,
/// trimmed, when it has no parenthesis (node names cannot hold one).
fn lrm_state(status: &str) -> &str {
    match status.split_once('(') {
        Some((_, rest)) => rest.split([',', ')']).next().unwrap_or("").trim(),
        None => status.trim(),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lrm_entries_in_maintenance_mode_name_their_nodes() {
        let data = json!([
            {"id": "quorum", "type": "quorum", "node": "a", "status": "OK", "quorate": 1},
            {"id": "master", "type": "master", "node": "a",
             "status": "a (active, Thu Nov 26 13:00:00 2026)", "timestamp": 1},
            {"id": "lrm:a", "type": "lrm", "node": "a", "status": "a (active, Thu Nov 26 13:00:00 2026)"},
            {"id": "lrm:b", "type": "lrm", "node": "b",
             "status": "b (maintenance mode, Thu Nov 26 13:00:00 2026)"},
            {"id": "lrm:c", "type": "lrm", "node": "c", "status": "c (idle, Thu Nov 26 13:00:00 2026)"},
            {"id": "lrm:d", "type": "lrm", "node": "d", "status": "d (unable to read lrm status)"},
            {"id": "service:vm:100", "type": "service", "node": "a", "sid": "vm:100",
             "status": "vm:100 (a, maintenance mode)"}
        ]);
        let nodes = nodes_in_maintenance(&data).unwrap();
        assert_eq!(nodes.into_iter().collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn missing_or_odd_fields_are_skipped_not_fatal() {
        let data = json!([
            {"id": "lrm:x", "type": "lrm", "status": "x (maintenance mode, now)"},
            {"type": "lrm", "status": "y (maintenance mode, now)"},
            {"type": "lrm", "node": "", "status": "(maintenance mode)"},
            {"type": "lrm", "node": "z"},
            {"type": "lrm", "node": "w", "status": 7},
            {"type": "lrm", "node": 3, "id": "lrm:v", "status": "maintenance mode"},
            {"type": "lrm", "node": "u", "status": "u (maintenance mode"},
            {"type": "lrm", "node": "t", "status": "t (maintenance modes, now)"},
            {"type": 5},
            "text",
            null,
            []
        ]);
        let nodes = nodes_in_maintenance(&data).unwrap();
        assert_eq!(
            nodes.into_iter().collect::<Vec<_>>(),
            ["u", "v", "x"],
            "the node from the id when `node` is missing or not text"
        );
    }

    #[test]
    fn an_answer_that_is_not_a_list_is_an_error() {
        for data in [json!(null), json!({"lrm": "x"}), json!("maintenance mode")] {
            let err = nodes_in_maintenance(&data).unwrap_err();
            assert!(err.contains("expected a list"), "{err}");
        }
        assert!(nodes_in_maintenance(&json!([])).unwrap().is_empty());
    }
}
