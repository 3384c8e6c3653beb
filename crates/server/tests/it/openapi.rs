//! `/openapi.json` describes exactly the routes the code serves and the answers they give: every
//! route in the source is documented with its methods, every documented operation is served (not
//! 404 or 405 from the router), the document is the one the daemon hands out, and real answers
//! (successes with real data, and the usual failures) have a documented status and content type
//! and fit the documented schema. The document is written by hand; these tests keep it honest,
//! and `crates/cli/tests/openapi_fuzz.rs` runs schemathesis against it.

use crate::support;

use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use support::*;
use tokenwarden_core::clock::Clock;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Route paths the API document covers (HTML pages of the dashboard and the sandbox's platform
/// paths are not part of the API).
fn is_api(path: &str) -> bool {
    [
        "/v1/",
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/connect/",
        "/callback/",
        "/callbacks/",
        "/done",
        "/proxy/",
        "/metrics",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `(path, method)` for every `.route("…", handlers)` in the daemon's crates, with axum's
/// catch-all `{*path}` written as OpenAPI's `{path}`.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for c in std::fs::read_dir(crates).unwrap() {
        let c = c.unwrap().path();
        // The sandbox serves the platforms' paths, not ours.
        if c.ends_with("sandbox") || !c.join("src").is_dir() {
            continue;
        }
        rust_files(&c.join("src"), &mut files);
    }
    // Paths named by a constant (`const ROUTE: &str = "/proxy/…";`) are resolved by name.
    let texts: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|f| {
            let t = std::fs::read_to_string(&f).unwrap();
            (f, t)
        })
        .collect();
    let mut consts = BTreeMap::new();
    for (_, t) in &texts {
        for line in t.lines() {
            let line = line.trim_start().trim_start_matches("pub ");
            if let Some(rest) = line.strip_prefix("const ")
                && let Some((name, value)) = rest.split_once(": &str = \"")
                && let Some(value) = value.strip_suffix("\";")
            {
                consts.insert(name.trim().to_string(), value.to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    for (f, text) in &texts {
        let mut rest = text.as_str();
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let arg = rest.trim_start();
            let (path, after) = if let Some(q) = arg.strip_prefix('"') {
                let end = q.find('"').unwrap();
                (q[..end].to_string(), &q[end + 1..])
            } else {
                let end = arg.find(',').unwrap_or(0);
                let name = arg[..end].rsplit("::").next().unwrap().trim();
                let path = consts.get(name).unwrap_or_else(|| {
                    panic!(
                        "{}: route path {name} is not a known &str constant",
                        f.display()
                    )
                });
                (path.clone(), &arg[end..])
            };
            let path = path.replace("{*", "{");
            // The handler expression runs to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let mut handler = String::new();
            for ch in after.chars() {
                match ch {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                handler.push(ch);
            }
            if !is_api(&path) {
                continue;
            }
            assert!(
                !handler.contains("any("),
                "{}: {path} takes any method; route the methods it serves, so that the others are 405 and the document can list them",
                f.display()
            );
            let mut found = false;
            for m in METHODS {
                if handler.contains(&format!("{m}(")) {
                    out.insert((path.to_string(), m.to_string()));
                    found = true;
                }
            }
            assert!(found, "{}: no method for {path}: {handler}", f.display());
        }
    }
    out
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((path.clone(), m.to_string()));
            }
        }
    }
    out
}

fn doc() -> Value {
    serde_json::from_str(tokenwarden_server::OPENAPI).unwrap()
}

/// What a `$ref` (`#/a/b`) points at.
fn resolve<'a>(doc: &'a Value, r: &str) -> &'a Value {
    let pointer = r
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("only local references: {r}"));
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("dangling $ref {r}"))
}

/// `v` itself, or what it refers to.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, r),
        None => v,
    }
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let code = routes_in_source();
    let docs = documented(&doc);
    assert!(code.len() > 15, "the scan found the routes: {code:?}");
    let undocumented: Vec<_> = code.difference(&docs).collect();
    let unserved: Vec<_> = docs.difference(&code).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented but not routed: {unserved:?}"
    );
    // Every $ref resolves, and every operation id is unique.
    let text = tokenwarden_server::OPENAPI;
    for r in text.split("\"$ref\": \"").skip(1) {
        resolve(&doc, &r[..r.find('"').unwrap()]);
    }
    let mut ids = BTreeSet::new();
    for (path, m) in &docs {
        let id = doc["paths"][path][m]["operationId"].as_str().unwrap();
        assert!(ids.insert(id.to_string()), "operationId {id} twice");
    }
}

