//! A validator and a proptest generator for the subset of OpenAPI 3.0.3
//! schemas that crates/daemon/src/openapi.json uses: `$ref`, `type`,
//! `nullable`, `enum`, `required`, `properties`, `additionalProperties`
//! (false), `items`, `minimum`/`maximum` with boolean `exclusiveMinimum`,
//! `minLength`, `minItems`, `pattern`, `oneOf`, `not`. [`unsupported`]
//! lists any other validation keyword the document grows, so that the
//! tests cannot silently ignore a constraint.

use proptest::prelude::*;
use proptest::strategy::Union;
use regex::Regex;
use serde_json::{json, Map, Value};

/// Keywords that only describe (ignored by validation and generation).
const ANNOTATIONS: &[&str] = &["description", "default", "example", "title", "format"];
/// Keywords validated and generated here.
const SUPPORTED: &[&str] = &[
    "$ref",
    "type",
    "nullable",
    "enum",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "minLength",
    "minItems",
    "pattern",
    "oneOf",
    "not",
];

/// Nesting beyond which generated arrays are empty (pools contain pools).
const MAX_DEPTH: usize = 3;

/// The document, for resolving `$ref`s.
#[derive(Clone)]
pub struct Doc {
    pub root: Value,
}

impl Doc {
    pub fn new(text: &str) -> Self {
        Self {
            root: serde_json::from_str(text).expect("the OpenAPI document is JSON"),
        }
    }

    /// The value a local `$ref` (`#/a/b`) points at.
    pub fn pointer(&self, reference: &str) -> &Value {
        let pointer = reference.strip_prefix('#').expect("local $ref");
        self.root
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling $ref {reference}"))
    }

