//! The caches in front of the store, over real HTTP, with the clock held so that no entry ever
//! ages out by itself: whatever this daemon changes (a refusal found by a probe, a deletion, a
//! refresh, a revoked API key) is seen by the very next call. What another replica changes is
//! seen once the entry's TTL has passed on the daemon's clock.

use crate::support;

use chrono::TimeDelta;
use serde_json::{Value, json};
use support::{World, world};
use tokenwarden_core::clock::Clock;
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::secret::Secret;
use tokenwarden_store::{ApiKeyRole, Store};

async fn connect(w: &World, provider: &str, id: &str) {
    let flow = w.start_and_approve(provider, id).await;
    let (status, page) = w.finish(&flow).await;
    assert_eq!(status, 303, "{page}");
}

async fn token(w: &World, id: &str) -> (u16, Value) {
    w.api(&w.reader, &format!("v1/connections/{id}/token"))
        .await
}

fn access_token(v: &Value) -> String {
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a token: {v}"))
        .to_string()
}

/// A second handle on the daemon's database, as another replica has.
async fn other_replica(w: &World) -> std::sync::Arc<dyn Store> {
    tokenwarden_store::open(&w.db_url, w.keys.clone())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_token_is_served_from_memory_and_another_replicas_change_is_seen_after_the_ttl() {
    let w = world().await;
    connect(&w, "snapchat", "c-replica").await;
    let (status, first) = token(&w, "c-replica").await;
    assert_eq!(status, 200, "{first}");

    // Another replica stores a different token set in the shared database.
    let id = ConnectionId::parse("c-replica").unwrap();
    let other = other_replica(&w).await;
    let mut set = other.get_tokens(&id).await.unwrap().unwrap().set;
    set.access_token = Secret::new("written-by-another-replica-0123456789");
    other.put_initial_tokens(&id, &set).await.unwrap();

    // Within the token TTL (1 s on the daemon's clock) this replica serves what it holds…
    let (_, again) = token(&w, "c-replica").await;
    assert_eq!(access_token(&again), access_token(&first));
    w.clock.advance(TimeDelta::milliseconds(999));
    let (_, again) = token(&w, "c-replica").await;
    assert_eq!(access_token(&again), access_token(&first));
    // …and the other replica's once it has aged out.
    w.clock.advance(TimeDelta::milliseconds(1));
    let (status, after) = token(&w, "c-replica").await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(
        access_token(&after),
        "written-by-another-replica-0123456789"
    );
    w.d.stop().await;
}

#[tokio::test]
async fn a_grant_found_revoked_by_a_probe_is_not_served_from_the_cache() {
    let w = world().await;
    // Snapchat's probe sees a 401 and tries a refresh, which the platform refuses; TikTok
    // Business's sees 40105, which no refresh can fix: the monitor marks it by itself.
    for provider in ["snapchat", "tiktok-business"] {
        let id = format!("c-revoked-{provider}");
        connect(&w, provider, &id).await;
        let (status, first) = token(&w, &id).await;
        assert_eq!(status, 200, "{first}");
        let (_, again) = token(&w, &id).await;
        assert_eq!(access_token(&again), access_token(&first));

        w.revoke_latest_grant(provider).await;
        let (status, c) = w
            .post(&w.admin, &format!("v1/connections/{id}/probe"), json!({}))
            .await;
        assert_eq!(status, 200, "{c}");
        assert_eq!(c["state"], "reauth_required", "{provider}: {c}");

        let (status, body) = token(&w, &id).await;
        assert_eq!(status, 409, "{provider}: {body}");
        assert_eq!(body["error"]["code"], "reauth_required");
        assert!(!body.to_string().contains(&access_token(&first)), "{body}");
    }
    w.d.stop().await;
}

#[tokio::test]
async fn a_token_the_platform_refuses_through_the_proxy_is_not_served_from_the_cache() {
    let w = world().await;
    connect(&w, "tiktok-business", "c-proxied").await;
    let (status, first) = token(&w, "c-proxied").await;
    assert_eq!(status, 200, "{first}");
    let probe =
        w.d.state
            .providers
            .get("tiktok-business")
            .unwrap()
            .spec
            .api
            .probe
            .path
            .clone();
    let call = || async {
        let r = w
            .http
            .get(format!("{}proxy/c-proxied{probe}", w.d.base))
            .bearer_auth(&w.reader)
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    };
    assert_eq!(call().await, 200);
    // Revoked at the platform: the proxied call gets 40105. TikTok Business has a sandbox host, so
    // the proxy has the connection probed at once and the monitor (which asks the other host
    // too) marks it.
    w.revoke_latest_grant("tiktok-business").await;
    call().await;
    tokenwarden_server::monitor::probe_due(&w.d.state, &tokenwarden_server::probe::client()).await;
    let (status, body) = token(&w, "c-proxied").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "reauth_required");
    assert_eq!(call().await, 409, "the proxy answers at once too");
    w.d.stop().await;
}

