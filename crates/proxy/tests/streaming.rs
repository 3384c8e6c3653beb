//! Bodies stream through the proxy without being held whole, redirects are not followed, the
//! caller's credentials do not cross, and the size limits hold. The platform here is a test
//! upstream on loopback described by a provider definition of its own (`bulk`).
//!
//! Memory stays flat by construction of the test: the upstream's generator produces the next
//! chunk of the 100 MiB download only while fewer than [`WINDOW`] bytes are between it and what
//! the client has received (and the client's generator does the same for the upload against what
//! the upstream has received). A proxy that held a whole body would stall the generator for ever,
//! and the test would fail at its deadline; passing means at most `WINDOW` bytes were ever in
//! flight anywhere between the two ends, proxy included.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokenwarden_core::clock::{Clock, SystemClock};
use tokenwarden_core::connection::{Connection, ConnectionState, Environment};
use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};
use tokenwarden_core::provider::{Endpoints, Registry};
use tokenwarden_core::secret::Secret;
use tokenwarden_core::token::TokenSet;
use tokenwarden_engine::TokenService;
use tokenwarden_engine::{Engine, EngineConfig};
use tokenwarden_oauth::OAuthClient;
use tokenwarden_proxy::Proxy;
use tokenwarden_store::Keyring;

const MIB: u64 = 1 << 20;
const TOTAL: u64 = 100 * MIB;
const CHUNK: usize = 64 * 1024;
/// The most that may be in flight between generator and sink: far below 100 MiB, far above the
/// socket and hyper buffers on the way.
const WINDOW: u64 = 24 * MIB;
const ACCESS: &str = "bulk-access-token-0123456789";

fn definition(base: &str) -> String {
    format!(
        r#"
id = "bulk"
name = "Bulk test platform"
docs_url = "https://example.invalid/docs"

[authorize]
url = "https://example.invalid/authorize"

[token.exchange]
method = "POST"
url = "https://example.invalid/token"
encoding = "form"
params = {{ grant_type = "authorization_code", code = "{{code}}" }}

[token.refresh]
method = "POST"
url = "{base}/token"
encoding = "form"
params = {{ grant_type = "refresh_token", refresh_token = "{{refresh_token}}" }}

[refresh]
style = "refresh_token"
default_lifetime = "1h"
margin = "1m"

[api]
base_url = "{base}"
credential_header = "Access-Token"
credential_value = "{{access_token}}"
probe = {{ method = "GET", path = "/echo" }}
"#
    )
}

#[derive(Clone, Default)]
struct Counters {
    /// Bytes the upstream produced for the download.
    produced: Arc<AtomicU64>,
    /// Bytes the client received of the download.
    received: Arc<AtomicU64>,
    /// Bytes the client produced for the upload.
    sent: Arc<AtomicU64>,
    /// Bytes the upstream received of the upload.
    absorbed: Arc<AtomicU64>,
    /// Requests that reached the "other host".
    stolen: Arc<AtomicU64>,
    /// Refreshes served by the upstream's token endpoint.
    refreshes: Arc<AtomicU64>,
}

/// Yields `total` bytes in chunks, each only while `ahead - behind < WINDOW`.
fn lockstep(
    total: u64,
    ahead: Arc<AtomicU64>,
    behind: Arc<AtomicU64>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(0u64, move |done| {
        let ahead = ahead.clone();
        let behind = behind.clone();
        async move {
            if done >= total {
                return None;
            }
            while ahead.load(Ordering::Acquire) - behind.load(Ordering::Acquire) >= WINDOW {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let n = (total - done).min(CHUNK as u64);
            ahead.fetch_add(n, Ordering::AcqRel);
            Some((Ok(Bytes::from(vec![b'x'; n as usize])), done + n))
        }
    })
}

async fn download(State(c): State<Counters>) -> Response {
    Response::new(Body::from_stream(lockstep(
        TOTAL,
        c.produced.clone(),
        c.received.clone(),
    )))
}

async fn upload(State(c): State<Counters>, req: Request) -> Response {
    let mut body = req.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(b) => {
                c.absorbed.fetch_add(b.len() as u64, Ordering::AcqRel);
            }
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        }
    }
    axum::Json(json!({"bytes": c.absorbed.load(Ordering::Acquire)})).into_response()
}

