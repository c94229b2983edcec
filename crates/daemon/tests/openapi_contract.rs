//! The API contract: the document served at /api/v1/openapi.json is exact
//! (its validity as OpenAPI 3.0.3 and a generated client are checked in
//! tests/openapi_tools.rs): requests generated from the
//! document itself (every operation with a body or a parameter, valid and
//! invalid by its schemas) get the answers it documents from a real
//! `keel serve` on 127.0.0.1. Valid ones are never refused for their shape
//! (only for the state they meet: an unknown VM, a conflicting rule);
//! invalid ones get 400 or 422 naming the field; every answer's status is
//! documented and its body matches the documented schema.

mod common;
#[path = "openapi/schema.rs"]
mod schema;

use common::*;
use keel_alloc::config::AllocConfig;
use keel_alloc::units::Units;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use schema::{Doc, Gen};
use serde_json::{json, Value};
use std::net::SocketAddr;

/// Generated requests per operation, each of valid and invalid.
const CASES: u32 = 24;

/// Cases per operation: [`CASES`], or `PROPTEST_CASES` for a longer run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES)
}

/// Error codes that mean "refused for its shape": never the answer to a
/// request the document calls valid.
const SHAPE_CODES: &[&str] = &[
    "bad_json",
    "bad_request",
    "invalid_setting",
    "payload_too_large",
];

/// The documented refusals of an allocation policy for what a JSON schema
/// cannot say (state or cross-field rules, PUT /api/v1/allocation).
const ALLOCATION_RULES: &[&str] = &[
    "unknown VM",
    "appears more than once",
    "is above its limit",
    "does not fit",
    "nested deeper",
    "disk_iops_limit is given too",
];

/// The documented cross-field rules of an allocation policy: a generated
/// invalid policy whose valid part already breaks one of them first is
/// set aside (it says nothing about the field broken on purpose).
const CROSS_FIELD_RULES: &[&str] = &[
    "appears more than once",
    "is above its limit",
    "disk_iops_limit is given too",
];

fn served_doc(addr: SocketAddr) -> Doc {
    let reply = get(addr, "/api/v1/openapi.json");
    assert_eq!(reply.status, 200);
    Doc::new(&reply.body)
}

#[test]
fn the_document_stays_in_the_checked_subset_with_ids_examples_and_links() {
    let doc = Doc::new(keel_daemon::api::OPENAPI_JSON);
    assert_eq!(
        doc.unsupported(),
        Vec::<String>::new(),
        "keywords the tests do not check"
    );
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc.root["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            if let Some(body) = op.get("requestBody") {
                let body = doc.resolve(body);
                assert!(
                    body["content"]["application/json"]["example"].is_object(),
                    "{method} {path}: no example"
                );
                let schema = &body["content"]["application/json"]["schema"];
                let example = &body["content"]["application/json"]["example"];
                doc.validate(example, schema)
                    .unwrap_or_else(|e| panic!("{method} {path}: example {e}"));
            }
        }
    }
    // Every link names an operation that exists, by parameters it has.
    let mut params_of = std::collections::BTreeMap::new();
    for item in doc.root["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let names: Vec<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| doc.resolve(p)["name"].as_str().unwrap().to_string())
                .collect();
            params_of.insert(op["operationId"].as_str().unwrap().to_string(), names);
        }
    }
    let mut all_links: Vec<&Value> = doc.root["components"]["links"]
        .as_object()
        .unwrap()
        .values()
        .collect();
    for item in doc.root["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            for response in op["responses"].as_object().unwrap().values() {
                let links = response.get("links").and_then(Value::as_object);
                all_links.extend(links.into_iter().flat_map(|l| l.values()));
            }
        }
    }
    assert!(all_links.len() >= 15, "{}", all_links.len());
    for link in all_links {
        let link = doc.resolve(link);
        let target = link["operationId"].as_str().unwrap();
        let known = params_of
            .get(target)
            .unwrap_or_else(|| panic!("link to unknown {target}"));
        for (name, expression) in link["parameters"].as_object().unwrap() {
            assert!(
                known.contains(name),
                "link to {target}: no parameter {name}"
            );
            assert!(expression.as_str().unwrap().starts_with("$response.body#/"));
        }
    }
    let links = |path: &str, method: &str, status: &str| -> Vec<String> {
        let r = &doc.root["paths"][path][method]["responses"][status]["links"];
        r.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert!(links("/api/v1/plans", "get", "200").contains(&"ApplyPlan".to_string()));
    assert!(links("/api/v1/plans/{id}", "get", "200").contains(&"RejectPlan".to_string()));
    assert!(links("/api/v1/cluster", "get", "200").contains(&"VmSamples".to_string()));
    assert!(links("/api/v1/cluster", "get", "200").contains(&"EnterMaintenance".to_string()));
}