/// The rules every operation follows, so that a new one cannot forget them: the path parameters
/// are the template's; an operation behind an API key documents 401, 429 (refused keys) and 503
/// (the key is checked in the database), unless a `default` (the proxy: the platform's answer)
/// covers them; one with a JSON body documents 413 and 422; every error of the API is the one
/// `Error` schema.
#[test]
fn every_operation_documents_the_answers_all_of_its_kind_give() {
    let doc = doc();
    for (path, m) in documented(&doc) {
        let item = &doc["paths"][&path];
        let op = &item[&m];
        let what = format!("{} {path}", m.to_uppercase());
        let params: Vec<&Value> = item["parameters"]
            .as_array()
            .into_iter()
            .chain(op["parameters"].as_array())
            .flatten()
            .map(|p| deref(&doc, p))
            .collect();
        let in_path: BTreeSet<&str> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(in_path, in_template, "{what}: path parameters");
        for p in &params {
            assert!(
                p["schema"].is_object(),
                "{what}: parameter {} has a schema",
                p["name"]
            );
        }
        let responses = op["responses"].as_object().unwrap();
        // The proxy answers with the platform's statuses, so its own are one `default` too.
        if op.get("security").is_some() && !responses.contains_key("default") {
            for status in ["401", "429", "503"] {
                assert!(responses.contains_key(status), "{what}: documents {status}");
            }
        }
        if let Some(content) = op["requestBody"]["content"].as_object()
            && content.contains_key("application/json")
            && !path.starts_with("/callbacks/")
        {
            for status in ["413", "422"] {
                assert!(responses.contains_key(status), "{what}: documents {status}");
            }
        }
        if path.starts_with("/v1/") || path.starts_with("/proxy/") || path == "/metrics" {
            for (status, r) in responses {
                let r = deref(&doc, r);
                if status.starts_with(['4', '5']) {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{what} {status}: the JSON error"
                    );
                }
            }
        }
    }
}

/// A check of a value against a JSON Schema (2020-12, as OpenAPI 3.1 uses it) that knows the
/// keywords this document uses. One it does not know fails the test instead of being skipped,
/// so a schema can never pass by going unread. `pattern` is left to schemathesis (no regex
/// engine here): keep patterns to request schemas.
struct Schema<'a> {
    doc: &'a Value,
}

