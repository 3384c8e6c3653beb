//! Secrets never reach a log line on the paths the oidc-provider peer exercises: connect with
//! client_secret_basic and client_secret_post, refresh with rotation, the introspection probe,
//! a refused refresh, and revocation on delete, with every crate logging at TRACE into a buffer
//! that must contain no access token, refresh token, client secret, code or state.

#[path = "oidc_peer/peer.rs"]
mod peer;

use peer::{PROVIDERS, Tw, client_of};
use reqwest::Method;
use tokenwarden_core::id::ConnectionId;
use tokenwarden_testkit::logs::logs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_is_logged_against_the_oidc_peer() {
    let logs = logs();

    let t = Tw::start(2).await;
    let mut secrets: Vec<String> = vec![t.admin.clone(), t.reader.clone()];
    let http = tokenwarden_server::probe::client();
    for p in PROVIDERS {
        let client = client_of(p);
        secrets.push(client.secret.to_string());
        // Percent-encoded, as Basic and form bodies carry it.
        secrets.push(url::form_urlencoded::byte_serialize(client.secret.as_bytes()).collect());
        let id = format!("{p}-logged");
        let (cookie, callback) = t.authorize(p, &id, "main").await.unwrap();
        let cb = url::Url::parse(&callback).unwrap();
        secrets.extend(
            cb.query_pairs()
                .filter(|(k, _)| k != "iss")
                .map(|(_, v)| v.into_owned()),
        );
        assert_eq!(t.finish(&cookie, &callback).await.0, 303);
        let first = t.tokens(&id).await;
        secrets.push(first.access_token.expose().to_string());
        secrets.push(first.refresh_token.as_ref().unwrap().expose().to_string());
        // A forced refresh (rotation), then the introspection probe.
        let (status, body) = t
            .api(
                Method::POST,
                &t.admin,
                &format!("v1/connections/{id}/refresh"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let cid = ConnectionId::parse(&id).unwrap();
        tokenwarden_server::monitor::probe(&t.d.state, &http, &cid).await;
        let now = t.tokens(&id).await;
        secrets.push(now.access_token.expose().to_string());
        secrets.push(now.refresh_token.as_ref().unwrap().expose().to_string());
        if p == "oidc-post" {
            // Revoked at the server: the refused refresh is logged without its token.
            t.peer
                .revoke(
                    client,
                    now.refresh_token.as_ref().unwrap().expose(),
                    "refresh_token",
                )
                .await;
            let (status, _) = t
                .api(
                    Method::POST,
                    &t.admin,
                    &format!("v1/connections/{id}/refresh"),
                )
                .await;
            assert_eq!(status, 409);
        } else {
            let (status, body) = t
                .api(Method::DELETE, &t.admin, &format!("v1/connections/{id}"))
                .await;
            assert_eq!(status, 200, "{body}");
        }
    }
    let stats = t.peer.stats().await;
    assert!(
        stats["introspection"]["ok"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    assert!(stats["revocation"]["ok"].as_u64().unwrap() >= 2, "{stats}");
    t.d.stop().await;

    let text = logs.text();
    assert!(
        text.lines().count() > 20,
        "the subscriber saw the story ({} lines)",
        text.lines().count()
    );
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(
            !text.contains(s.as_str()),
            "a secret reached the logs: …{}",
            &s[s.len() - 4..]
        );
    }
}
