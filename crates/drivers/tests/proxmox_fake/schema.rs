//! The published Proxmox VE API schema (apidata.json from pve-docs, AGPL:
//! reference data for tests, read at run time, never compiled in) and the
//! checks the fake applies with it: every request's parameters (unknown,
//! wrong type, missing required) and every answer's `data`.

use serde_json::Value;
use std::path::PathBuf;

/// Where the schema is: `$KEEL_SHARED_DIR/reference/proxmox-ve-api`, else
/// `../shared/reference/proxmox-ve-api` beside the repository.
pub fn schema_path() -> Option<PathBuf> {
    let rel = "reference/proxmox-ve-api/apidata.json";
    let candidates = match std::env::var_os("KEEL_SHARED_DIR") {
        Some(dir) => vec![PathBuf::from(dir).join(rel)],
        None => vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared")
            .join(rel)],
    };
    candidates.into_iter().find(|p| p.is_file())
}

/// One API method of the schema.
pub struct MethodSchema {
    pub parameters: Value,
    pub returns: Value,
}

/// Path parameters of a concrete path: (name, value).
pub type PathParams = Vec<(String, String)>;

/// The schema, indexed by path template.
pub struct Schema {
    /// (path segments with `{x}` placeholders, method info object)
    nodes: Vec<(Vec<String>, Value)>,
}

impl Schema {
    /// Loads apidata.json.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let roots: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut nodes = Vec::new();
        fn walk(n: &Value, out: &mut Vec<(Vec<String>, Value)>) {
            if let (Some(path), Some(info)) = (n.get("path").and_then(Value::as_str), n.get("info"))
            {
                let segs = path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                out.push((segs, info.clone()));
            }
            for c in n
                .get("children")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                walk(c, out);
            }
        }
        for r in roots.as_array().ok_or("apidata.json: not an array")? {
            walk(r, &mut nodes);
        }
        Ok(Self { nodes })
    }

    /// The method for `method` on concrete `path` and its path parameters.
    pub fn find(&self, method: &str, path: &str) -> Option<(MethodSchema, PathParams)> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut best: Option<(usize, MethodSchema, PathParams)> = None;
        for (template, info) in &self.nodes {
            if template.len() != segs.len() {
                continue;
            }
            let mut params = Vec::new();
            let mut literal = 0;
            let fits = template.iter().zip(&segs).all(|(t, s)| {
                if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    params.push((name.to_string(), s.to_string()));
                    true
                } else {
                    literal += 1;
                    t == s
                }
            });
            let Some(m) = info.get(method).filter(|_| fits) else {
                continue;
            };
            // The most literal template wins (`/nodes/{node}/status` over
            // a placeholder in the same place).
            if best.as_ref().is_none_or(|(l, _, _)| literal > *l) {
                let schema = MethodSchema {
                    parameters: m.get("parameters").cloned().unwrap_or(Value::Null),
                    returns: m.get("returns").cloned().unwrap_or(Value::Null),
                };
                best = Some((literal, schema, params));
            }
        }
        best.map(|(_, s, p)| (s, p))
    }
}

fn optional(s: &Value) -> bool {
    matches!(s.get("optional"), Some(Value::Number(n)) if n.as_i64() == Some(1))
        || s.get("optional") == Some(&Value::Bool(true))
}

fn bound(s: &Value, key: &str) -> Option<f64> {
    match s.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(t) => t.parse().ok(),
        _ => None,
    }
}