impl Schema<'_> {
    fn check(&self, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
        let Some(s) = schema.as_object() else {
            assert!(schema.is_boolean(), "{at}: a schema is an object: {schema}");
            if schema == &Value::Bool(false) {
                errs.push(format!("{at}: nothing is allowed here"));
            }
            return;
        };
        for (k, x) in s {
            match k.as_str() {
                "$ref" => self.check(resolve(self.doc, x.as_str().unwrap()), v, at, errs),
                "type" => {
                    let types: Vec<&str> = match x {
                        Value::String(t) => vec![t.as_str()],
                        Value::Array(a) => a.iter().map(|t| t.as_str().unwrap()).collect(),
                        _ => panic!("{at}: type {x}"),
                    };
                    if !types.iter().any(|t| is_type(v, t)) {
                        errs.push(format!("{at}: {v} is not {types:?}"));
                    }
                }
                "properties" => {
                    if let Some(o) = v.as_object() {
                        for (name, sub) in x.as_object().unwrap() {
                            if let Some(val) = o.get(name) {
                                self.check(sub, val, &format!("{at}.{name}"), errs);
                            }
                        }
                    }
                }
                "required" => {
                    if let Some(o) = v.as_object() {
                        for name in x.as_array().unwrap() {
                            if !o.contains_key(name.as_str().unwrap()) {
                                errs.push(format!("{at}: {name} is missing"));
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    if let Some(o) = v.as_object() {
                        let known = s.get("properties").and_then(Value::as_object);
                        for (name, val) in o {
                            if known.is_some_and(|k| k.contains_key(name)) {
                                continue;
                            }
                            if x == &Value::Bool(false) {
                                errs.push(format!("{at}: {name} is not documented"));
                            } else {
                                self.check(x, val, &format!("{at}.{name}"), errs);
                            }
                        }
                    }
                }
                "items" => {
                    if let Some(a) = v.as_array() {
                        for (i, val) in a.iter().enumerate() {
                            self.check(x, val, &format!("{at}[{i}]"), errs);
                        }
                    }
                }
                "minItems" | "maxItems" => {
                    if let Some(a) = v.as_array() {
                        let n = x.as_u64().unwrap() as usize;
                        if (k == "minItems" && a.len() < n) || (k == "maxItems" && a.len() > n) {
                            errs.push(format!("{at}: {} items breaks {k} {n}", a.len()));
                        }
                    }
                }
                "minLength" | "maxLength" => {
                    if let Some(t) = v.as_str() {
                        let n = x.as_u64().unwrap() as usize;
                        let len = t.chars().count();
                        if (k == "minLength" && len < n) || (k == "maxLength" && len > n) {
                            errs.push(format!("{at}: length {len} breaks {k} {n}"));
                        }
                    }
                }
                "minimum" | "maximum" => {
                    if v.is_number() {
                        let (val, bound) = (as_i128(v), as_i128(x));
                        if (k == "minimum" && val < bound) || (k == "maximum" && val > bound) {
                            errs.push(format!("{at}: {v} breaks {k} {x}"));
                        }
                    }
                }
                "enum" => {
                    if !x.as_array().unwrap().contains(v) {
                        errs.push(format!("{at}: {v} is not one of {x}"));
                    }
                }
                "const" => {
                    if x != v {
                        errs.push(format!("{at}: {v} is not {x}"));
                    }
                }
                "allOf" => {
                    for sub in x.as_array().unwrap() {
                        self.check(sub, v, at, errs);
                    }
                }
                "anyOf" | "oneOf" => {
                    let fits = x
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|sub| {
                            let mut e = Vec::new();
                            self.check(sub, v, at, &mut e);
                            e.is_empty()
                        })
                        .count();
                    if fits == 0 || (k == "oneOf" && fits > 1) {
                        errs.push(format!("{at}: {v} fits {fits} of the {k}"));
                    }
                }
                "format" => {
                    if let Some(t) = v.as_str() {
                        let ok = match x.as_str().unwrap() {
                            "date-time" => chrono::DateTime::parse_from_rfc3339(t).is_ok(),
                            "uri" => url::Url::parse(t).is_ok(),
                            other => panic!("{at}: format {other} is not checked here"),
                        };
                        if !ok {
                            errs.push(format!("{at}: {t:?} is not a {x}"));
                        }
                    }
                }
                "description" | "examples" | "default" | "title" | "deprecated" => {}
                other => panic!("{at}: the schema keyword {other} is not checked here: {schema}"),
            }
        }
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("unknown type {other}"),
    }
}

fn as_i128(v: &Value) -> i128 {
    v.as_i64()
        .map(i128::from)
        .or(v.as_u64().map(i128::from))
        .unwrap_or_else(|| v.as_f64().unwrap() as i128)
}

/// The operation `method path` calls: `(template, operation)`. A template's `{x}` takes one
/// segment, the proxy's `{path}` the rest.
fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> (String, &'a Value) {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for (template, item) in doc["paths"].as_object().unwrap() {
        let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        let matches = if t.last() == Some(&"{path}") {
            segs.len() >= t.len() && t[..t.len() - 1].iter().zip(&segs).all(|(a, b)| seg(a, b))
        } else {
            t.len() == segs.len() && t.iter().zip(&segs).all(|(a, b)| seg(a, b))
        };
        if matches && let Some(op) = item.get(method.to_lowercase()) {
            return (template.clone(), op);
        }
    }
    panic!("no documented operation for {method} {path}")
}

fn seg(template: &str, got: &str) -> bool {
    (template.starts_with('{') && !got.is_empty()) || template == got
}