#[tokio::test]
async fn a_deleted_connection_is_not_found_on_the_next_fetch() {
    let w = world().await;
    connect(&w, "tiktok", "c-deleted").await;
    let (status, body) = token(&w, "c-deleted").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(w.delete(&w.admin, "v1/connections/c-deleted").await, 200);
    let (status, body) = token(&w, "c-deleted").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    w.d.stop().await;
}

#[tokio::test]
async fn after_a_forced_refresh_or_a_rejected_token_the_next_fetch_has_the_new_token() {
    let w = world().await;
    connect(&w, "snapchat", "c-forced").await;
    let (_, first) = token(&w, "c-forced").await;

    // "Refresh now".
    let (status, refreshed) = w
        .post(&w.reader, "v1/connections/c-forced/refresh", json!({}))
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(refreshed["refreshed"], true);
    assert_ne!(access_token(&refreshed), access_token(&first));
    let (_, next) = token(&w, "c-forced").await;
    assert_eq!(access_token(&next), access_token(&refreshed));
    assert_eq!(next["version"], refreshed["version"]);

    // A caller saw the current token refused.
    let (status, replaced) = w
        .post(
            &w.reader,
            "v1/connections/c-forced/refresh",
            json!({"rejected_token": access_token(&next)}),
        )
        .await;
    assert_eq!(status, 200, "{replaced}");
    assert_ne!(access_token(&replaced), access_token(&next));
    let (_, last) = token(&w, "c-forced").await;
    assert_eq!(access_token(&last), access_token(&replaced));
    w.d.stop().await;
}

#[tokio::test]
async fn a_revoked_api_key_is_refused_at_once_here_and_after_the_ttl_elsewhere() {
    let w = world().await;
    connect(&w, "snapchat", "c-keys").await;
    let path = "v1/connections/c-keys/token";

    // Revoked through this daemon: refused on the very next request.
    let (info, key) =
        w.d.state
            .store
            .create_api_key(ApiKeyRole::TokenReader, "short-lived", w.clock.now())
            .await
            .unwrap();
    assert_eq!(w.api(key.expose(), path).await.0, 200);
    assert_eq!(w.api(key.expose(), path).await.0, 200);
    assert!(
        w.d.state
            .store
            .revoke_api_key(&info.id, w.clock.now())
            .await
            .unwrap()
    );
    let (status, body) = w.api(key.expose(), path).await;
    assert_eq!(status, 401, "{body}");

    // Revoked through another replica: refused once the key's entry ages out (5 s).
    let (info, key) =
        w.d.state
            .store
            .create_api_key(ApiKeyRole::TokenReader, "elsewhere", w.clock.now())
            .await
            .unwrap();
    assert_eq!(w.api(key.expose(), path).await.0, 200);
    let other = other_replica(&w).await;
    assert!(other.revoke_api_key(&info.id, w.clock.now()).await.unwrap());
    w.clock.advance(TimeDelta::milliseconds(4_999));
    // (The token entry has aged out by now too; the fetch reads the store again.)
    assert_eq!(w.api(key.expose(), path).await.0, 200, "within the TTL");
    w.clock.advance(TimeDelta::milliseconds(1));
    assert_eq!(w.api(key.expose(), path).await.0, 401);

    // A wrong key never passes, however often it is tried.
    for _ in 0..3 {
        assert_eq!(w.api(&format!("{}x", w.reader), path).await.0, 401);
    }
    assert_eq!(w.api(&w.reader, path).await.0, 200);
    w.d.stop().await;
}