/// One generated request.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    body: Option<Value>,
    /// For an invalid request: the field its refusal must name ("" any).
    field: Option<String>,
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Requests for one operation: valid ones, or invalid ones (one body
/// field or one parameter broken).
/// `hosts` and `vms`: the cluster's, for the `name` of host and VM paths.
fn calls(
    generator: &Gen,
    path: &str,
    op: &Value,
    valid: bool,
    hosts: &[String],
    vms: &[String],
) -> Option<BoxedStrategy<Call>> {
    let doc = &generator.doc;
    let params: Vec<Value> = op["parameters"]
        .as_array()
        .map(|a| a.iter().map(|p| doc.resolve(p).clone()).collect())
        .unwrap_or_default();
    let body = op.get("requestBody").map(|b| doc.resolve(b).clone());
    if params.is_empty() && body.is_none() {
        return None;
    }
    let names = if path.starts_with("/api/v1/hosts/") {
        hosts.to_vec()
    } else if path.starts_with("/api/v1/vms/") {
        vms.to_vec()
    } else {
        generator.names.clone()
    };
    // Each parameter: (name, in, required, valid strategy, invalid strategy).
    let mut param_values: Vec<BoxedStrategy<Option<(String, String, String)>>> = Vec::new();
    let mut broken: Vec<BoxedStrategy<(String, String, String)>> = Vec::new();
    for p in &params {
        let name = p["name"].as_str().unwrap().to_string();
        let place = p["in"].as_str().unwrap().to_string();
        let schema = p["schema"].clone();
        let mut good = generator
            .valid(&schema, 0)
            .prop_map(|v| as_text(&v))
            .boxed();
        if name == "name" {
            good = prop_oneof![proptest::sample::select(names.clone()), good].boxed();
        }
        let (n, w) = (name.clone(), place.clone());
        let good = good.prop_map(move |v| (n.clone(), w.clone(), v));
        param_values.push(if place == "path" {
            good.prop_map(Some).boxed()
        } else {
            proptest::option::of(good).boxed()
        });
        // A plain string in the path has no invalid form that reaches the
        // operation (an empty segment routes nowhere).
        let resolved = doc.resolve(&schema);
        if resolved["type"] != "string" || resolved.get("enum").is_some() {
            let (n, w) = (name.clone(), place.clone());
            broken.push(
                generator
                    .invalid(&schema, 0)
                    .prop_filter("a URL carries strings", |(v, _)| {
                        v.is_number() || v.is_string()
                    })
                    .prop_map(move |(v, _)| (n.clone(), w.clone(), as_text(&v)))
                    .boxed(),
            );
        }
    }
    let content = body
        .as_ref()
        .map(|b| b["content"]["application/json"]["schema"].clone());
    let body_required = body.as_ref().is_some_and(|b| b["required"] == true);
    let good_body: BoxedStrategy<Option<Value>> = match &content {
        None => Just(None).boxed(),
        Some(s) if body_required => generator.valid(s, 0).prop_map(Some).boxed(),
        Some(s) => proptest::option::of(generator.valid(s, 0)).boxed(),
    };
    let path = path.to_string();
    let build = move |values: Vec<Option<(String, String, String)>>,
                      body: Option<Value>,
                      field: Option<String>| {
        let mut url = path.clone();
        let mut query = Vec::new();
        for (name, place, value) in values.into_iter().flatten() {
            if place == "path" {
                url = url.replace(&format!("{{{name}}}"), &encode(&value));
            } else {
                query.push(format!("{name}={}", encode(&value)));
            }
        }
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        Call {
            path: url,
            body,
            field,
        }
    };
    if valid {
        return Some(
            (param_values, good_body)
                .prop_map(move |(v, b)| build(v, b, None))
                .boxed(),
        );
    }
    let mut arms: Vec<BoxedStrategy<Call>> = Vec::new();
    if let Some(s) = &content {
        let build = build.clone();
        let bad_body = generator.invalid(s, 0);
        arms.push(
            (param_values.clone(), bad_body)
                .prop_map(move |(v, (b, field))| build(v, Some(b), Some(field)))
                .boxed(),
        );
    }
    for (i, bad) in broken.into_iter().enumerate() {
        let build = build.clone();
        let mut others = param_values.clone();
        others[i] = Just(None).boxed();
        let fixed_index = i;
        arms.push(
            (others, bad, good_body.clone())
                .prop_map(move |(mut v, (name, place, value), b)| {
                    v[fixed_index] = Some((name.clone(), place, value));
                    build(v, b, Some(name))
                })
                .boxed(),
        );
    }
    if arms.is_empty() {
        return None;
    }
    Some(proptest::strategy::Union::new(arms).boxed())
}

/// Checks an answer against the operation's documented responses.
fn check_answer(
    doc: &Doc,
    op: &Value,
    method: &str,
    path: &str,
    reply: &Reply,
) -> Result<(), String> {
    let status = reply.status.to_string();
    let Some(documented) = op["responses"].get(&status) else {
        return Err(format!(
            "{method} {path}: status {status} is not documented: {}",
            reply.body
        ));
    };
    let documented = doc.resolve(documented);
    if let Some(schema) = documented.pointer("/content/application~1json/schema") {
        let body: Value = serde_json::from_str(&reply.body).map_err(|e| {
            format!(
                "{method} {path}: {status} body is not JSON ({e}): {}",
                reply.body
            )
        })?;
        doc.validate(&body, schema).map_err(|e| {
            format!("{method} {path}: {status} body does not match the document: {e}")
        })?;
    }
    Ok(())
}

fn send(addr: SocketAddr, method: &str, request: &Call) -> Reply {
    let body = request
        .body
        .as_ref()
        .map(Value::to_string)
        .unwrap_or_default();
    call(
        addr,
        &method.to_uppercase(),
        &request.path,
        Some(TOKEN),
        &body,
    )
}

#[test]
fn generated_requests_get_the_documented_answers() {
    let (daemon, _clock) = manual_daemon_after(3);
    let addr = daemon.addr();
    let doc = served_doc(addr);
    let cluster = get(addr, "/api/v1/cluster").json();
    let names_of = |key: &str| -> Vec<String> {
        let items = cluster[key].as_array().unwrap();
        items
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (vms, hosts) = (names_of("vms"), names_of("hosts"));
    let generator = Gen {
        doc: doc.clone(),
        names: [vms.clone(), hosts.clone()].concat(),
    };
    let mut operations = 0;
    for (path, item) in doc.root["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for valid in [true, false] {
                let Some(strategy) = calls(&generator, path, op, valid, &hosts, &vms) else {
                    continue;
                };
                operations += 1;
                let mut runner = TestRunner::new(Config {
                    cases: cases(),
                    max_global_rejects: 4096,
                    failure_persistence: None,
                    ..Config::default()
                });
                let statuses = std::cell::RefCell::new(std::collections::BTreeMap::new());
                let result = runner.run(&strategy, |request| {
                    let reply = send(addr, method, &request);
                    let answer: Value = serde_json::from_str(&reply.body).unwrap_or(json!({}));
                    let code = answer["code"].as_str().unwrap_or("").to_string();
                    *statuses
                        .borrow_mut()
                        .entry(format!("{} {code}", reply.status).trim().to_string())
                        .or_insert(0) += 1;
                    check_answer(&doc, op, method, path, &reply).map_err(TestCaseError::fail)?;
                    let answer: Value = serde_json::from_str(&reply.body).unwrap_or(json!({}));
                    let code = answer["code"].as_str().unwrap_or("");
                    let message = answer["message"].as_str().unwrap_or("");
                    let said = format!(
                        "{method} {} {:?} -> {} {}",
                        request.path,
                        request.body.as_ref().map(Value::to_string),
                        reply.status,
                        reply.body
                    );
                    match &request.field {
                        None => {
                            if reply.status == 400 || SHAPE_CODES.contains(&code) {
                                return Err(TestCaseError::fail(format!(
                                    "valid request refused for its shape: {said}"
                                )));
                            }
                            if code == "invalid_allocation"
                                && !ALLOCATION_RULES.iter().any(|r| message.contains(r))
                            {
                                return Err(TestCaseError::fail(format!(
                                    "valid policy refused for its shape: {said}"
                                )));
                            }
                        }
                        Some(field) => {
                            if code == "invalid_allocation"
                                && CROSS_FIELD_RULES.iter().any(|r| message.contains(r))
                            {
                                // The generated base broke a documented cross-field rule first.
                                return Err(TestCaseError::reject("cross-field rule"));
                            }
                            if !(reply.status == 400 || reply.status == 422) {
                                return Err(TestCaseError::fail(format!(
                                    "invalid request not refused with 400/422: {said}"
                                )));
                            }
                            if !message.contains(field.as_str()) {
                                return Err(TestCaseError::fail(format!(
                                    "refusal does not name the field {field}: {said}"
                                )));
                            }
                        }
                    }
                    Ok(())
                });
                let kind = if valid { "valid" } else { "invalid" };
                println!(
                    "{method:>6} {path:<36} {kind:<7} statuses {:?}",
                    statuses.borrow()
                );
                if let Err(e) = result {
                    panic!(
                        "{method} {path} ({}): {e}",
                        if valid { "valid" } else { "invalid" }
                    );
                }
            }
        }
    }
    println!(
        "generated requests checked for {operations} operation kinds, {} cases each",
        cases()
    );
    assert!(operations >= 25, "{operations}");
}