/// An answer, as the test saw it.
struct Answer {
    status: u16,
    content_type: Option<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

/// Checks one answer against the document: its status is documented (or the operation has a
/// `default`), its content type is one the status documents, a JSON body fits the schema, and
/// the documented headers it carries fit theirs. Returns the operation id.
fn check(doc: &Value, method: &str, url: &str, a: &Answer) -> String {
    let path = url::Url::parse(url).unwrap().path().to_string();
    let (template, op) = operation(doc, method, &path);
    let id = op["operationId"].as_str().unwrap().to_string();
    let what = format!("{method} {path} ({id}) answered {}", a.status);
    let responses = &op["responses"];
    let r = responses
        .get(a.status.to_string())
        .or(responses.get("default"))
        .unwrap_or_else(|| panic!("{what}: undocumented status; body: {}", a.body));
    let r = deref(doc, r);
    let schema = Schema { doc };
    let mut errs = Vec::new();
    if let Some(content) = r["content"].as_object() {
        let ct = a
            .content_type
            .as_deref()
            .unwrap_or_else(|| panic!("{what}: no content type"));
        let media = ct.split(';').next().unwrap().trim();
        let c = content
            .get(media)
            .unwrap_or_else(|| panic!("{what}: content type {ct} is not one of {content:?}"));
        if media == "application/json" {
            let v: Value = serde_json::from_str(&a.body)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", a.body));
            schema.check(&c["schema"], &v, "body", &mut errs);
        }
    } else if !template.starts_with("/proxy/") {
        assert!(a.body.is_empty(), "{what}: a body where none is documented");
    }
    for (name, h) in r["headers"].as_object().into_iter().flatten() {
        let Some(value) = a.headers.get(name.as_str()) else {
            continue;
        };
        let text = value.to_str().unwrap();
        let h = deref(doc, h);
        let typed = match deref(doc, &h["schema"])["type"].as_str() {
            Some("integer") => json!(
                text.parse::<i128>()
                    .unwrap_or_else(|_| panic!("{what}: header {name}: {text} is not an integer"))
                    as i64
            ),
            _ => Value::String(text.to_string()),
        };
        schema.check(&h["schema"], &typed, &format!("header {name}"), &mut errs);
    }
    assert!(
        errs.is_empty(),
        "{what}:\n{}\nbody: {}",
        errs.join("\n"),
        a.body
    );
    id
}

/// Calls the daemon and checks the answer against the document; records the operation and
/// whether it succeeded.
struct Caller<'a> {
    w: &'a World,
    doc: Value,
    seen: BTreeMap<String, BTreeSet<u16>>,
}

