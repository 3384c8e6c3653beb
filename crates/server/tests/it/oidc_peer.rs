//! tokenwarden against a strict authorization server it did not write: oidc-provider (panva,
//! OpenID Certified), run from tests/peers/oidc-provider on loopback, described to tokenwarden only
//! by user definition files (tests/peers/oidc-provider/oidc-{basic,post}.toml). PKCE S256 is
//! required, refresh tokens rotate (reusing one revokes the grant), access tokens live seconds, and
//! each client is held to its own authentication method.
//!
//! Each test starts its own peer and daemon. Waits are real (the peer's clock is the wall clock)
//! but short; nothing asserts a duration.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
#[path = "../oidc_peer/peer.rs"]
mod peer;

use chrono::Utc;
use futures::future::join_all;
use peer::{BASIC, POST, PROVIDERS, Tw, client_of};
use reqwest::Method;
use std::collections::HashSet;
use std::time::Duration;
use tokenwarden_core::id::ConnectionId;
use tokenwarden_oauth::pkce::Pkce;
use tokenwarden_oauth::{AppCredentials, TokenError};

/// Sleeps until tokenwarden's stored access token for `connection` has expired.
async fn until_expired(t: &Tw, connection: &str) {
    let set = t.tokens(connection).await;
    let at = set.expires_at.expect("the peer's tokens expire");
    if let Ok(wait) = (at - Utc::now()).to_std() {
        tokio::time::sleep(wait + Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_client_auth_methods_connect_and_stay_fresh_across_expiries() {
    let t = Tw::start(2).await;
    let mut first_refresh = Vec::new();
    for p in PROVIDERS {
        t.connect(p, &format!("{p}-live")).await;
        first_refresh.push(t.tokens(&format!("{p}-live")).await.refresh_token.unwrap());
    }
    // Callers ask for a token and use it at once, across several expiries: every token handed
    // out is accepted by the server, so no caller ever sees a 401.
    let mut seen: Vec<HashSet<String>> = vec![HashSet::new(); PROVIDERS.len()];
    let mut rounds = 0;
    while seen.iter().any(|s| s.len() < 4) {
        rounds += 1;
        assert!(rounds < 400, "tokens stopped changing: {seen:?}");
        for (i, p) in PROVIDERS.iter().enumerate() {
            let (status, body) = t
                .api(
                    Method::GET,
                    &t.reader,
                    &format!("v1/connections/{p}-live/token"),
                )
                .await;
            assert_eq!(status, 200, "{p}: {body}");
            let at = body["access_token"].as_str().unwrap();
            assert_eq!(
                t.peer.userinfo(at).await,
                200,
                "{p}: the server refused a token tokenwarden handed out"
            );
            seen[i].insert(at.to_string());
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for (i, p) in PROVIDERS.iter().enumerate() {
        let now = t.tokens(&format!("{p}-live")).await;
        assert_ne!(
            now.refresh_token.as_ref().unwrap(),
            &first_refresh[i],
            "{p}: the rotated refresh token was stored"
        );
        assert_eq!(t.state_of(&format!("{p}-live")).await, "active");
    }
    let stats = t.peer.stats().await;
    assert_eq!(stats["token"]["authorization_code"]["ok"], 2, "{stats}");
    assert!(
        stats["token"]["refresh_token"]["ok"].as_u64().unwrap() >= 6,
        "{stats}"
    );
    assert_eq!(
        stats["token"]["refresh_token"]["errors"],
        serde_json::json!({}),
        "no refresh was refused, so no rotated token was reused: {stats}"
    );
    assert_eq!(stats["wrong_auth_method"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_callers_on_an_expired_token_cause_exactly_one_refresh() {
    let t = Tw::start(2).await;
    let id = "burst";
    t.connect("oidc-basic", id).await;
    // Keep the scheduler away, so the burst is the only thing that may refresh: clear its
    // deadline until the stored token has expired with no scheduled refresh in between.
    let before = loop {
        t.d.state
            .store
            .set_next_refresh(&ConnectionId::parse(id).unwrap(), None)
            .await
            .unwrap();
        let set = t.tokens(id).await;
        if set.expires_at.is_some_and(|at| at <= Utc::now()) {
            break set;
        }
        until_expired(&t, id).await;
    };
    let refreshes = t.peer.token_ok("refresh_token").await;

    let path = format!("v1/connections/{id}/token");
    let answers = join_all((0..200).map(|_| t.api(Method::GET, &t.reader, &path))).await;
    let tokens: HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["access_token"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(tokens.len(), 1, "every caller got the one new token");
    let fresh = tokens.into_iter().next().unwrap();
    assert_ne!(fresh, before.access_token.expose());
    assert_eq!(t.peer.userinfo(&fresh).await, 200);
    assert_eq!(
        t.peer.token_ok("refresh_token").await,
        refreshes + 1,
        "exactly one refresh for 200 callers"
    );
    assert!(t.peer.token_errors("refresh_token").await.is_empty());
    // The grant is intact (a reused refresh token would have revoked it): it refreshes again.
    let (status, body) = t
        .api(
            Method::POST,
            &t.admin,
            &format!("v1/connections/{id}/refresh"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        t.peer
            .userinfo(body["access_token"].as_str().unwrap())
            .await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_token_revoked_at_the_server_makes_the_connection_reauth_required_at_once() {
    // Long-lived access tokens here, so only the revocation can make anything fail.
    let t = Tw::start(600).await;
    t.connect("oidc-post", "revoked").await;
    let set = t.tokens("revoked").await;
    t.peer
        .revoke(
            POST,
            set.refresh_token.as_ref().unwrap().expose(),
            "refresh_token",
        )
        .await;

    let (status, body) = t
        .api(Method::POST, &t.admin, "v1/connections/revoked/refresh")
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "reauth_required", "{body}");
    assert!(
        body["error"]["reauthorize_url"]
            .as_str()
            .unwrap()
            .ends_with("/connections/revoked/reauthorize"),
        "{body}"
    );
    assert_eq!(t.state_of("revoked").await, "reauth_required");
    let refused = t.peer.token_errors("refresh_token").await;
    assert_eq!(
        refused.get("invalid_grant"),
        Some(&1),
        "one refused refresh, no retries: {refused:?}"
    );
    // Callers now get the fix, and the server hears nothing more.
    let (status, body) = t
        .api(Method::GET, &t.reader, "v1/connections/revoked/token")
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(t.peer.token_errors("refresh_token").await, refused);
    // Neither the answer nor the events carry a token or the client secret.
    let (_, events) = t
        .api(Method::GET, &t.admin, "v1/connections/revoked/events")
        .await;
    assert!(events.to_string().contains("reauth_required"), "{events}");
    for text in [body.to_string(), events.to_string()] {
        for secret in [
            set.access_token.expose(),
            set.refresh_token.as_ref().unwrap().expose(),
            POST.secret,
        ] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_introspection_probe_keeps_a_live_grant_and_catches_a_revoked_one() {
    let t = Tw::start(600).await;
    t.connect("oidc-basic", "probed").await;
    let id = ConnectionId::parse("probed").unwrap();
    let http = tokenwarden_server::probe::client();

    tokenwarden_server::monitor::probe(&t.d.state, &http, &id).await;
    let stats = t.peer.stats().await;
    assert_eq!(stats["introspection"]["active"], 1, "{stats}");
    assert_eq!(t.state_of("probed").await, "active");
    let (_, conn) = t.api(Method::GET, &t.admin, "v1/connections/probed").await;
    assert_eq!(conn["problems"], serde_json::json!([]), "{conn}");

    // The person removes the app at the platform: the grant, and with it the access token, ends.
    let set = t.tokens("probed").await;
    t.peer
        .revoke(
            BASIC,
            set.refresh_token.as_ref().unwrap().expose(),
            "refresh_token",
        )
        .await;
    tokenwarden_server::monitor::probe(&t.d.state, &http, &id).await;
    let stats = t.peer.stats().await;
    assert_eq!(stats["introspection"]["inactive"], 1, "{stats}");
    assert_eq!(
        stats["token"]["refresh_token"]["errors"]["invalid_grant"], 1,
        "the inactive token was refreshed once, and that was refused: {stats}"
    );
    assert_eq!(t.state_of("probed").await, "reauth_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_connection_revokes_its_tokens_at_the_server() {
    let t = Tw::start(600).await;
    for p in PROVIDERS {
        let id = format!("{p}-gone");
        t.connect(p, &id).await;
        let set = t.tokens(&id).await;
        let client = client_of(p);
        let at = set.access_token.expose().to_string();
        let rt = set.refresh_token.as_ref().unwrap().expose().to_string();
        assert!(t.peer.active(client, &at).await && t.peer.active(client, &rt).await);
        let (status, body) = t
            .api(Method::DELETE, &t.admin, &format!("v1/connections/{id}"))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["revoked_at_platform"], true, "{body}");
        assert!(
            !t.peer.active(client, &at).await,
            "{p}: the access token is dead"
        );
        assert!(
            !t.peer.active(client, &rt).await,
            "{p}: the refresh token is dead"
        );
    }
    let stats = t.peer.stats().await;
    assert_eq!(
        stats["revocation"]["ok"], 4,
        "refresh then access token, each: {stats}"
    );
    assert_eq!(stats["wrong_auth_method"], 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampered_state_wrong_redirect_replayed_code_and_wrong_verifier_are_refused() {
    let t = Tw::start(600).await;
    let codes = || async { t.peer.stats().await["token"]["authorization_code"].clone() };

    // A tampered state: refused before any token request.
    let (cookie, callback) = t.authorize("oidc-basic", "tampered", "main").await.unwrap();
    let (status, page) = t
        .finish(&cookie, &callback.replace("state=", "state=x"))
        .await;
    assert_eq!(status, 400, "{page}");
    assert_eq!(
        codes().await,
        serde_json::Value::Null,
        "no code was exchanged"
    );
    // A callback naming another issuer (RFC 9207 mix-up defence): refused, nothing exchanged.
    let (cookie2, callback2) = t.authorize("oidc-basic", "mixed-up", "main").await.unwrap();
    let iss = url::form_urlencoded::byte_serialize(t.peer.issuer.as_bytes()).collect::<String>();
    assert!(callback2.contains(&format!("iss={iss}")), "{callback2}");
    let (status, page) = t
        .finish(
            &cookie2,
            &callback2.replace(&format!("iss={iss}"), "iss=https%3A%2F%2Fevil.example"),
        )
        .await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("unexpected issuer"), "{page}");
    assert_eq!(
        codes().await,
        serde_json::Value::Null,
        "no code was exchanged"
    );
    // The real callback still completes once; its replay is refused by tokenwarden, and the
    // server sees exactly one exchange.
    assert_eq!(t.finish(&cookie, &callback).await.0, 303);
    let (status, page) = t.finish(&cookie, &callback).await;
    assert_eq!(status, 400);
    assert!(page.contains("already used"), "{page}");
    assert_eq!(codes().await["ok"], 1);

    // A redirect URI the platform never registered: the server refuses at its authorize page and
    // never sends a code anywhere.
    let stopped = t
        .authorize("oidc-basic", "misdirected", "unregistered")
        .await;
    let (status, page) = stopped.expect_err("no callback for an unregistered redirect URI");
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("redirect_uri"), "{page}");

    // At the token endpoint, through tokenwarden's client: codes fetched by hand.
    let p = t.d.state.providers.get("oidc-post").unwrap().clone();
    let app = AppCredentials {
        client_id: POST.id.into(),
        client_secret: POST.secret.into(),
        redirect_uri: format!("{}callback/oidc-post", t.d.base),
        user_agent: None,
    };
    let code = || async {
        let pkce = Pkce::generate();
        let url =
            t.d.state
                .oauth
                .authorize_url(&p, &app, "hand-made-state", &[], Some(&pkce.challenge));
        let cb = t
            .peer
            .approve(url.as_str(), &app.redirect_uri)
            .await
            .unwrap();
        let code = url::Url::parse(&cb)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .to_string();
        (tokenwarden_core::secret::Secret::new(code), pkce)
    };
    let refused = |r: Result<tokenwarden_oauth::TokenGrant, TokenError>, what: &str| match r {
        Err(e @ TokenError::Refused { .. }) => {
            let c = e.classification().unwrap();
            assert_eq!(c.platform_code.as_deref(), Some("invalid_grant"), "{what}");
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(POST.secret), "{what}: {shown}");
        }
        other => panic!("{what}: expected a refusal, got {other:?}"),
    };
    let oauth = &t.d.state.oauth;

    let (c, _) = code().await;
    let wrong = Pkce::generate();
    refused(
        oauth
            .exchange_code(&p, &app, &c, Some(&wrong.verifier))
            .await,
        "a wrong PKCE verifier",
    );
    let (c, _) = code().await;
    refused(
        oauth.exchange_code(&p, &app, &c, None).await,
        "no PKCE verifier",
    );
    let (c, pkce) = code().await;
    let elsewhere = AppCredentials {
        redirect_uri: format!("{}callback/oidc-post?elsewhere=1", t.d.base),
        ..app.clone()
    };
    refused(
        oauth
            .exchange_code(&p, &elsewhere, &c, Some(&pkce.verifier))
            .await,
        "a redirect_uri other than the authorize request's",
    );
    let (c, pkce) = code().await;
    let grant = oauth
        .exchange_code(&p, &app, &c, Some(&pkce.verifier))
        .await
        .expect("the right code, verifier and redirect URI");
    refused(
        oauth
            .exchange_code(&p, &app, &c, Some(&pkce.verifier))
            .await,
        "a replayed code",
    );
    // A replayed code revokes what it produced (RFC 6749 §4.1.2): the first grant is dead too.
    refused(
        oauth.refresh(&p, &app, &grant.tokens).await,
        "a refresh after the code was replayed",
    );

    // The wrong client authentication method is the app's problem, not a connection's.
    let basic_as_post = AppCredentials {
        client_id: BASIC.id.into(),
        client_secret: BASIC.secret.into(),
        ..app.clone()
    };
    let (c, pkce) = code().await;
    match oauth
        .exchange_code(&p, &basic_as_post, &c, Some(&pkce.verifier))
        .await
    {
        Err(e @ TokenError::Misconfigured { .. }) => {
            assert_eq!(
                e.classification().unwrap().platform_code.as_deref(),
                Some("invalid_client")
            );
        }
        other => panic!("expected the app to be refused, got {other:?}"),
    }
}