/// The value of the proxied-call counter for a 200 from snapchat classified ok (0 before any).
fn proxied_ok(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("tokenwarden_proxy_requests_total{")
                && l.contains("provider=\"snapchat\"")
                && l.contains("kind=\"ok\"")
                && l.contains("status=\"200\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn hits_and_misses_are_counted_without_secrets() {
    let w = world().await;
    connect(&w, "snapchat", "c-metrics").await;
    let metrics = || async {
        let r = w
            .http
            .get(format!("{}metrics", w.d.base))
            .bearer_auth(&w.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    let proxied_before = proxied_ok(&metrics().await);
    let mut served = Vec::new();
    for _ in 0..3 {
        let (status, body) = token(&w, "c-metrics").await;
        assert_eq!(status, 200, "{body}");
        served.push(access_token(&body));
        // A proxied call is counted too, through the handle the engine keeps once the recorder
        // is installed (other tests in this process may add to it, never take away).
        let r = w
            .http
            .get(format!("{}proxy/c-metrics/me", w.d.base))
            .bearer_auth(&w.reader)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let text = metrics().await;
    let proxied = proxied_ok(&text) - proxied_before;
    assert!(proxied >= 3, "{proxied} proxied calls counted:\n{text}");
    for (cache, outcome) in [
        ("token", "hit"),
        ("token", "miss"),
        ("api_key", "hit"),
        ("api_key", "miss"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("tokenwarden_cache_lookups_total")
                    && l.contains(&format!("cache=\"{cache}\""))
                    && l.contains(&format!("outcome=\"{outcome}\""))),
            "{cache} {outcome}:\n{text}"
        );
    }
    for secret in served.iter().chain([&w.reader, &w.admin]) {
        assert!(!text.contains(secret.as_str()), "a secret on /metrics");
    }
    w.d.stop().await;
}

/// A request as the listener hands it on: with the peer's address.
fn fetch(key: Option<&str>, method: &str, path: &str, from: [u8; 4]) -> axum::extract::Request {
    let mut b = axum::http::Request::builder().method(method).uri(path);
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    let mut r = b.body(axum::body::Body::empty()).unwrap();
    r.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            from, 40_000,
        ))));
    r
}

fn peer(from: [u8; 4]) -> std::net::SocketAddr {
    std::net::SocketAddr::from((from, 40_000))
}

async fn routed(w: &World, req: axum::extract::Request) -> axum::response::Response {
    use tower::ServiceExt;
    tokenwarden_server::router(w.d.state.clone())
        .oneshot(req)
        .await
        .unwrap()
}