    /// `schema` with `$ref`s followed.
    pub fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            schema = self.pointer(r);
        }
        schema
    }

    /// Checks `value` against `schema`; the error names the path.
    pub fn validate(&self, value: &Value, schema: &Value) -> Result<(), String> {
        self.check(value, schema, "$")
    }

    fn check(&self, value: &Value, schema: &Value, at: &str) -> Result<(), String> {
        let s = self.resolve(schema);
        let fail = |why: String| Err(format!("{at}: {why} (value {value})"));
        if value.is_null() {
            return match s.get("nullable") {
                Some(Value::Bool(true)) => Ok(()),
                _ if s.get("type").is_none() && s.get("oneOf").is_none() => Ok(()),
                _ => fail("null where the schema is not nullable".into()),
            };
        }
        if let Some(options) = s.get("enum").and_then(Value::as_array) {
            if !options.contains(value) {
                return fail(format!("not one of {options:?}"));
            }
        }
        if let Some(branches) = s.get("oneOf").and_then(Value::as_array) {
            let matching = branches
                .iter()
                .filter(|b| self.check(value, b, at).is_ok())
                .count();
            if matching != 1 {
                return fail(format!("matches {matching} branches of oneOf, not 1"));
            }
        }
        if let Some(not) = s.get("not") {
            if self.check(value, not, at).is_ok() {
                return fail(format!("matches the schema of `not`: {not}"));
            }
        }
        // Without a type, `required` and `properties` still apply to objects.
        let implicit_object = s.get("required").is_some() || s.get("properties").is_some();
        let ty = match s.get("type").and_then(Value::as_str) {
            Some(ty) => ty,
            None if implicit_object && value.is_object() => "object",
            None => return Ok(()),
        };
        match ty {
            "object" => self.check_object(value, s, at),
            "array" => {
                let Some(items) = value.as_array() else {
                    return fail("not an array".into());
                };
                let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0);
                if (items.len() as u64) < min {
                    return fail(format!("fewer than {min} items"));
                }
                let item_schema = s.get("items").cloned().unwrap_or(json!({}));
                for (i, item) in items.iter().enumerate() {
                    self.check(item, &item_schema, &format!("{at}[{i}]"))?;
                }
                Ok(())
            }
            "string" => {
                let Some(text) = value.as_str() else {
                    return fail("not a string".into());
                };
                let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0);
                if (text.chars().count() as u64) < min {
                    return fail(format!("shorter than {min}"));
                }
                if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                    if !Regex::new(p).unwrap().is_match(text) {
                        return fail(format!("does not match {p}"));
                    }
                }
                Ok(())
            }
            "integer" | "number" => {
                let Some(x) = value.as_f64() else {
                    return fail(format!("not a {ty}"));
                };
                if ty == "integer" && !(value.is_i64() || value.is_u64()) {
                    return fail("not an integer".into());
                }
                let exclusive = s.get("exclusiveMinimum") == Some(&Value::Bool(true));
                if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
                    if x < min || (exclusive && x == min) {
                        return fail(format!("below the minimum {min}"));
                    }
                }
                if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
                    if x > max {
                        return fail(format!("above the maximum {max}"));
                    }
                }
                Ok(())
            }
            "boolean" if value.is_boolean() => Ok(()),
            "boolean" => fail("not a boolean".into()),
            other => panic!("type {other} is not in the supported subset"),
        }
    }

    fn check_object(&self, value: &Value, s: &Value, at: &str) -> Result<(), String> {
        let Some(object) = value.as_object() else {
            return Err(format!("{at}: not an object (value {value})"));
        };
        let empty = Map::new();
        let properties = s
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for key in required(s) {
            if !object.contains_key(&key) {
                return Err(format!("{at}: required property {key} missing"));
            }
        }
        for (key, v) in object {
            match properties.get(key) {
                Some(p) => self.check(v, p, &format!("{at}.{key}"))?,
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: property {key} not allowed"))
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Validation keywords of every schema under `value` that are outside
    /// the supported subset, as `path: keyword`.
    pub fn unsupported(&self) -> Vec<String> {
        let mut out = Vec::new();
        let schemas = self.root["components"]["schemas"].as_object().unwrap();
        for (name, schema) in schemas {
            walk_schema(schema, &format!("schemas.{name}"), &mut out);
        }
        out
    }
}

fn walk_schema(schema: &Value, at: &str, out: &mut Vec<String>) {
    let Some(object) = schema.as_object() else {
        return;
    };
    for (key, v) in object {
        if !(SUPPORTED.contains(&key.as_str()) || ANNOTATIONS.contains(&key.as_str())) {
            out.push(format!("{at}: {key}"));
        }
        match key.as_str() {
            "properties" => {
                for (p, ps) in v.as_object().unwrap() {
                    walk_schema(ps, &format!("{at}.{p}"), out);
                }
            }
            "items" | "not" => walk_schema(v, &format!("{at}.{key}"), out),
            "oneOf" => v
                .as_array()
                .unwrap()
                .iter()
                .for_each(|b| walk_schema(b, &format!("{at}.oneOf"), out)),
            "additionalProperties" if !v.is_boolean() => out.push(format!("{at}: {key} schema")),
            _ => {}
        }
    }
}

fn required(s: &Value) -> Vec<String> {
    s.get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A pattern without its anchors, for proptest's regex generator (which
/// makes whole matches and knows no anchors).
fn unanchored(pattern: &str) -> &str {
    let p = pattern.strip_prefix('^').unwrap_or(pattern);
    p.strip_suffix('$').unwrap_or(p)
}

/// What generation draws names from: the cluster's VMs and hosts, so that
/// generated rules and policies often name real ones.
#[derive(Clone)]
pub struct Gen {
    pub doc: Doc,
    pub names: Vec<String>,
}

/// A generated invalid value and the field its refusal must name (empty:
/// the value as a whole).
pub type Invalid = (Value, String);

impl Gen {
    /// Values valid for `schema`.
    pub fn valid(&self, schema: &Value, depth: usize) -> BoxedStrategy<Value> {
        let is_name =
            schema.get("$ref").and_then(Value::as_str) == Some("#/components/schemas/Name");
        let s = self.doc.resolve(schema).clone();
        let plain = self.valid_resolved(&s, depth);
        let plain = if is_name && !self.names.is_empty() {
            prop_oneof![3 => proptest::sample::select(self.names.clone()).prop_map(Value::from), 1 => plain].boxed()
        } else {
            plain
        };
        let doc = self.doc.clone();
        plain
            .prop_filter("valid by the whole schema", move |v| {
                doc.validate(v, &s).is_ok()
            })
            .boxed()
    }

    fn valid_resolved(&self, s: &Value, depth: usize) -> BoxedStrategy<Value> {
        if let Some(options) = s.get("enum").and_then(Value::as_array) {
            let options: Vec<Value> = options.iter().filter(|v| !v.is_null()).cloned().collect();
            return proptest::sample::select(options).boxed();
        }
        if let Some(branches) = s.get("oneOf").and_then(Value::as_array) {
            let arms: Vec<_> = branches.iter().map(|b| self.valid(b, depth)).collect();
            return Union::new(arms).boxed();
        }
        let ty = s.get("type").and_then(Value::as_str).unwrap_or("object");
        match ty {
            "object" => self.valid_object(s, depth),
            "array" if depth >= MAX_DEPTH && s.get("minItems").is_none() => Just(json!([])).boxed(),
            "array" => {
                let max = 3;
                let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
                let items = s.get("items").cloned().unwrap_or(json!({"type": "string"}));
                proptest::collection::vec(self.valid(&items, depth + 1), min..=max.max(min))
                    .prop_map(Value::from)
                    .boxed()
            }
            "string" => {
                let pattern = match s.get("pattern").and_then(Value::as_str) {
                    Some(p) => unanchored(p).to_string(),
                    None => {
                        let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0);
                        format!("[a-z0-9._-]{{{min},12}}")
                    }
                };
                proptest::string::string_regex(&pattern)
                    .expect("pattern in proptest's regex subset")
                    .prop_map(Value::from)
                    .boxed()
            }
            "integer" => {
                let min = s.get("minimum").and_then(Value::as_i64).unwrap_or(-1000);
                let max = s
                    .get("maximum")
                    .and_then(Value::as_i64)
                    .unwrap_or(min + 100_000);
                prop_oneof![Just(min), Just(max), min..=max]
                    .prop_map(Value::from)
                    .boxed()
            }
            "number" => {
                let min = s.get("minimum").and_then(Value::as_f64).unwrap_or(-1e3);
                let max = s
                    .get("maximum")
                    .and_then(Value::as_f64)
                    .unwrap_or(min + 1e4);
                let exclusive = s.get("exclusiveMinimum") == Some(&Value::Bool(true));
                let low = if exclusive {
                    Just(min + 1e-3)
                } else {
                    Just(min)
                };
                prop_oneof![low, min..max, (0u32..100).prop_map(f64::from)]
                    .prop_filter("inside the range", move |x| *x >= min && *x <= max)
                    .prop_map(Value::from)
                    .boxed()
            }
            "boolean" => any::<bool>().prop_map(Value::from).boxed(),
            other => panic!("type {other} is not in the supported subset"),
        }
    }

    fn valid_object(&self, s: &Value, depth: usize) -> BoxedStrategy<Value> {
        let required = required(s);
        let empty = Map::new();
        let properties = s
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = properties
            .iter()
            .map(|(key, p)| {
                let key = key.clone();
                let value = self.valid(p, depth + 1);
                if required.contains(&key) {
                    value.prop_map(move |v| Some((key.clone(), v))).boxed()
                } else {
                    proptest::option::of(value.prop_map(move |v| (key.clone(), v))).boxed()
                }
            })
            .collect();
        fields
            .prop_map(|pairs| Value::Object(pairs.into_iter().flatten().collect()))
            .boxed()
    }

    /// Values invalid for `schema`, each with the field a refusal must name.
    pub fn invalid(&self, schema: &Value, depth: usize) -> BoxedStrategy<Invalid> {
        let s = self.doc.resolve(schema).clone();
        let doc = self.doc.clone();
        let whole = s.clone();
        self.invalid_resolved(&s, depth)
            .prop_filter("invalid by the whole schema", move |(v, _)| {
                doc.validate(v, &whole).is_err()
            })
            .boxed()
    }

    fn invalid_resolved(&self, s: &Value, depth: usize) -> BoxedStrategy<Invalid> {
        let ty = s.get("type").and_then(Value::as_str);
        let mut arms: Vec<BoxedStrategy<Invalid>> = Vec::new();
        // A value of another JSON type.
        let other_type = match ty {
            Some("string") => json!(7),
            Some("object") => json!(["not", "an", "object"]),
            Some("array") => json!("not an array"),
            Some("boolean") => json!("yes"),
            _ => json!("not a number"),
        };
        arms.push(Just((other_type, String::new())).boxed());
        if let Some(options) = s.get("enum").and_then(Value::as_array) {
            let bad = format!("not-{}", options[0].as_str().unwrap_or("x"));
            arms.push(Just((json!(bad), String::new())).boxed());
        }
        if s.get("oneOf").is_some() {
            for bad in [json!(-1), json!("x1"), json!(true)] {
                arms.push(Just((bad, String::new())).boxed());
            }
        }
        match ty {
            Some("object") => self.invalid_object(s, depth, &mut arms),
            Some("array") if depth < MAX_DEPTH => {
                let items = s.get("items").cloned().unwrap_or(json!({}));
                let good = proptest::collection::vec(self.valid(&items, depth + 1), 0..2);
                let arm =
                    (good, self.invalid(&items, depth + 1)).prop_map(|(mut list, (bad, field))| {
                        list.push(bad);
                        (Value::from(list), field)
                    });
                arms.push(arm.boxed());
            }
            Some("string") => {
                if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                    let regex = Regex::new(p).unwrap();
                    let spoiled = self.valid_resolved(s, depth).prop_flat_map(move |v| {
                        let text = v.as_str().unwrap_or_default().to_string();
                        let candidates: Vec<Value> = [
                            format!(" {text}"),
                            format!("x{text}"),
                            format!("{text}\n"),
                            String::new(),
                        ]
                        .into_iter()
                        .filter(|c| !regex.is_match(c))
                        .map(Value::from)
                        .collect();
                        let fallback = vec![Value::from("\u{0}")];
                        proptest::sample::select(if candidates.is_empty() {
                            fallback
                        } else {
                            candidates
                        })
                    });
                    arms.push(spoiled.prop_map(|v| (v, String::new())).boxed());
                }
                if s.get("minLength").and_then(Value::as_u64).unwrap_or(0) > 0 {
                    arms.push(Just((json!(""), String::new())).boxed());
                }
            }
            Some("integer") | Some("number") => {
                if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
                    let exclusive = s.get("exclusiveMinimum") == Some(&Value::Bool(true));
                    let below = if exclusive { min } else { min - 1.0 };
                    arms.push(Just((number(below, ty == Some("integer")), String::new())).boxed());
                }
                if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
                    arms.push(
                        Just((number(max + 1.0, ty == Some("integer")), String::new())).boxed(),
                    );
                }
                if ty == Some("integer") {
                    arms.push(Just((json!(1.5), String::new())).boxed());
                }
            }
            _ => {}
        }
        Union::new(arms).boxed()
    }

    fn invalid_object(&self, s: &Value, depth: usize, arms: &mut Vec<BoxedStrategy<Invalid>>) {
        // A wholly valid object (its `not` rule included) to break in one place.
        let (doc, whole) = (self.doc.clone(), s.clone());
        let base = self
            .valid_object(s, depth)
            .prop_filter("a valid base", move |v| doc.validate(v, &whole).is_ok())
            .boxed();
        for key in required(s) {
            let k = key.clone();
            arms.push(
                base.clone()
                    .prop_map(move |mut v| {
                        v.as_object_mut().unwrap().remove(&k);
                        (v, k.clone())
                    })
                    .boxed(),
            );
        }
        if s.get("additionalProperties") == Some(&Value::Bool(false)) {
            arms.push(
                base.clone()
                    .prop_map(|mut v| {
                        v.as_object_mut()
                            .unwrap()
                            .insert("unexpected_field".into(), json!(1));
                        (v, "unexpected_field".to_string())
                    })
                    .boxed(),
            );
        }
        if let Some(both) = s.get("not").map(required).filter(|r| !r.is_empty()) {
            let props = s["properties"].clone();
            let fields: Vec<_> = both
                .iter()
                .map(|k| (Just(k.clone()), self.valid(&props[k], depth + 1)))
                .collect();
            let first = both[0].clone();
            arms.push(
                (base.clone(), fields)
                    .prop_map(move |(mut v, pairs)| {
                        v.as_object_mut().unwrap().extend(pairs);
                        (v, first.clone())
                    })
                    .boxed(),
            );
        }
        if let Some(properties) = s.get("properties").and_then(Value::as_object) {
            for (key, p) in properties {
                if depth >= MAX_DEPTH && self.doc.resolve(p).get("type") == Some(&json!("array")) {
                    continue;
                }
                let k = key.clone();
                let arm = (base.clone(), self.invalid(p, depth + 1)).prop_map(
                    move |(mut v, (bad, field))| {
                        v.as_object_mut().unwrap().insert(k.clone(), bad);
                        let named = if field.is_empty() { k.clone() } else { field };
                        (v, named)
                    },
                );
                arms.push(arm.boxed());
            }
        }
    }
}

fn number(x: f64, integer: bool) -> Value {
    if integer {
        json!(x as i64)
    } else {
        json!(x)
    }
}
