//! Rotation with and without a reuse grace, against a token endpoint on loopback that reads a
//! refresh request and then drops the connection without answering once (the answer lost in
//! transit, the refresh token possibly rotated), and answers properly afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokenwarden_core::clock::{Clock, SystemClock};
use tokenwarden_core::provider::{Endpoints, Provider, Registry};
use tokenwarden_core::secret::Secret;
use tokenwarden_core::token::TokenSet;
use tokenwarden_oauth::{AppCredentials, OAuthClient, TokenError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `POST /token`: the first `drop_first` requests are read whole and then the connection
/// is closed unanswered; later ones get a rotated token set. Counts requests.
async fn endpoint(drop_first: usize) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head and the body the head announces.
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())
                                    .flatten()
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let n = count.fetch_add(1, Ordering::SeqCst);
                if n < drop_first {
                    return; // dropped: the request arrived, the answer never leaves
                }
                let body = r#"{"access_token":"at-2","refresh_token":"rt-2","expires_in":3600,"token_type":"Bearer"}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (base, seen)
}

fn provider(base: &str, grace: Option<&str>) -> Provider {
    let grace = grace
        .map(|g| format!("reuse_grace = \"{g}\"\n"))
        .unwrap_or_default();
    let text = format!(
        r#"
id = "graceful"
name = "Graceful"
docs_url = "https://as.example/docs"

[authorize]
url = "{base}/authorize"

[token.exchange]
method = "POST"
url = "{base}/token"
encoding = "form"
client_auth = "client_secret_post"
params = {{ grant_type = "authorization_code", code = "{{code}}", redirect_uri = "{{redirect_uri}}" }}

[token.refresh]
method = "POST"
url = "{base}/token"
encoding = "form"
client_auth = "client_secret_post"
params = {{ grant_type = "refresh_token", refresh_token = "{{refresh_token}}" }}

[refresh]
style = "refresh_token"
default_lifetime = "1h"
margin = "5m"
rotates = true
{grace}
[api]
base_url = "{base}/api"
probe = {{ path = "/me" }}
"#
    );
    // The test server is plain http on loopback: allowed explicitly.
    Registry::check_allowing("graceful.toml", &text, Endpoints::AllowHttp)
        .unwrap_or_else(|e| panic!("{e:?}"))
}

fn current() -> TokenSet {
    let now = SystemClock.now();
    TokenSet {
        access_token: Secret::new("at-1"),
        refresh_token: Some(Secret::new("rt-1")),
        token_type: Some("Bearer".into()),
        expires_at: Some(now),
        refresh_expires_at: None,
        token_secret: None,
        scopes: vec![],
        issued_at: now,
    }
}

fn app() -> AppCredentials {
    AppCredentials {
        client_id: "cid".into(),
        client_secret: Secret::new("secret"),
        redirect_uri: "http://127.0.0.1:9/cb".into(),
        user_agent: None,
    }
}

#[tokio::test]
async fn with_a_reuse_grace_a_lost_answer_is_asked_again_at_once() {
    let (base, seen) = endpoint(1).await;
    let client = OAuthClient::new(Arc::new(SystemClock)).unwrap();
    let grant = client
        .refresh(&provider(&base, Some("30s")), &app(), &current())
        .await
        .expect("the second ask, inside the grace, gets the rotated set");
    assert_eq!(grant.tokens.refresh_token.unwrap().expose(), "rt-2");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn without_a_grace_a_lost_answer_is_not_retried_with_the_old_token() {
    let (base, seen) = endpoint(1).await;
    let client = OAuthClient::new(Arc::new(SystemClock)).unwrap();
    let err = client
        .refresh(&provider(&base, None), &app(), &current())
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::Transient { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "the possibly consumed refresh token was sent once"
    );
}

#[tokio::test]
async fn a_grace_retries_once_only() {
    let (base, seen) = endpoint(5).await;
    let client = OAuthClient::new(Arc::new(SystemClock)).unwrap();
    let err = client
        .refresh(&provider(&base, Some("30s")), &app(), &current())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[test]
fn a_grace_needs_rotation_and_a_length() {
    let p = provider("https://as.example", Some("30s"));
    let text = p.text.replace("rotates = true", "rotates = false");
    let e = Registry::check("graceful.toml", &text).unwrap_err();
    assert!(
        e.iter().any(|p| p.to_string().contains(
            "refresh.reuse_grace: a reuse grace only means something when refresh tokens rotate"
        )),
        "{e:?}"
    );
    let text = p
        .text
        .replace("reuse_grace = \"30s\"", "reuse_grace = \"0s\"");
    let e = Registry::check("graceful.toml", &text).unwrap_err();
    assert!(
        e.iter()
            .any(|p| p.to_string().contains("refresh.reuse_grace: is zero")),
        "{e:?}"
    );
}