/// Violations of the parameter schema by `params` (name, value as sent).
pub fn check_request(schema: &Value, params: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    let empty = serde_json::Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (name, value) in params {
        match props.get(name) {
            None => out.push(format!("unknown parameter {name}={value}")),
            Some(p) => {
                if let Err(e) = check_string(p, value) {
                    out.push(format!("parameter {name}={value}: {e}"));
                }
            }
        }
    }
    for (name, p) in props {
        if !optional(p) && !params.iter().any(|(n, _)| n == name) {
            out.push(format!("missing required parameter {name}"));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (name, _) in params {
        if !seen.insert(name) {
            out.push(format!("parameter {name} sent twice"));
        }
    }
    out
}

fn check_string(p: &Value, v: &str) -> Result<(), String> {
    match p.get("type").and_then(Value::as_str).unwrap_or("string") {
        "integer" => {
            let n: i64 = v.parse().map_err(|_| "not an integer".to_string())?;
            check_range(p, n as f64)
        }
        "number" => {
            let n: f64 = v.parse().map_err(|_| "not a number".to_string())?;
            check_range(p, n)
        }
        "boolean" => match v {
            "0" | "1" | "true" | "false" | "yes" | "no" | "on" | "off" => Ok(()),
            _ => Err("not a boolean".into()),
        },
        _ => {
            if let Some(choices) = p.get("enum").and_then(Value::as_array) {
                if !choices.iter().any(|c| c.as_str() == Some(v)) {
                    return Err(format!("not one of {choices:?}"));
                }
            }
            if let Some(max) = bound(p, "maxLength") {
                if v.len() as f64 > max {
                    return Err("too long".into());
                }
            }
            match p.get("format").and_then(Value::as_str) {
                Some("pve-node") => {
                    let ok = !v.is_empty()
                        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !v.starts_with('-')
                        && !v.ends_with('-');
                    if ok {
                        Ok(())
                    } else {
                        Err("not a node name".into())
                    }
                }
                Some("pve-vmid") => v
                    .parse::<u64>()
                    .map(|_| ())
                    .map_err(|_| "not a vmid".into()),
                _ => Ok(()),
            }
        }
    }
}

fn check_range(p: &Value, n: f64) -> Result<(), String> {
    if bound(p, "minimum").is_some_and(|m| n < m) {
        return Err("below its minimum".into());
    }
    if bound(p, "maximum").is_some_and(|m| n > m) {
        return Err("above its maximum".into());
    }
    Ok(())
}

/// Violations of the return schema by `value` (at `at`).
pub fn check_value(schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    let kind = schema.get("type").and_then(Value::as_str);
    let fits = match kind {
        None | Some("any") => true,
        Some("null") => value.is_null(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        // Proxmox VE writes booleans as 0/1.
        Some("boolean") => value.is_boolean() || matches!(value.as_i64(), Some(0 | 1)),
        Some("array") => value.is_array(),
        Some("object") => value.is_object(),
        Some(other) => {
            out.push(format!("{at}: schema type {other} unknown to the checker"));
            true
        }
    };
    if !fits {
        out.push(format!(
            "{at}: {value} is not of type {}",
            kind.unwrap_or("?")
        ));
        return;
    }
    if let (Some(choices), Some(s)) = (schema.get("enum").and_then(Value::as_array), value.as_str())
    {
        if !choices.iter().any(|c| c.as_str() == Some(s)) {
            out.push(format!("{at}: {s:?} is not one of {choices:?}"));
        }
    }
    if let Some(n) = value.as_f64().filter(|_| value.is_number()) {
        if let Err(e) = check_range(schema, n) {
            out.push(format!("{at}: {n} {e}"));
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        for (i, v) in list.iter().enumerate() {
            check_value(items, v, &format!("{at}[{i}]"), out);
        }
    }
    if let (Some(props), Some(obj)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object(),
    ) {
        for (name, p) in props {
            match obj.get(name) {
                Some(v) => check_value(p, v, &format!("{at}.{name}"), out),
                None if !optional(p) => out.push(format!("{at}: required {name} missing")),
                None => {}
            }
        }
        if matches!(schema.get("additionalProperties"), Some(v) if v == 0 || v == false) {
            for name in obj.keys().filter(|k| !props.contains_key(*k)) {
                out.push(format!("{at}: property {name} not in the schema"));
            }
        }
    }
}
