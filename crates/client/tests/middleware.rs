//! The middleware over real HTTP against the in-process sandbox, with an engine of its own over
//! the daemon's store (as a program sharing the store with a daemon would run it).

#[path = "../../proxy/tests/support/mod.rs"]
mod support;

use serde_json::json;
use std::sync::Arc;
use tokenwarden_client::{Budget, ClientError, EngineConfig, ForConnection, Healing, Report};
use tokenwarden_core::id::ConnectionId;

fn healing(w: &support::World, scale: f64) -> reqwest_middleware::ClientWithMiddleware {
    let s = &w.d.state;
    Healing::embedded(
        s.store.clone(),
        s.providers.clone(),
        Arc::clone(&s.clock),
        "in-process",
        EngineConfig {
            time_scale: scale,
            ..Default::default()
        },
    )
    .unwrap()
    .client(tokenwarden_client::http_client().unwrap())
}

/// The same, with caches of its own in front of the daemon's store.
fn cached_healing(w: &support::World) -> reqwest_middleware::ClientWithMiddleware {
    let s = &w.d.state;
    let store = tokenwarden_client::CachedStore::new(
        s.store.clone(),
        Arc::clone(&s.clock),
        tokenwarden_client::CacheConfig::default(),
    );
    Healing::embedded_cached(
        store,
        s.providers.clone(),
        Arc::clone(&s.clock),
        "in-process-cached",
        EngineConfig::default(),
    )
    .unwrap()
    .client(tokenwarden_client::http_client().unwrap())
}

fn api_base(w: &support::World, provider: &str) -> String {
    w.d.state
        .providers
        .get(provider)
        .unwrap()
        .spec
        .api
        .base_url
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_middleware_heals_expiry_and_throttling() {
    let w = support::world(1.0).await;
    let grant = w.connect("snapchat", "lib1").await;
    let http = healing(&w, 1.0);
    let me = format!("{}/me", api_base(&w, "snapchat"));
    let conn = ForConnection(ConnectionId::parse("lib1").unwrap());
    for i in 0..10 {
        if i == 3 {
            w.admin_post(&format!("/grants/{grant}/expire"), json!({}))
                .await;
        }
        if i == 6 {
            w.admin_post("/faults/snapchat/throttle", json!({"next": 2}))
                .await;
        }
        let resp = http
            .get(&me)
            .with_extension(conn.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "call {i}");
        assert_eq!(resp.headers()["tokenwarden-kind"], "ok");
        let report = resp.extensions().get::<Report>().cloned().unwrap();
        if i == 3 {
            assert!(report.refreshed);
        }
        if i == 6 {
            assert_eq!(report.attempts, 3, "two throttles, then success");
        }
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["request_status"], "SUCCESS");
    }
    assert_eq!(w.refreshes(&grant).await, 1);
    w.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_caches_the_middleware_renews_a_token_the_platform_expired_and_stops_at_revocation() {
    let w = support::world(1.0).await;
    let grant = w.connect("snapchat", "lib-cached").await;
    let http = cached_healing(&w);
    let me = format!("{}/me", api_base(&w, "snapchat"));
    let conn = ForConnection(ConnectionId::parse("lib-cached").unwrap());
    let call = || async {
        http.get(&me)
            .with_extension(conn.clone())
            .send()
            .await
            .map(|r| r.extensions().get::<Report>().cloned().unwrap())
    };
    assert!(!call().await.unwrap().refreshed);
    assert!(!call().await.unwrap().refreshed, "the cached token serves");
    // The platform ends the token early: the cached one is refused, renewed once, and the new
    // one is what the next calls use.
    w.admin_post(&format!("/grants/{grant}/expire"), json!({}))
        .await;
    assert!(call().await.unwrap().refreshed);
    assert!(!call().await.unwrap().refreshed);
    assert_eq!(w.refreshes(&grant).await, 1);
    // Revoked: the refresh is refused and nothing is served from memory afterwards.
    w.admin_post(&format!("/grants/{grant}/revoke"), json!({}))
        .await;
    let proxy_error = |e: reqwest_middleware::Error| match e {
        reqwest_middleware::Error::Middleware(e) => e.downcast::<ClientError>().ok(),
        _ => None,
    };
    for _ in 0..2 {
        let e = proxy_error(call().await.unwrap_err());
        assert!(
            matches!(
                e,
                Some(ClientError::Proxy(
                    tokenwarden_engine::ProxyError::Token { .. }
                ))
            ),
            "{e:?}"
        );
    }
    w.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middleware_refuses_what_it_cannot_do_safely() {
    let w = support::world(1.0).await;
    w.connect("snapchat", "lib2").await;
    let http = healing(&w, 1.0);
    let conn = ForConnection(ConnectionId::parse("lib2").unwrap());
    let proxy_error = |e: reqwest_middleware::Error| match e {
        reqwest_middleware::Error::Middleware(e) => e.downcast::<ClientError>().ok(),
        _ => None,
    };
    // No connection named.
    let e = http
        .get(format!("{}/me", api_base(&w, "snapchat")))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(proxy_error(e), Some(ClientError::NoConnection)));
    // Another host, or outside the API base: refused before a token is attached.
    let calls = w.counters("snapchat").await["api_calls"].as_u64();
    for url in [
        "http://127.0.0.1:9/v1/me".to_string(),
        format!("{}/_sandbox/grants", w.sandbox),
    ] {
        let e = http
            .get(&url)
            .with_extension(conn.clone())
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                proxy_error(e),
                Some(ClientError::Proxy(tokenwarden_engine::ProxyError::Refused(
                    _
                )))
            ),
            "{url}"
        );
    }
    assert_eq!(w.counters("snapchat").await["api_calls"].as_u64(), calls);
    // No budget at all: the call is not made, and the caller is told why.
    let e = http
        .get(format!("{}/me", api_base(&w, "snapchat")))
        .with_extension(conn.clone())
        .with_extension(Budget(std::time::Duration::ZERO))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        proxy_error(e),
        Some(ClientError::Proxy(
            tokenwarden_engine::ProxyError::OverBudget { attempts: 0, .. }
        ))
    ));
    assert_eq!(w.counters("snapchat").await["api_calls"].as_u64(), calls);
    w.d.stop().await;
}