async fn bytes(r: axum::response::Response) -> Vec<u8> {
    axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn a_cached_token_fetch_is_answered_before_the_router_exactly_as_the_router_answers() {
    use tokenwarden_http::Shortcut;
    let w = world().await;
    connect(&w, "snapchat", "c-short").await;
    let shortcut = tokenwarden_server::shortcut::Shortcuts(w.d.state.clone());
    let path = "/v1/connections/c-short/token";
    let home = [127, 0, 0, 1];
    // Nothing in memory yet (the key has not been verified, the token not read): the router's.
    assert!(
        shortcut
            .answer(fetch(Some(&w.reader), "GET", path, home), peer(home))
            .is_err()
    );
    let (status, first) = token(&w, "c-short").await;
    assert_eq!(status, 200, "{first}");
    // Now both are in memory: the same status, headers and bytes as the route's.
    let quick = shortcut
        .answer(fetch(Some(&w.reader), "GET", path, home), peer(home))
        .expect("answered from memory")
        .resolve()
        .await;
    let long = routed(&w, fetch(Some(&w.reader), "GET", path, home)).await;
    assert_eq!(quick.status(), 200);
    assert_eq!(quick.status(), long.status());
    assert_eq!(quick.headers(), long.headers());
    let quick = bytes(quick).await;
    assert_eq!(quick, bytes(long).await);
    let v: Value = serde_json::from_slice(&quick).unwrap();
    assert_eq!(access_token(&v), access_token(&first));
    // Over HTTP too (the listener tries the shortcut first).
    let (status, again) = token(&w, "c-short").await;
    assert_eq!((status, again), (200, v));

    // Everything else is the router's, which answers as it always did.
    for (key, method, path) in [
        (Some(w.reader.as_str()), "POST", path),
        (Some(w.reader.as_str()), "HEAD", path),
        (
            Some(w.reader.as_str()),
            "GET",
            "/v1/connections/c-short/token?x=1",
        ),
        (
            Some(w.reader.as_str()),
            "GET",
            "/v1/connections/c-short/token/",
        ),
        (
            Some(w.reader.as_str()),
            "GET",
            "/v1/connections/c%2Dshort/token",
        ),
        (
            Some(w.reader.as_str()),
            "GET",
            "/v1/connections/c-short/x/token",
        ),
        (
            Some(w.reader.as_str()),
            "GET",
            "/v1/connections/no-such/token",
        ),
        (Some(w.reader.as_str()), "GET", "/v1/connections//token"),
        (Some("tw_not-a-key"), "GET", path),
        (None, "GET", path),
    ] {
        assert!(
            shortcut
                .answer(fetch(key, method, path, home), peer(home))
                .is_err(),
            "{method} {path} with {key:?} was answered before the router"
        );
    }
    let no_key = routed(&w, fetch(None, "GET", path, home)).await;
    assert_eq!(no_key.status(), 401);

    // An address locked out for refused keys is refused even with a good one, by the router.
    let locked = [127, 0, 0, 9];
    for _ in 0..tokenwarden_server::limits::API_KEY_FAILURES {
        let r = routed(&w, fetch(Some("tw_not-a-key"), "GET", path, locked)).await;
        assert_eq!(r.status(), 401);
    }
    assert!(
        shortcut
            .answer(fetch(Some(&w.reader), "GET", path, locked), peer(locked))
            .is_err()
    );
    // The shortcut goes by the peer it is given, not by a `ConnectInfo` in the request (the
    // listener adds that only for the router).
    assert!(
        shortcut
            .answer(fetch(Some(&w.reader), "GET", path, home), peer(locked))
            .is_err()
    );
    assert!(
        shortcut
            .answer(fetch(Some(&w.reader), "GET", path, locked), peer(home))
            .is_ok()
    );
    let r = routed(&w, fetch(Some(&w.reader), "GET", path, locked)).await;
    assert_eq!(r.status(), 429);

    // A proxied call with the key in memory goes straight to the proxy: the same answer as the
    // route's (the platform's status, body and headers, with the router's own added).
    let probe =
        w.d.state
            .providers
            .get("snapchat")
            .unwrap()
            .spec
            .api
            .probe
            .path
            .clone();
    let proxied = format!("/proxy/c-short{probe}");
    let quick = shortcut
        .answer(fetch(Some(&w.reader), "GET", &proxied, home), peer(home))
        .expect("taken before the router")
        .resolve()
        .await;
    let long = routed(&w, fetch(Some(&w.reader), "GET", &proxied, home)).await;
    assert_eq!(quick.status(), 200);
    assert_eq!(quick.status(), long.status());
    let mut quick_headers = quick.headers().clone();
    let mut long_headers = long.headers().clone();
    // The second call may wait for the platform's published spacing, and say so.
    for h in [&mut quick_headers, &mut long_headers] {
        h.remove("date");
        h.remove("tokenwarden-waited-ms");
    }
    assert_eq!(quick_headers, long_headers);
    assert_eq!(quick_headers["x-content-type-options"], "nosniff");
    // The platform's answer, less the id it gives each request.
    let answer = |b: Vec<u8>| {
        let mut v: Value = serde_json::from_slice(&b).unwrap();
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    let quick = answer(bytes(quick).await);
    assert_eq!(quick["request_status"], "SUCCESS", "{quick}");
    assert_eq!(quick, answer(bytes(long).await));
    for (key, method, path) in [
        (Some(w.reader.as_str()), "HEAD", proxied.as_str()),
        (Some(w.reader.as_str()), "OPTIONS", proxied.as_str()),
        (Some(w.reader.as_str()), "GET", "/proxy/c-short/"),
        (Some(w.reader.as_str()), "GET", "/proxy/c-short"),
        (Some(w.reader.as_str()), "GET", "/proxy//v1/me"),
        (Some("tw_not-a-key"), "GET", proxied.as_str()),
        (None, "GET", proxied.as_str()),
    ] {
        assert!(
            shortcut
                .answer(fetch(key, method, path, home), peer(home))
                .is_err(),
            "{method} {path} with {key:?} was taken before the router"
        );
    }
    assert!(
        shortcut
            .answer(
                fetch(Some(&w.reader), "GET", &proxied, locked),
                peer(locked)
            )
            .is_err()
    );

    // A revoked key is forgotten at once: the router refuses it.
    let (status, keys) = w.api(&w.admin, "v1/api-keys").await;
    assert_eq!(status, 200, "{keys}");
    let reader_id = keys["api_keys"]
        .as_array()
        .or(keys.as_array())
        .unwrap()
        .iter()
        .find(|k| k["role"] == "token_reader")
        .unwrap_or_else(|| panic!("a token reader: {keys}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = w
        .http
        .delete(format!("{}v1/api-keys/{reader_id}", w.d.base))
        .bearer_auth(&w.admin)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert!(
        shortcut
            .answer(fetch(Some(&w.reader), "GET", path, home), peer(home))
            .is_err()
    );
    let (status, _) = token(&w, "c-short").await;
    assert_eq!(status, 401);
    w.d.stop().await;
}
