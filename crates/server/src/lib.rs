//! The daemon's HTTP face and its background work.
//!
//! - [`connect`]: `GET /connect/{provider}` and `GET /callback/{provider}`: the authorization-code
//!   flow with `state` checked first and consumed once, bound to the browser that started it, and
//!   to the provider (hardening rules 1–3), and pages that say what happened.
//! - [`connect_session`]: `POST /v1/connect-sessions` and the dashboard's minting: a connect
//!   flow starts only from a single-use link that someone with authority created.
//! - [`deauthorize`]: `POST /callbacks/{provider}/{app}/deauthorize`, where platforms say a user
//!   removed the app (verified signature → `reauth_required` at once).
//! - [`api`]: the REST API under `/v1`.
//! - [`auth`]: the API's caller ([`auth::Caller`]): API keys with roles, refused keys counted per
//!   address.
//! - [`error`]: the one place that maps failures to HTTP responses ([`error::ApiError`]).
//! - [`extract`]: request extractors whose rejections are [`error::ApiError`]s.
//! - [`monitor`]: probes every connection when due, records problems with fixes, forecasts expiry.
//! - [`probe`]: the probe itself: the definition's `api.probe` sent with a token, its answer read
//!   and classified.
//! - [`scheduler`]: refreshes ahead of expiry, sleeping until the next deadline.
//! - [`shortcut`]: a cached token fetch and a proxied call taken before the router.
//! - [`daemon`]: assembles a running daemon (server, scheduler, monitor, outbox, retention,
//!   in-process sandbox).
//! - [`webhooks`]: webhook endpoints and signed delivery from the durable outbox.
//! - [`keyfile`]: follows the key file, so keys rotate while the daemon serves.
//! - [`limits`]: per-client-address limits (refused API keys, the connect flow's rate).
//! - [`refreshed`]: why a refresh that was asked for handed back a token it did not refresh.
//! - [`page`]: small HTML pages with escaping and the security headers of rule 12.
//! - [`dashboard`]: the signed-in pages for people (overview, connections, diagnose).
//! - [`metrics`]: `/metrics` in the Prometheus text format.
//! - [`alerts`]: a Slack-compatible notifier for connections that need a person.
//! - [`retention`]: deletes old events, finished webhook deliveries and expired authorizations.
//! - [`state`]: [`ServerState`], what every handler and background task shares.
//! - [`singleton`]: leases that let one replica at a time run the notifier, retention and crowd
//!   planning, with takeover when it dies.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod alerts;
pub mod api;
pub mod auth;
pub mod connect;
pub mod connect_session;
pub mod daemon;
pub mod dashboard;
pub mod deauthorize;
pub mod error;
pub mod extract;
pub mod keyfile;
pub mod limits;
pub mod metrics;
pub mod monitor;
pub mod page;
pub mod probe;
pub mod refreshed;
pub mod retention;
pub mod scheduler;
pub mod shortcut;
pub mod singleton;
pub mod state;
pub mod webhooks;

pub use state::{ServerState, Shared};

use axum::Router;
use tokenwarden_core::provider::Registry;

/// Every route.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .merge(connect::routes())
        .merge(connect_session::routes())
        .merge(api::routes())
        .merge(webhooks::routes())
        .merge(deauthorize::routes())
        .merge(dashboard::routes())
        .merge(
            Router::new()
                .route("/metrics", axum::routing::get(metrics::handler))
                .route("/healthz", axum::routing::get(|| async { "ok" }))
                .route("/readyz", axum::routing::get(readyz))
                .route("/openapi.json", axum::routing::get(openapi))
                .method_not_allowed_fallback(error::method_not_allowed),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::connect_rate,
        ))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            common_headers,
        ))
        .with_state(state)
}

/// The headers every response carries, whichever route (or fallback) made it: no MIME sniffing,
/// no referrer, and on an https public URL, HSTS (a year). Set only where the handler did not.
async fn common_headers(
    axum::extract::State(s): axum::extract::State<ServerState>,
    mut r: axum::response::Response,
) -> axum::response::Response {
    add_common_headers(&s, &mut r);
    r
}

/// [`common_headers`], for an answer made outside the router ([`shortcut`]).
fn add_common_headers(s: &ServerState, r: &mut axum::response::Response) {
    use axum::http::{HeaderValue, header};
    let h = r.headers_mut();
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    if s.public_url.scheme() == "https" {
        h.entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(HeaderValue::from_static("max-age=31536000"));
    }
}

/// Every route, with the [`shortcut`]s (a cached token fetch, a proxied call) tried first: what
/// the daemon serves.
pub fn routes(state: ServerState) -> tokenwarden_http::Routes {
    tokenwarden_http::Routes::with_shortcut(router(state.clone()), shortcut::Shortcuts(state))
}

/// The OpenAPI 3.1 description of every route, written by hand (kept in step by the tests in
/// `tests/it/openapi.rs`, which also check real answers against its schemas).
pub const OPENAPI: &str = include_str!("openapi/openapi.json");

/// The document a daemon serves: [`OPENAPI`] with `ProviderId`'s `enum` listing `providers`, so
/// that a client or a fuzzer knows which provider names this daemon takes (any other is 400).
pub fn openapi_document(providers: &Registry) -> serde_json::Value {
    // A constant the tests parse; never null in a build that passed them.
    let mut doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap_or_default();
    let ids: Vec<serde_json::Value> = providers
        .iter()
        .map(|p| serde_json::Value::String(p.spec.id.to_string()))
        .collect();
    if let Some(schema) = doc
        .pointer_mut("/components/schemas/ProviderId")
        .and_then(serde_json::Value::as_object_mut)
    {
        schema.insert("enum".into(), serde_json::Value::Array(ids));
    }
    doc
}

async fn openapi(
    axum::extract::State(s): axum::extract::State<ServerState>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_document(&s.providers).to_string(),
    )
}

/// Ready when the store answers.
async fn readyz(
    axum::extract::State(s): axum::extract::State<ServerState>,
) -> (axum::http::StatusCode, &'static str) {
    match s.store.list_apps(None).await {
        Ok(_) => (axum::http::StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the store does not answer",
            )
        }
    }
}
