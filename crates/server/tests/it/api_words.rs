//! The API says what happened, the same way on every route: a probe answers with what it found
//! and leaves an event; a refused API key is told it is unknown or revoked; an unknown app names
//! the apps there are; unknown routes answer JSON; unknown connection ids are 404 and invalid
//! filters 400 wherever they appear.

use crate::support;

use serde_json::{Value, json};
use support::world;

async fn call(
    w: &support::World,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut r = w.http.request(method, format!("{}{path}", w.d.base));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let r = r.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

fn json_error(status: u16, body: &str, what: &str) -> Value {
    let v: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: {status} is not JSON ({e}): {body}"));
    assert!(v["error"]["code"].is_string(), "{what}: {v}");
    assert!(v["error"]["message"].is_string(), "{what}: {v}");
    v
}

#[tokio::test]
async fn a_probe_answers_with_what_it_found_and_records_it() {
    let w = world().await;
    // A long-term TikTok Business token: no refresh stands between the probe and its verdict.
    let flow = w.start_and_approve("tiktok-business", "probed").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let (status, v) = w
        .post(&w.admin, "v1/connections/probed/probe", json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"], "probed", "the connection as before: {v}");
    assert_eq!(v["probe"]["outcome"], "ok", "{v}");
    assert_eq!(v["probe"]["kind"], "ok", "{v}");

    w.revoke_latest_grant("tiktok-business").await;
    let (status, v) = w
        .post(&w.admin, "v1/connections/probed/probe", json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["probe"]["outcome"], "problem", "{v}");
    assert!(
        v["probe"]["kind"]
            .as_str()
            .is_some_and(|k| k.starts_with("token_")),
        "{v}"
    );
    assert!(!v["probe"]["title"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(v["state"], "reauth_required", "{v}");

    let (_, events) = w.api(&w.admin, "v1/connections/probed/events").await;
    let probed: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "probed")
        .collect();
    assert_eq!(probed.len(), 2, "{events}");
    let outcomes: Vec<&str> = probed
        .iter()
        .map(|e| e["details"]["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.contains(&"ok") && outcomes.contains(&"problem"),
        "{outcomes:?}"
    );

    // A connection that needs a person is not probed, and the answer says so.
    let (status, v) = w
        .post(&w.admin, "v1/connections/probed/probe", json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["probe"]["outcome"], "skipped", "{v}");
    assert!(
        v["probe"]["title"]
            .as_str()
            .unwrap()
            .contains("reauth_required"),
        "{v}"
    );
    w.d.stop().await;
}

#[tokio::test]
async fn a_wrong_api_key_is_told_it_is_unknown_and_a_missing_one_to_send_one() {
    let w = world().await;
    let (status, _, body) = call(
        &w,
        reqwest::Method::GET,
        "v1/connections",
        Some("tw_not_a_key"),
    )
    .await;
    assert_eq!(status, 401);
    let v = json_error(status, &body, "a wrong key");
    let said = v["error"]["message"].as_str().unwrap();
    assert!(said.contains("unknown or revoked"), "{said}");
    assert!(!said.contains("send an API key"), "{said}");
    assert!(
        !said.contains("tw_not_a_key"),
        "the key is not echoed: {said}"
    );

    let (status, _, body) = call(&w, reqwest::Method::GET, "v1/connections", None).await;
    assert_eq!(status, 401);
    let v = json_error(status, &body, "no key");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("send an API key"),
        "{v}"
    );
    w.d.stop().await;
}

#[tokio::test]
async fn an_unknown_app_names_the_apps_there_are() {
    let w = world().await;
    let (status, v) = w
        .post(
            &w.admin,
            "v1/connect-sessions",
            json!({"provider": "snapchat", "app": "nosuch"}),
        )
        .await;
    // Well-formed, but not in the configuration: a conflict with it, not a malformed request.
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "unknown_app");
    let said = v["error"]["message"].as_str().unwrap();
    assert!(
        said.contains("nosuch") && said.contains("its apps are: demo"),
        "{said}"
    );
    w.d.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let w = world().await;
    for (method, path) in [
        (reqwest::Method::GET, "v1/nothing-here"),
        (reqwest::Method::GET, "v1"),
        (reqwest::Method::POST, "v1/connections/x/nothing"),
        (reqwest::Method::GET, "nothing-here"),
    ] {
        let (status, headers, body) = call(&w, method.clone(), path, Some(&w.admin)).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{method} {path}"
        );
        let v = json_error(status, &body, path);
        assert_eq!(v["error"]["code"], "no_such_route", "{v}");
    }
    let (status, _, body) = call(&w, reqwest::Method::PUT, "v1/connections", Some(&w.admin)).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(
        json_error(status, &body, "PUT")["error"]["code"],
        "method_not_allowed"
    );
    // A browser that mistyped a dashboard address gets a page with a way back; under /v1 it
    // still gets JSON.
    let r = w
        .http
        .get(format!("{}no-such-page", w.d.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let html = r.text().await.unwrap();
    assert!(html.contains("href=\"/\""), "{html}");
    let r = w
        .http
        .get(format!("{}v1/no-such", w.d.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    json_error(404, &r.text().await.unwrap(), "v1 from a browser");
    w.d.stop().await;
}

#[tokio::test]
async fn unknown_connections_are_404_and_bad_filters_400_on_every_route() {
    let w = world().await;
    use reqwest::Method as M;
    for (method, path) in [
        (M::GET, "v1/connections/ghost"),
        (M::DELETE, "v1/connections/ghost"),
        (M::GET, "v1/connections/ghost/token"),
        (M::POST, "v1/connections/ghost/refresh"),
        (M::POST, "v1/connections/ghost/probe"),
        (M::GET, "v1/connections/ghost/events"),
        (M::GET, "proxy/ghost/me"),
        (M::GET, "v1/webhooks/wh_ghost"),
        (M::DELETE, "v1/webhooks/wh_ghost"),
        (M::GET, "v1/webhooks/wh_ghost/deliveries"),
    ] {
        let (status, _, body) = call(&w, method.clone(), path, Some(&w.admin)).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        json_error(status, &body, path);
    }
    for path in [
        "v1/connections?state=sleeping",
        "v1/connections?provider=myspace",
        "v1/connections?colour=red",
        "v1/events?limit=0",
        "v1/events?limit=100000",
        "v1/events?limit=many",
        "v1/events?after=-1",
        "v1/connections/ghost/events?limit=0",
        "v1/webhooks/wh_ghost/deliveries?limit=0",
    ] {
        let (status, _, body) = call(&w, M::GET, path, Some(&w.admin)).await;
        assert_eq!(status, 400, "{path}: {body}");
        json_error(status, &body, path);
    }
    w.d.stop().await;
}
