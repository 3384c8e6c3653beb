//! `/openapi.json` describes exactly the routes the code serves: every route in the source is
//! documented with its methods, every documented operation is served (not 404 or 405 from the
//! router), and the document is the one the daemon hands out.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use support::*;

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

/// `(path, method)` for every `.route("…", handlers)` in the daemon's crates.
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
    let mut consts = std::collections::BTreeMap::new();
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
            let path = path.as_str();
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
            if !is_api(path) {
                continue;
            }
            let mut found = false;
            for m in METHODS {
                if handler.contains(&format!("{m}(")) {
                    out.insert((path.to_string(), m.to_string()));
                    found = true;
                }
            }
            if handler.contains("any(") {
                for m in METHODS {
                    out.insert((path.to_string(), m.to_string()));
                }
                found = true;
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

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc: Value = serde_json::from_str(tokenwarden_server::OPENAPI).unwrap();
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
    // Every $ref resolves and every operation id is unique.
    let text = tokenwarden_server::OPENAPI;
    for r in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    let mut ids = BTreeSet::new();
    for (path, m) in &docs {
        let id = doc["paths"][path][m]["operationId"].as_str().unwrap();
        assert!(ids.insert(id.to_string()), "operationId {id} twice");
    }
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
    let doc: Value = serde_json::from_str(tokenwarden_server::OPENAPI).unwrap();
    assert_eq!(served, doc);
    for (path, m) in documented(&doc) {
        let concrete = path
            .replace("{provider}", "snapchat")
            .replace("{id}", "nope")
            .replace("{connection_id}", "nope")
            .replace("{*path}", "v1/me");
        let url = format!("{}{}", w.d.base, concrete.trim_start_matches('/'));
        let method = reqwest::Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
        let r = w.http.request(method, &url).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_ne!(status, 405, "{m} {path} is not routed");
        assert!(
            !(status == 404 && body.is_empty()),
            "{m} {path} fell through to the router's 404"
        );
    }
    w.d.stop().await;
}