#[test]
fn every_get_answers_with_its_documented_shape() {
    let (daemon, _clock) = manual_daemon_after(3);
    let addr = daemon.addr();
    let doc = served_doc(addr);
    let plan = get(addr, "/api/v1/plans").json()["plans"][0]["id"]
        .as_u64()
        .expect("a plan after three rounds");
    let vm = get(addr, "/api/v1/cluster").json()["vms"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        "/healthz".to_string(),
        "/api/v1/cluster".into(),
        "/api/v1/plans".into(),
        format!("/api/v1/plans/{plan}"),
        "/api/v1/settings".into(),
        "/api/v1/rules".into(),
        format!("/api/v1/vms/{vm}/samples"),
        "/api/v1/hosts/host-00/samples".into(),
        "/api/v1/imbalance".into(),
        "/api/v1/audit".into(),
        "/api/v1/actions".into(),
        "/api/v1/allocation".into(),
        "/api/v1/openapi.json".into(),
    ] {
        let reply = get(addr, &path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        let template = if path.contains("/plans/") {
            "/api/v1/plans/{id}"
        } else if path.starts_with("/api/v1/vms/") {
            "/api/v1/vms/{name}/samples"
        } else if path.starts_with("/api/v1/hosts/") {
            "/api/v1/hosts/{name}/samples"
        } else {
            &path
        };
        let op = &doc.root["paths"][template]["get"];
        check_answer(&doc, op, "get", &path, &reply).unwrap();
    }
}

#[test]
fn the_agent_reads_every_policy_the_document_allows() {
    // keel agent parses GET /api/v1/allocation with AllocConfig::from_json
    // and default units (crates/cli/src/agent_link.rs); every policy the
    // document allows there, served or sent, must parse.
    let doc = Doc::new(keel_daemon::api::OPENAPI_JSON);
    let generator = Gen {
        doc: doc.clone(),
        names: vec!["vm-000".into(), "vm-001".into()],
    };
    for schema in ["AllocationPolicy", "AllocationPolicyInput"] {
        let strategy = generator.valid(
            &json!({"$ref": format!("#/components/schemas/{schema}")}),
            0,
        );
        let mut runner = TestRunner::new(Config {
            cases: cases().max(200),
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&strategy, |policy| {
                let bytes = policy.to_string();
                match AllocConfig::from_json(bytes.as_bytes(), &Units::default()) {
                    Ok(_) => Ok(()),
                    // The one documented cross-field rule of the parse.
                    Err(e) if e.to_string().contains("disk_iops_limit is given too") => {
                        Err(TestCaseError::reject("IOPS limit given twice"))
                    }
                    Err(e) => Err(TestCaseError::fail(format!("{schema} {bytes}: {e}"))),
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn oversized_bodies_get_the_documented_413() {
    let (daemon, _clock) = manual_daemon();
    let addr = daemon.addr();
    let doc = served_doc(addr);
    let body = format!(
        "{{\"by\": \"{}\"}}",
        "x".repeat(keel_daemon::api::MAX_BODY_BYTES)
    );
    let mut checked = 0;
    for (path, item) in doc.root["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("requestBody").is_none() {
                continue;
            }
            let url = path
                .replace("{id}", "1")
                .replace("{name}", "host-00")
                .replace("{kind}", "pin");
            let reply = call(addr, &method.to_uppercase(), &url, Some(TOKEN), &body);
            assert_eq!(reply.status, 413, "{method} {url}: {}", reply.body);
            assert_eq!(reply.json()["code"], "payload_too_large");
            check_answer(&doc, op, method, path, &reply).unwrap();
            checked += 1;
        }
    }
    assert_eq!(checked, 10, "every operation with a body");
}