async fn echo(headers: HeaderMap, req: Request) -> Response {
    let h: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into()),
            )
        })
        .collect();
    axum::Json(json!({"headers": h, "query": req.uri().query()})).into_response()
}

async fn serve(router: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await });
    format!("http://{addr}")
}

struct Rig {
    base: String,
    store: Arc<dyn tokenwarden_store::Store>,
    c: Counters,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// The upstream, the "other host", and a proxy (served without API keys: that is the server's
/// job) with `config`.
async fn rig(config: EngineConfig) -> Rig {
    let c = Counters::default();
    let evil = serve(Router::new().fallback({
        let stolen = c.stolen.clone();
        move || async move {
            stolen.fetch_add(1, Ordering::AcqRel);
            "stolen"
        }
    }))
    .await;
    let upstream = serve(
        Router::new()
            .route("/api/download", get(download))
            .route("/api/upload", post(upload))
            .route("/api/echo", any(echo))
            // Refuses every token, old or new. It reads the request body first: a server that
            // answers early and closes while an upload is still streaming makes the outcome a
            // race between its answer and the reset (noted on issue 6).
            .route(
                "/api/refused",
                any(|body: axum::body::Body| async move {
                    let _ = axum::body::to_bytes(body, usize::MAX).await;
                    (
                        StatusCode::UNAUTHORIZED,
                        [("www-authenticate", "Bearer error=\"invalid_token\"")],
                        "",
                    )
                }),
            )
            // A platform that sets a session cookie, answers with authentication headers and
            // echoes the credential header back (some do, in debug or CORS answers).
            .route(
                "/api/cookies",
                any(|headers: HeaderMap| async move {
                    let echoed = headers
                        .get("access-token")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    (
                        [
                            (
                                "set-cookie",
                                "platform_session=s3cr3t; Path=/; HttpOnly".to_string(),
                            ),
                            ("set-cookie", "csrftoken=abc; Path=/".to_string()),
                            ("set-cookie2", "legacy=1".to_string()),
                            ("authentication-info", "nextnonce=\"4ee8\"".to_string()),
                            ("proxy-authentication-info", "nextnonce=\"77\"".to_string()),
                            ("proxy-authenticate", "Basic realm=\"upstream\"".to_string()),
                            ("Access-Token", echoed),
                            ("www-authenticate", "Bearer realm=\"api\"".to_string()),
                            ("x-request-id", "r-1".to_string()),
                        ],
                        axum::Json(json!({"ok": true})),
                    )
                }),
            )
            // `n` bytes, chunked (no Content-Length), in chunks of 1 KiB.
            .route(
                "/api/bytes/{n}",
                get(
                    |axum::extract::Path(n): axum::extract::Path<u64>| async move {
                        Response::new(Body::from_stream(futures::stream::iter(
                            (0..n.div_ceil(1024)).map(move |i| {
                                let len = (n - i * 1024).min(1024) as usize;
                                Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; len]))
                            }),
                        )))
                    },
                ),
            )
            .route(
                "/api/token",
                post({
                    let refreshes = c.refreshes.clone();
                    move || async move {
                        let n = refreshes.fetch_add(1, Ordering::AcqRel) + 1;
                        axum::Json(json!({
                            "access_token": format!("bulk-access-refreshed-{n}"),
                            "token_type": "Bearer",
                            "expires_in": 3600,
                            "refresh_token": format!("bulk-refresh-{n}"),
                        }))
                    }
                }),
            )
            .route(
                "/api/redirect",
                get(move || async move {
                    (
                        StatusCode::FOUND,
                        [("location", format!("{evil}/steal"))],
                        "elsewhere",
                    )
                }),
            )
            .with_state(c.clone()),
    )
    .await;
    let api_base = format!("{upstream}/api");
    let providers =
        // The upstream is plain http on loopback: allowed explicitly, as a test setup must.
        Arc::new(
            Registry::with_files_allowing(
                [("bulk.toml".to_string(), definition(&api_base))],
                Endpoints::AllowHttp,
            )
            .unwrap(),
        );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("tw.db").display());
    let store = tokenwarden_store::open(&url, Keyring::generate("k1").unwrap())
        .await
        .unwrap();
    let now = Utc::now();
    let id = ConnectionId::parse("bulk1").unwrap();
    store
        .put_connection(&Connection {
            id: id.clone(),
            provider: ProviderId::parse("bulk").unwrap(),
            app: AppId::parse("demo").unwrap(),
            state: ConnectionState::Active,
            environment: Environment::Production,
            region: None,
            api_base,
            account_ids: vec![],
            account: None,
            end_user: None,
            scopes: vec![],
            problems: vec![],
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    store
        .put_initial_tokens(
            &id,
            &TokenSet {
                access_token: Secret::new(ACCESS),
                refresh_token: Some(Secret::new("bulk-refresh-0")),
                token_type: None,
                scopes: vec![],
                issued_at: now,
                expires_at: None,
                refresh_expires_at: None,
                token_secret: None,
            },
        )
        .await
        .unwrap();
    store
        .put_app(&tokenwarden_store::App {
            provider: ProviderId::parse("bulk").unwrap(),
            id: AppId::parse("demo").unwrap(),
            client_id: "bulk-client".into(),
            client_secret: Secret::new("bulk-secret"),
            redirect_uri: "http://127.0.0.1:1/callback/bulk".into(),
            developer_token: None,
            user_agent: None,
            refresh_token_ends_after: None,
            identity: None,
            environment: tokenwarden_core::connection::Environment::Production,
            region: None,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    let store_for_tests = store.clone();
    let oauth = OAuthClient::new(clock.clone()).unwrap();
    let tokens = Arc::new(TokenService::new(
        store.clone(),
        oauth,
        providers.clone(),
        clock.clone(),
        "test",
    ));
    let engine = Arc::new(Engine::new(store, tokens, providers, clock, config));
    let proxy =
        Arc::new(Proxy::new(engine, url::Url::parse("http://127.0.0.1:1/").unwrap()).unwrap());
    let base = serve(Router::new().route(
        tokenwarden_proxy::handler::ROUTE,
        any(move |req: Request| {
            let proxy = proxy.clone();
            async move { proxy.handle(req).await }
        }),
    ))
    .await;
    Rig {
        base,
        store: store_for_tests,
        c,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_100_mib_download_streams_through() {
    let r = rig(EngineConfig::default()).await;
    let run = async {
        let mut resp = r
            .http
            .get(format!("{}/proxy/bulk1/download", r.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["tokenwarden-kind"], "ok");
        let mut total = 0u64;
        // The sink: counts, keeps nothing.
        while let Some(chunk) = resp.chunk().await.unwrap() {
            total += chunk.len() as u64;
            r.c.received.fetch_add(chunk.len() as u64, Ordering::AcqRel);
        }
        total
    };
    let total = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the download stalled: something held the body whole");
    assert_eq!(total, TOTAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_100_mib_upload_streams_through() {
    let r = rig(EngineConfig::default()).await;
    let body = reqwest::Body::wrap_stream(lockstep(TOTAL, r.c.sent.clone(), r.c.absorbed.clone()));
    let run = r
        .http
        .post(format!("{}/proxy/bulk1/upload", r.base))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send();
    let resp = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the upload stalled: something held the body whole")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["bytes"], TOTAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_hold() {
    let r = rig(EngineConfig {
        max_request_bytes: 4 * MIB,
        max_response_bytes: 2 * MIB,
        ..Default::default()
    })
    .await;
    // A declared length over the limit is refused before anything is sent (the proxy answers
    // 413 at once; the client may still be writing and see the connection close instead).
    let resp = r
        .http
        .post(format!("{}/proxy/bulk1/upload", r.base))
        .body(vec![0u8; 5 * MIB as usize])
        .send()
        .await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 413);
    }
    assert_eq!(
        r.c.absorbed.load(Ordering::Acquire),
        0,
        "nothing was forwarded"
    );
    // A streamed body is cut off once it passes the limit.
    let body =
        reqwest::Body::wrap_stream(lockstep(8 * MIB, r.c.sent.clone(), r.c.absorbed.clone()));
    let resp = r
        .http
        .post(format!("{}/proxy/bulk1/upload", r.base))
        .body(body)
        .send()
        .await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 413);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "request_too_large");
    }
    assert!(r.c.absorbed.load(Ordering::Acquire) <= 4 * MIB);
    // A response over the limit is cut off: the caller never gets it whole.
    let got = async {
        let mut resp = r
            .http
            .get(format!("{}/proxy/bulk1/download", r.base))
            .send()
            .await
            .ok()?;
        let mut n = 0u64;
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    n += c.len() as u64;
                    r.c.received.fetch_add(c.len() as u64, Ordering::AcqRel);
                }
                Ok(None) => return Some(n),
                Err(_) => return None,
            }
        }
    };
    let got = tokio::time::timeout(Duration::from_secs(60), got)
        .await
        .unwrap();
    assert!(
        got.is_none(),
        "the body was cut off at the limit with an error, not a clean end ({got:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_and_credentials_do_not_cross() {
    let r = rig(EngineConfig::default()).await;
    let resp = r
        .http
        .get(format!("{}/proxy/bulk1/redirect", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302, "the redirect comes back unfollowed");
    assert_eq!(
        r.c.stolen.load(Ordering::Acquire),
        0,
        "nothing reached the other host"
    );

    let resp = r
        .http
        .get(format!(
            "{}/proxy/bulk1/echo?x=1&access_token=callers-own",
            r.base
        ))
        .header("authorization", "Bearer tw_callers_api_key")
        .header("access-token", "callers-own")
        .header("cookie", "session=1")
        .header("connection", "x-hop")
        .header("x-hop", "hop-by-hop")
        .header("x-custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        !format!("{:?}", resp.headers()).contains(ACCESS),
        "our token does not come back to the caller"
    );
    let v: Value = resp.json().await.unwrap();
    let h = &v["headers"];
    assert_eq!(h["access-token"], ACCESS, "ours replaced the caller's");
    assert!(h.get("authorization").is_none(), "{h}");
    assert!(h.get("cookie").is_none());
    assert!(h.get("x-hop").is_none());
    assert_eq!(h["x-custom"], "kept");
    assert_eq!(v["query"], "x=1");
}

/// A token refused again after a successful refresh: the connection needs a person, and both
/// the response and the connection's state say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_refused_the_same_way_marks_the_connection() {
    let r = rig(EngineConfig::default()).await;
    let resp = r
        .http
        .get(format!("{}/proxy/bulk1/refused", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let h = resp.headers();
    assert_eq!(h["tokenwarden-kind"], "token_invalid");
    assert_eq!(h["tokenwarden-action"], "reauthorize");
    assert_eq!(h["tokenwarden-attempts"], "2");
    assert_eq!(h["tokenwarden-refreshed"], "true");
    assert!(
        h["tokenwarden-reauthorize-url"]
            .to_str()
            .unwrap()
            .ends_with("/connections/bulk1/reauthorize")
    );
    assert_eq!(
        r.c.refreshes.load(Ordering::Acquire),
        1,
        "one refresh, one replay"
    );
    let conn = r
        .store
        .get_connection(&ConnectionId::parse("bulk1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.state, ConnectionState::ReauthRequired);
    assert_eq!(conn.problems[0].code.as_str(), "token_refused");
    // From now on the proxy answers at once with the link, without calling the platform.
    let resp = r
        .http
        .get(format!("{}/proxy/bulk1/echo", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "reauth_required");
    assert!(
        v["error"]["reauthorize_url"]
            .as_str()
            .unwrap()
            .ends_with("/connections/bulk1/reauthorize")
    );
}

/// A streamed body cannot be sent twice: an expired token is renewed for the next call and the
/// caller is told to retry this one; the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_call_is_not_replayed_but_the_token_is_renewed() {
    let r = rig(EngineConfig::default()).await;
    let body =
        reqwest::Body::wrap_stream(lockstep(3 * MIB, r.c.sent.clone(), r.c.absorbed.clone()));
    let resp = r
        .http
        .post(format!("{}/proxy/bulk1/refused", r.base))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let h = resp.headers();
    assert_eq!(h["tokenwarden-action"], "refresh_and_retry");
    assert_eq!(h["tokenwarden-attempts"], "1");
    assert_eq!(h["tokenwarden-refreshed"], "true");
    assert_eq!(r.c.refreshes.load(Ordering::Acquire), 1);
    let conn = r
        .store
        .get_connection(&ConnectionId::parse("bulk1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.state, ConnectionState::Active);
    // The retry goes out with the renewed token.
    let v: Value = r
        .http
        .get(format!("{}/proxy/bulk1/echo", r.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["headers"]["access-token"], "bulk-access-refreshed-1");
}

/// What the platform sets for itself (a session cookie, authentication state) and any echo of
/// our credential header stay between tokenwarden and the platform; a 401 challenge, which
/// carries no secret and tells the caller what failed, comes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_cookies_and_credential_headers_do_not_reach_the_caller() {
    let r = rig(EngineConfig::default()).await;
    let resp = r
        .http
        .get(format!("{}/proxy/bulk1/cookies", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    for gone in [
        "set-cookie",
        "set-cookie2",
        "authentication-info",
        "proxy-authentication-info",
        "proxy-authenticate",
        "access-token",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the caller: {h:?}");
    }
    assert!(
        !format!("{h:?}").contains(ACCESS) && !format!("{h:?}").contains("s3cr3t"),
        "{h:?}"
    );
    assert_eq!(h["www-authenticate"], "Bearer realm=\"api\"");
    assert_eq!(h["x-request-id"], "r-1");
    assert_eq!(h["tokenwarden-kind"], "ok");
}

/// A response over the limit that the proxy holds whole before answering (it fits in what the
/// classifier reads) is a clear 502, not a 200 whose body breaks off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_response_over_the_limit_is_a_clear_502() {
    let r = rig(EngineConfig {
        max_response_bytes: 4096,
        ..Default::default()
    })
    .await;
    let ok = r
        .http
        .get(format!("{}/proxy/bulk1/bytes/4096", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.bytes().await.unwrap().len(),
        4096,
        "at the limit is fine"
    );
    let resp = r
        .http
        .get(format!("{}/proxy/bulk1/bytes/5000", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "response_too_large");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4096 bytes"),
        "{v}"
    );
}

/// A response over the limit that is already streaming when it passes it cannot change its
/// status any more: the proxy breaks the connection so the caller sees an error, never a body
/// that ends cleanly as if it were whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_over_the_limit_never_ends_cleanly() {
    let r = rig(EngineConfig {
        max_response_bytes: 200 * 1024,
        ..Default::default()
    })
    .await;
    let mut resp = r
        .http
        .get(format!("{}/proxy/bulk1/bytes/{}", r.base, 300 * 1024))
        .send()
        .await
        .unwrap();
    let mut n = 0usize;
    let ended = loop {
        match resp.chunk().await {
            Ok(Some(c)) => n += c.len(),
            Ok(None) => break Ok(n),
            Err(e) => break Err(e),
        }
    };
    assert!(
        ended.is_err(),
        "the cut-off body ended cleanly after {n} bytes"
    );
    assert!(n <= 200 * 1024, "{n}");
}

/// A request body over the limit, sent without a length, is refused with a clear 413 and
/// nothing of it reaches the platform.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_request_over_the_limit_is_a_clear_413() {
    let r = rig(EngineConfig {
        max_request_bytes: 1024,
        ..Default::default()
    })
    .await;
    let body = reqwest::Body::wrap_stream(futures::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'z'; 1024]))),
    ));
    let resp = r
        .http
        .post(format!("{}/proxy/bulk1/upload", r.base))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "request_too_large");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1024 bytes"),
        "{v}"
    );
    assert_eq!(r.c.absorbed.load(Ordering::Acquire), 0);
}

/// An answer that ends within what the classifier reads goes out whole: the same bytes, with
/// their length (a chunked one too), and a HEAD answer keeps the platform's `Content-Length`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_answer_goes_out_whole_with_its_length() {
    let r = rig(EngineConfig::default()).await;
    // Three chunks of 1 KiB (the last shorter) without a length from the platform.
    let resp = r
        .http
        .get(format!("{}/proxy/bulk1/bytes/2500", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "2500");
    assert_eq!(resp.headers()["tokenwarden-kind"], "ok");
    let body = resp.bytes().await.unwrap();
    assert!(
        body.len() == 2500 && body.iter().all(|b| *b == b'y'),
        "{} bytes",
        body.len()
    );

    let get = r
        .http
        .get(format!("{}/proxy/bulk1/echo", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let length = get.headers()["content-length"].clone();
    let body = get.bytes().await.unwrap();
    assert_eq!(length.to_str().unwrap(), body.len().to_string());
    let head = r
        .http
        .head(format!("{}/proxy/bulk1/echo", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], length);
    assert!(head.bytes().await.unwrap().is_empty());
}