impl Caller<'_> {
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<(&str, String)>,
        headers: &[(&str, String)],
    ) -> (u16, String) {
        let url = format!("{}{}", self.w.d.base, path.trim_start_matches('/'));
        let mut req = self
            .w
            .http
            .request(Method::from_bytes(method.as_bytes()).unwrap(), &url);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some((ct, b)) = body {
            req = req.header("content-type", ct).body(b);
        }
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let r = req.send().await.unwrap();
        let a = Answer {
            status: r.status().as_u16(),
            content_type: r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string()),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        };
        let id = check(&self.doc, method, &url, &a);
        self.seen.entry(id).or_default().insert(a.status);
        (a.status, a.body)
    }

    async fn json(&mut self, method: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
        let (status, text) = self
            .call(
                method,
                path,
                Some(key),
                Some(("application/json", body.to_string())),
                &[],
            )
            .await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&mut self, path: &str, key: Option<&str>) -> (u16, Value) {
        let (status, text) = self.call("GET", path, key, None, &[]).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// The schema check itself finds what it is for.
#[test]
fn the_schema_check_finds_undocumented_missing_and_mistyped_fields() {
    let doc = doc();
    let s = Schema { doc: &doc };
    let errors = |schema: &Value, v: &Value| {
        let mut e = Vec::new();
        s.check(schema, v, "body", &mut e);
        e
    };
    let key = json!({"$ref": "#/components/schemas/ApiKey"});
    let good = json!({"id": "abc", "role": "admin", "label": "x", "created_at": "2026-01-01T00:00:00Z", "revoked_at": null});
    assert_eq!(errors(&key, &good), Vec::<String>::new());
    for (change, says) in [
        (json!({"extra": 1}), "extra is not documented"),
        (json!({"role": "root"}), "is not one of"),
        (json!({"created_at": "yesterday"}), "is not a"),
        (json!({"revoked_at": 5}), "is not [\"string\", \"null\"]"),
    ] {
        let mut v = good.clone();
        v.as_object_mut()
            .unwrap()
            .extend(change.as_object().unwrap().clone());
        let e = errors(&key, &v);
        assert!(e.iter().any(|e| e.contains(says)), "{change}: {e:?}");
    }
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("label");
    assert!(errors(&key, &v).iter().any(|e| e.contains("label")));
    let limit = json!({"type": "integer", "minimum": 1, "maximum": 1000});
    assert!(!errors(&limit, &json!(1001)).is_empty());
    assert!(!errors(&limit, &json!(1.5)).is_empty());
    assert!(errors(&limit, &json!(1000)).is_empty());
}

#[tokio::test]
async fn the_daemon_serves_the_document_and_every_operation() {
    let w = world().await;
    let r = w
        .http
        .get(format!("{}openapi.json", w.d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let served: Value = r.json().await.unwrap();
    // The written document, with this daemon's providers as ProviderId's enum.
    let mut doc = doc();
    let providers = served["components"]["schemas"]["ProviderId"]["enum"].clone();
    assert!(
        providers
            .as_array()
            .unwrap()
            .contains(&json!("tiktok-business")),
        "{providers}"
    );
    doc["components"]["schemas"]["ProviderId"]["enum"] = providers;
    assert_eq!(served, doc);
    for (path, m) in documented(&doc) {
        let concrete = path
            .replace("{provider}", "snapchat")
            .replace("{id}", "nope")
            .replace("{connection_id}", "nope")
            .replace("{path}", "v1/me");
        let url = format!("{}{}", w.d.base, concrete.trim_start_matches('/'));
        let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
        let r = w.http.request(method, &url).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_ne!(status, 405, "{m} {path} is not routed");
        assert!(
            !(status == 404 && body.is_empty()),
            "{m} {path} fell through to the router's 404"
        );
    }
    // A method a path does not take is 405 with Allow, naming the documented methods; outside
    // the browser pages, with the JSON error.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let documented: Vec<String> = METHODS
            .iter()
            .filter(|m| item.get(**m).is_some())
            .map(|m| m.to_uppercase())
            .collect();
        let other = ["PUT", "PATCH", "DELETE", "POST", "TRACE"]
            .into_iter()
            .find(|m| !documented.iter().any(|d| d == m))
            .unwrap();
        let concrete = path
            .replace("{provider}", "snapchat")
            .replace("{app}", "demo")
            .replace("{token}", "nope")
            .replace("{id}", "nope")
            .replace("{connection_id}", "nope")
            .replace("{path}", "v1/me");
        let r = w
            .http
            .request(
                Method::from_bytes(other.as_bytes()).unwrap(),
                format!("{}{}", w.d.base, concrete.trim_start_matches('/')),
            )
            .bearer_auth(&w.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{other} {path}");
        let allow: BTreeSet<String> = r.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| m != "HEAD")
            .collect();
        assert_eq!(
            allow,
            documented.iter().cloned().collect::<BTreeSet<_>>(),
            "{other} {path}: Allow"
        );
        let page = ["/connect/", "/callback/", "/done"]
            .iter()
            .any(|p| path.starts_with(p));
        if !page {
            let body: Value = r.json().await.unwrap();
            assert_eq!(
                body["error"]["code"], "method_not_allowed",
                "{other} {path}"
            );
        }
    }
    // The proxy forwards the methods a platform API takes, and no other.
    for m in ["TRACE", "OPTIONS"] {
        let r = w
            .http
            .request(
                Method::from_bytes(m.as_bytes()).unwrap(),
                format!("{}proxy/nope/v1/me", w.d.base),
            )
            .bearer_auth(&w.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{m}");
        let allow = r.headers()["allow"].to_str().unwrap().to_string();
        for want in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] {
            assert!(allow.contains(want), "{m}: Allow {allow}");
        }
        assert!(!allow.contains("TRACE"), "{allow}");
    }
    w.d.stop().await;
}

/// Real answers, with real data behind them, fit the document: every operation is called at
/// least once where it succeeds (with a connection through the sandbox, a webhook endpoint, a
/// connect session, an event log), and the usual failures are called too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_fit_the_documented_statuses_types_and_schemas() {
    let w = world().await;
    let mut doc = doc();
    doc["components"]["schemas"]["ProviderId"]["enum"] =
        json!(["meta", "snapchat", "threads", "tiktok", "tiktok-business"]);
    let mut c = Caller {
        w: &w,
        doc,
        seen: BTreeMap::new(),
    };
    let admin = w.admin.clone();
    let reader = w.reader.clone();

    // The public routes.
    c.call("GET", "healthz", None, None, &[]).await;
    c.call("GET", "readyz", None, None, &[]).await;
    c.call("GET", "openapi.json", None, None, &[]).await;
    c.call("GET", "connect/snapchat", None, None, &[]).await;

    // A connect session, its link's page, its button, the platform's consent, the callback and
    // the done page: the documented browser trip.
    let (status, session) = c
        .json(
            "POST",
            "v1/connect-sessions",
            &admin,
            json!({"provider": "snapchat", "connection_id": "snap-1", "end_user": "ann", "scopes": ["snapchat-marketing-api"], "expires_in": 600}),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let link = session["url"].as_str().unwrap().to_string();
    let token_path = url::Url::parse(&link).unwrap().path().to_string();
    let (status, _) = c.call("GET", &token_path, None, None, &[]).await;
    assert_eq!(status, 200);
    let flow = w.approve_link("snapchat", &link, "ann").await;
    let r = w
        .http
        .get(&flow.callback)
        .header("cookie", &flow.cookie)
        .send()
        .await
        .unwrap();
    let callback = Answer {
        status: r.status().as_u16(),
        content_type: None,
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    };
    assert_eq!(callback.status, 303);
    let id = check(&c.doc, "GET", &flow.callback, &callback);
    c.seen.entry(id).or_default().insert(303);
    let done = callback.headers["location"].to_str().unwrap().to_string();
    let (status, _) = c.call("GET", &done, None, None, &[]).await;
    assert_eq!(status, 200, "{done}");
    let (status, _) = c.call("POST", &token_path, None, None, &[]).await;
    assert_eq!(status, 410, "the link was spent");
    // Another link's button, to the platform's consent page (not followed).
    let (_, other) = c
        .json(
            "POST",
            "v1/connect-sessions",
            &admin,
            json!({"provider": "tiktok", "return_to": w.d.base.clone()}),
        )
        .await;
    let other = url::Url::parse(other["url"].as_str().unwrap()).unwrap();
    let (status, _) = c.call("POST", other.path(), None, None, &[]).await;
    assert_eq!(status, 303);
    c.call("GET", "connect/s/no-such-link", None, None, &[])
        .await;
    c.call(
        "GET",
        "done?connection=snap-1&flow=000000000000000000000000",
        None,
        None,
        &[],
    )
    .await;
    c.call("GET", "done?connection=snap-1&flow=short", None, None, &[])
        .await;
    c.call("GET", "callback/snapchat?state=nope", None, None, &[])
        .await;

    // The connection, its token, a refresh, a probe, its events; through the proxy too.
    c.get("v1/apps", Some(&admin)).await;
    let (status, list) = c.get("v1/connections", Some(&admin)).await;
    assert_eq!(
        (status, list["connections"][0]["id"].as_str()),
        (200, Some("snap-1"))
    );
    c.get(
        "v1/connections?provider=snapchat&state=active",
        Some(&admin),
    )
    .await;
    c.get("v1/connections/snap-1", Some(&admin)).await;
    let (status, token) = c.get("v1/connections/snap-1/token", Some(&reader)).await;
    assert_eq!(status, 200, "{token}");
    let (status, _) = c
        .json(
            "POST",
            "v1/connections/snap-1/refresh",
            &reader,
            json!({"rejected_token": token["access_token"]}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = c
        .call(
            "POST",
            "v1/connections/snap-1/refresh",
            Some(&reader),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200, "no body: refresh now");
    let (status, _) = c
        .call(
            "POST",
            "v1/connections/snap-1/probe",
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    c.get("v1/connections/snap-1/events?limit=5", Some(&admin))
        .await;
    let (status, events) = c.get("v1/events?after=0&limit=1000", Some(&admin)).await;
    assert!(status == 200 && !events["events"].as_array().unwrap().is_empty());
    let me =
        w.d.state
            .providers
            .get("snapchat")
            .unwrap()
            .spec
            .api
            .probe
            .path
            .clone();
    let (status, _) = c
        .call(
            "GET",
            &format!("proxy/snap-1/{}", me.trim_start_matches('/')),
            Some(&reader),
            None,
            &[("tokenwarden-budget-ms", "5000".into())],
        )
        .await;
    assert_eq!(status, 200);
    for m in ["POST", "PUT", "PATCH", "DELETE"] {
        c.call(m, "proxy/snap-1/v1/nothing-here", Some(&admin), None, &[])
            .await;
    }
    c.call("GET", "proxy/snap-1/v1/%2E%2E/me", Some(&admin), None, &[])
        .await;
    c.call("GET", "proxy/snap%3A1/v1/me", Some(&admin), None, &[])
        .await;
    c.call("GET", "proxy/no%20pe/v1/me", Some(&admin), None, &[])
        .await;
    c.call(
        "GET",
        "proxy/snap-1/v1/me",
        Some(&admin),
        None,
        &[("tokenwarden-budget-ms", "soon".into())],
    )
    .await;
    c.call("GET", "metrics", Some(&reader), None, &[]).await;
    c.call("GET", "metrics", None, None, &[]).await;

    // Diagnosis, in both header shapes.
    for headers in [json!({"x-request-id": "1"}), json!([["x-request-id", "1"]])] {
        let (status, v) = c
            .json(
                "POST",
                "v1/diagnose",
                &admin,
                json!({"provider": "meta", "status": 400, "headers": headers, "body": "{\"error\":{\"code\":190,\"error_subcode\":463}}"}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }

    // API keys and webhook endpoints, made, read and removed.
    let (status, key) = c
        .json(
            "POST",
            "v1/api-keys",
            &admin,
            json!({"role": "token_reader", "label": "ci"}),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    c.get("v1/api-keys", Some(&admin)).await;
    let kid = key["id"].as_str().unwrap().to_string();
    let (status, _) = c
        .call(
            "DELETE",
            &format!("v1/api-keys/{kid}"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let (status, hook) = c
        .json(
            "POST",
            "v1/webhooks",
            &admin,
            json!({"url": "http://127.0.0.1:9/hook", "enabled": false}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let hid = hook["id"].as_str().unwrap().to_string();
    c.get("v1/webhooks", Some(&admin)).await;
    c.get(&format!("v1/webhooks/{hid}"), Some(&admin)).await;
    c.get(
        &format!("v1/webhooks/{hid}/deliveries?limit=10"),
        Some(&admin),
    )
    .await;
    let (status, _) = c
        .call(
            "DELETE",
            &format!("v1/webhooks/{hid}"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);

    // A removal the platform signed (Meta's signed_request), then the connection is deleted.
    let (status, meta) = c
        .json(
            "POST",
            "v1/connect-sessions",
            &admin,
            json!({"provider": "meta", "connection_id": "meta-1"}),
        )
        .await;
    assert_eq!(status, 201, "{meta}");
    let flow = w
        .approve_link("meta", meta["url"].as_str().unwrap(), "bob")
        .await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let (_, conn) = c.get("v1/connections/meta-1", Some(&admin)).await;
    let user = conn["account"]["id"].as_str().unwrap();
    let payload = json!({"algorithm": "HMAC-SHA256", "issued_at": w.clock.now().timestamp(), "user_id": user}).to_string();
    let signed =
        tokenwarden_core::platform_callback::meta_signed_request(b"demo-meta-secret", &payload);
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("signed_request", &signed)
        .finish();
    let (status, _) = c
        .call(
            "POST",
            "callbacks/meta/demo/deauthorize",
            None,
            Some(("application/x-www-form-urlencoded", form)),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    // A forged one, and one too large to read.
    for body in ["signed_request=x.y".to_string(), "a".repeat(70 * 1024)] {
        let (status, _) = c
            .call(
                "POST",
                "callbacks/meta/demo/deauthorize",
                None,
                Some(("application/x-www-form-urlencoded", body)),
                &[],
            )
            .await;
        assert!(status == 400 || status == 413, "{status}");
    }
    let (status, _) = c
        .call(
            "GET",
            "v1/connections/meta-1/token",
            Some(&reader),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 409, "reauth_required after the removal");
    c.call("GET", "proxy/meta-1/me", Some(&reader), None, &[])
        .await;
    let (status, _) = c
        .call("DELETE", "v1/connections/meta-1", Some(&admin), None, &[])
        .await;
    assert_eq!(status, 200);

    // Path segments that are not UTF-8 text once decoded: the same JSON error (or page) as any
    // other malformed id, not the framework's text.
    for (m, path, key) in [
        ("GET", "v1/connections/%FF", Some(admin.as_str())),
        ("GET", "v1/webhooks/%FF/deliveries", Some(admin.as_str())),
        ("DELETE", "v1/api-keys/%FF", Some(admin.as_str())),
        ("GET", "proxy/%FF/me", Some(admin.as_str())),
        ("GET", "connect/s/%FF", None),
        ("POST", "connect/s/%FF", None),
        ("GET", "connect/%FF", None),
        ("GET", "callback/%FF?state=x", None),
        ("POST", "callbacks/%FF/demo/deauthorize", None),
    ] {
        let (status, _) = c.call(m, path, key, None, &[]).await;
        assert!([400, 403, 404].contains(&status), "{m} {path}: {status}");
    }

    // The usual failures: no key, a reader's key on an admin route, unknown and malformed ids,
    // malformed queries and bodies.
    for (m, path) in [("GET", "v1/apps"), ("GET", "v1/connections/snap-1/token")] {
        c.call(m, path, None, None, &[]).await;
        c.call(m, path, Some("tw_nope_nope"), None, &[]).await;
    }
    c.get("v1/connections", Some(&reader)).await;
    c.get("v1/connections/nope", Some(&admin)).await;
    c.get("v1/connections/no%20pe", Some(&admin)).await;
    c.get("v1/connections/nope/token", Some(&admin)).await;
    c.get("v1/webhooks/nope", Some(&admin)).await;
    c.call("DELETE", "v1/api-keys/nope", Some(&admin), None, &[])
        .await;
    c.get("v1/connections?state=", Some(&admin)).await;
    c.get("v1/connections?provider=nope", Some(&admin)).await;
    c.get("v1/connections?colour=red", Some(&admin)).await;
    c.get("v1/events?limit=1001", Some(&admin)).await;
    c.get("v1/events?after=-1", Some(&admin)).await;
    c.get("v1/connections/snap-1/events?limit=0", Some(&admin))
        .await;
    for (body, ct) in [
        ("{", "application/json"),
        ("[]", "application/json"),
        (
            "{\"provider\": \"snapchat\", \"status\": 42}",
            "application/json",
        ),
        (
            "{\"provider\": \"snapchat\", \"status\": 400, \"headers\": [[\"a\"]]}",
            "application/json",
        ),
        ("{\"provider\": \"snapchat\"}", "application/json"),
        (
            "{\"provider\": \"snapchat\", \"status\": 400}",
            "text/plain",
        ),
    ] {
        c.call(
            "POST",
            "v1/diagnose",
            Some(&admin),
            Some((ct, body.into())),
            &[],
        )
        .await;
    }
    c.call(
        "POST",
        "v1/connections/snap-1/refresh",
        Some(&reader),
        Some(("application/json", "[\"x\"]".into())),
        &[],
    )
    .await;
    c.json("POST", "v1/webhooks", &admin, json!({"url": "ftp://x/"}))
        .await;
    c.json(
        "POST",
        "v1/connect-sessions",
        &admin,
        json!({"provider": "snapchat", "return_to": "https://elsewhere.example/"}),
    )
    .await;
    c.json(
        "POST",
        "v1/connect-sessions",
        &admin,
        json!({"provider": "snapchat", "app": "nope"}),
    )
    .await;
    c.json("POST", "v1/api-keys", &admin, json!({"role": "root"}))
        .await;

    // Every operation was seen succeeding (2xx or 3xx), but the one that never does; the proxy's
    // answers are the platform's, whatever their status.
    let never: BTreeSet<&str> = ["connectClosed"].into();
    for (path, m) in documented(&c.doc) {
        let id = c.doc["paths"][&path][&m]["operationId"].as_str().unwrap();
        let seen = c.seen.get(id);
        let ok = seen.is_some_and(|s| {
            s.iter().any(|x| (200..400).contains(x))
                || (path.starts_with("/proxy/") && !s.is_empty())
        });
        assert!(
            ok || never.contains(id),
            "{id} ({m} {path}) was not seen succeeding: {seen:?}"
        );
    }
    w.d.stop().await;
}