/// X Ads (OAuth 1.0a): the middleware signs each call itself (the sandbox verifies every
/// signature, nonce and timestamp), and a revocation's 401 is a re-authorization at once, with no
/// refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_middleware_signs_oauth1_calls_and_never_refreshes_them() {
    let w = support::world(1.0).await;
    let grant = w.connect("x-ads", "lib-x").await;
    let http = healing(&w, 1.0);
    let conn = ForConnection(ConnectionId::parse("lib-x").unwrap());
    let accounts = format!(
        "{}/12/accounts",
        api_base(&w, "x-ads").trim_end_matches('/')
    );
    for i in 0..3 {
        let resp = http
            .get(format!("{accounts}?count={}", i + 1))
            .with_extension(conn.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "call {i}");
        assert_eq!(resp.headers()["tokenwarden-kind"], "ok");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["data_type"], "account");
    }
    // A caller's own Authorization never reaches the platform: ours replaces it.
    let resp = http
        .get(&accounts)
        .header("authorization", "OAuth oauth_token=\"someone-elses\"")
        .with_extension(conn.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    w.admin_post(&format!("/grants/{grant}/revoke"), json!({}))
        .await;
    let resp = http
        .get(&accounts)
        .with_extension(conn.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let report = resp.extensions().get::<Report>().cloned().unwrap();
    assert!(report.reauth_required, "{report:?}");
    assert!(!report.refreshed);
    assert_eq!(report.attempts, 1);
    assert_eq!(w.refreshes(&grant).await, 0);
    w.d.stop().await;
}
