//! The daemon's HTTP face and its background work.
//!
//! - [`connect`]: `GET /connect/{provider}` and `GET /callback/{provider}`: the authorization-code
//!   flow with `state` checked first and consumed once, bound to the browser that started it, and
//!   to the provider (hardening rules 1–3), and pages that say what happened.
//! - [`connect_session`]: `POST /v1/connect-sessions` and the dashboard's minting: a connect
//!   flow starts only from a single-use link that someone with authority created.
//! - [`deauthorize`]: `POST /callbacks/{provider}/{app}/deauthorize`, where platforms say a user
//!   removed the app (verified signature → `reauth_required` at once).
//! - [`api`]: the REST API under `/v1` (API keys with roles), and the one place that maps failures
//!   to HTTP responses.
//! - [`monitor`]: probes every connection, records problems with fixes, forecasts expiry.
//! - [`scheduler`]: refreshes ahead of expiry, sleeping until the next deadline.
//! - [`daemon`]: assembles a running daemon (server, scheduler, monitor, outbox, retention,
//!   in-process sandbox).
//! - [`webhooks`]: webhook endpoints and signed delivery from the durable outbox.
//! - [`keyfile`]: follows the key file, so keys rotate while the daemon serves.
//! - [`limits`]: per-client-address limits (refused API keys, the connect flow's rate).
//! - [`page`]: small HTML pages with escaping and the security headers of rule 12.
//! - [`dashboard`]: the signed-in pages for people (overview, connections, diagnose).
//! - [`metrics`]: `/metrics` in the Prometheus text format.
//! - [`alerts`]: a Slack-compatible notifier for connections that need a person.
//! - [`retention`]: deletes old events, finished webhook deliveries and expired authorizations.
//! - [`singleton`]: leases that let one replica at a time run the notifier, retention and crowd
//!   planning, with takeover when it dies.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod alerts;
pub mod api;
pub mod connect;
pub mod connect_session;
pub mod daemon;
pub mod dashboard;
pub mod deauthorize;
pub mod keyfile;
pub mod limits;
pub mod metrics;
pub mod monitor;
pub mod page;
pub mod retention;
pub mod scheduler;
pub mod singleton;
pub mod webhooks;

use axum::Router;
use std::future::Future;
use std::sync::Arc;
use tokenwarden_core::clock::Clock;
use tokenwarden_core::provider::Registry;
use tokenwarden_engine::TokenService;
use tokenwarden_oauth::OAuthClient;
use tokenwarden_store::Store;
use url::Url;

/// What every handler shares: [`Shared`] behind one reference count. axum clones the state
/// for every layer and extractor a request passes (fifteen times for a token fetch), so a clone
/// must cost one count, not one per field and a copy of the public URL.
#[derive(Debug, Clone)]
pub struct ServerState(Arc<Shared>);

impl ServerState {
    /// The state of a daemon.
    pub fn new(shared: Shared) -> Self {
        ServerState(Arc::new(shared))
    }
}

impl std::ops::Deref for ServerState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`ServerState`].
#[derive(Debug)]
pub struct Shared {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The token service.
    pub tokens: Arc<TokenService>,
    /// The provider client.
    pub oauth: OAuthClient,
    /// Provider definitions, pointed where the platforms live.
    pub providers: Arc<Registry>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where people reach this daemon (builds re-authorization links).
    pub public_url: Url,
    /// Pokes the scheduler when a new deadline may be earlier than the one it sleeps until.
    pub wake: Arc<tokio::sync::Notify>,
    /// Where webhooks may be delivered.
    pub webhooks: webhooks::WebhookPolicy,
    /// The dashboard's sessions, password and activity counts.
    pub dashboard: Arc<dashboard::Dashboard>,
    /// Limits per client address.
    pub limits: Arc<limits::ClientLimits>,
    /// The forwarding proxy (`ANY /proxy/{connection_id}/{*path}`).
    pub proxy: Arc<tokenwarden_proxy::Proxy>,
    /// Where finished connect flows may send the browser.
    pub connect: Arc<connect_session::ConnectPolicy>,
    /// The platform callbacks already taken (against replays).
    pub callbacks: Arc<deauthorize::Callbacks>,
}

impl Shared {
    /// The re-authorization link of a connection, as API errors, proxy answers, webhooks and
    /// alerts carry it: the dashboard's re-authorize page, which needs a signed-in person and
    /// mints a connect session there. Never a link that starts a flow by itself.
    pub fn reauthorize_link(&self, connection: &str) -> String {
        tokenwarden_proxy::answer::reauthorize_url(&self.public_url, connection)
    }
}

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
                .method_not_allowed_fallback(api::method_not_allowed),
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
    r
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes requests in flight.
/// Through the hardened listener (hardening rule 11): a header-read timeout and a connection cap,
/// which `axum::serve` does not have.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tokenwarden_http::serve(
        listener,
        router,
        tokenwarden_http::Limits::default(),
        shutdown,
    )
    .await
}

/// The OpenAPI 3.1 description of every route, written by hand (kept in step by the tests in
/// `tests/openapi.rs`, which also check real answers against its schemas).
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
