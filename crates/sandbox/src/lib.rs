//! A faithful local emulator of the thirteen platforms tokenwarden ships definitions for
//! ([`Provider::ALL`]), with fault injection and scaled time. The platform facts come from
//! `docs/platforms.md` and `docs/platforms-ads.md`.
//!
//! Layout: every platform lives under its own path prefix (its provider id: `/snapchat`,
//! `/tiktok-business`, `/google-ads`, `/x-ads`, …) and, under it, the platform's real paths; the
//! admin API lives under the reserved prefix `/_sandbox/`. A platform's own sandbox API host
//! (TikTok Business `sandbox-ads.tiktok.com`, Pinterest `api-sandbox.pinterest.com`, X Ads
//! `ads-api-sandbox.x.com`) lives under `/<provider>/sandbox/`, where
//! `ProviderSpec::with_origin` puts it; each host knows only the tokens of its environment's apps.
//!
//! Modules:
//! - [`provider`]: the platforms and their fixed facts (lifetimes, code validity, paths).
//! - [`config`]: [`SandboxConfig`] and app registrations (one demo app per platform by default).
//! - `ledger`: apps, grants, codes and tokens, keyed by token hash in `DashMap`s.
//! - `authorize`: the authorize page (browser) and its scripted POST.
//! - `platform::{snapchat, tiktok_business, tiktok, threads, meta}`: token endpoints, API
//!   endpoints and the ONE error-rendering function of each platform.
//! - [`error_case`]: [`ErrorCase`], the enum every error is made from, and [`error_catalogue`].
//! - [`fault`]: per-provider faults (throttle, outage, latency, malformed token responses,
//!   rotation); `rate_limit`: sliding windows on the sandbox clock; `counters`: what was sent.
//! - `admin`: the `/_sandbox/` JSON API.
//! - [`persist`]: [`LedgerFile`], the books kept on disk across restarts (`serve --sandbox`).
//! - `deauthorize`: the callback a platform sends an app when a user removes it (Meta,
//!   Threads, TikTok Login Kit), signed as the platform signs it.
//! - [`cli`]: [`SandboxArgs`] and [`run`], wired to `tokenwarden sandbox`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Handlers return the platform's rendered error as `Err(Response)` and `?` it straight out; the
// response is about to be sent anyway, so boxing it would only add an allocation per error.
#![allow(clippy::result_large_err)]

mod admin;
mod authorize;
pub mod cli;
pub mod config;
mod counters;
mod deauthorize;
pub mod error_case;
pub mod fault;
mod ledger;
pub mod persist;
mod platform;
pub mod provider;
mod rate_limit;

pub use cli::{SandboxArgs, run};

/// Answers the sandbox sends whose shape no first-party source shows, as (provider, what, the
/// text it sends). Nothing may be tuned to them: a classifier rule or a test that depends on
/// their wording is tuned to the sandbox, not the platform (issue 23, item 4).
pub const INVENTED: &[(&str, &str, &str)] = &[(
    "threads",
    "refresh of a token under 24 hours old (Graph code 100)",
    platform::threads::TOO_EARLY_REFRESH_MESSAGE,
)];
pub use config::{AppRegistration, SandboxConfig};
pub use error_case::{ErrorCase, ErrorDetail, Limit, Reply, error_catalogue};
pub use persist::{LedgerFile, LedgerFileError, Resumed};
pub use provider::Provider;

/// The developer token the sandbox accepts for a platform's demo apps, where the platform needs
/// one besides OAuth (Microsoft Advertising `DeveloperToken`); `None` elsewhere.
pub fn demo_developer_token(provider_id: &str) -> Option<&'static str> {
    Provider::parse(provider_id)?.developer_token()
}

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden_core::clock::Clock;
use tokenwarden_core::connection::Environment;

/// A running sandbox's shared state; cheap to clone.
#[derive(Clone, Debug)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SandboxConfig,
    clock: Arc<dyn Clock>,
    ledger: ledger::Ledger,
    faults: [fault::ProviderFaults; Provider::ALL.len()],
    limits: rate_limit::RateLimiter,
    counters: counters::Counters,
    /// Asynchronous jobs (reports, publishing containers): id → when it is done.
    jobs: DashMap<String, DateTime<Utc>>,
    /// Keeps the books on disk, when they are kept.
    keeper: Option<persist::Keeper>,
    /// Sends callbacks to apps (no redirects followed); `None` if it could not be built.
    http: Option<reqwest::Client>,
}

/// Why an API call was refused before it reached the endpoint's own logic.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Gate {
    Token(ledger::Refusal),
    /// The "throttle" fault.
    Throttled,
}

impl Sandbox {
    /// A sandbox with `config`, reading time only from `clock`.
    pub fn new(config: SandboxConfig, clock: Arc<dyn Clock>) -> Self {
        Sandbox::build(config, clock, None)
    }

    pub(crate) fn build(
        config: SandboxConfig,
        clock: Arc<dyn Clock>,
        keeper: Option<persist::Keeper>,
    ) -> Self {
        let ledger = ledger::Ledger::default();
        for app in &config.apps {
            let mut app = app.clone();
            if app.is_demo() {
                for uri in &config.demo_redirect_uris {
                    if !app.redirect_uris.contains(uri) {
                        app.redirect_uris.push(uri.clone());
                    }
                }
            }
            ledger.register(&app);
        }
        let faults = Provider::ALL.map(|p| {
            fault::ProviderFaults::new(
                config
                    .rotate_refresh_tokens
                    .unwrap_or(p.rotates_by_default()),
                config.refresh_reuse_grace,
            )
        });
        Sandbox {
            inner: Arc::new(Inner {
                config,
                clock,
                ledger,
                faults,
                limits: rate_limit::RateLimiter::default(),
                counters: counters::Counters::default(),
                jobs: DashMap::new(),
                keeper,
                http: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(Duration::from_secs(5))
                    .build()
                    .ok(),
            }),
        }
    }

    /// The configuration the sandbox was started with.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// The sandbox's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    pub(crate) fn ledger(&self) -> &ledger::Ledger {
        &self.inner.ledger
    }

    pub(crate) fn keeper(&self) -> Option<&persist::Keeper> {
        self.inner.keeper.as_ref()
    }

    pub(crate) fn faults(&self, p: Provider) -> &fault::ProviderFaults {
        &self.inner.faults[p.index()]
    }

    pub(crate) fn limits(&self) -> &rate_limit::RateLimiter {
        &self.inner.limits
    }

    pub(crate) fn counters(&self) -> &counters::Counters {
        &self.inner.counters
    }

    pub(crate) fn http(&self) -> Option<&reqwest::Client> {
        self.inner.http.as_ref()
    }

    /// Turns a span of sandbox time into the real time it takes.
    pub(crate) fn real(&self, scaled: Duration) -> Duration {
        let s = self.inner.config.time_scale;
        if s.is_finite() && s > 0.0 {
            scaled.div_f64(s)
        } else {
            scaled
        }
    }

    /// Starts an asynchronous job that stays pending for the configured time.
    pub(crate) fn start_job(&self, prefix: &str) -> String {
        let id = format!("{prefix}{}", ledger::short_id());
        let done = self.now() + ledger::to_delta(self.inner.config.async_job_duration);
        self.inner.jobs.insert(id.clone(), done);
        id
    }

    /// `Some(true)` when done, `Some(false)` while pending, `None` for an unknown job.
    pub(crate) fn job_done(&self, id: &str) -> Option<bool> {
        self.inner.jobs.get(id).map(|d| self.now() >= *d)
    }

    /// The common checks every API call on the production host passes first: count it, apply
    /// the throttle fault, then check the token.
    pub(crate) fn gate(
        &self,
        p: Provider,
        token: Option<&str>,
    ) -> Result<Arc<ledger::AccessToken>, Gate> {
        self.gate_on(p, Environment::Production, token)
    }

    /// [`Sandbox::gate`] on one of the platform's hosts. A token of the other environment is not
    /// known on this host: it is refused exactly as a token never issued (TikTok: 40105), and
    /// counted.
    pub(crate) fn gate_on(
        &self,
        p: Provider,
        host: Environment,
        token: Option<&str>,
    ) -> Result<Arc<ledger::AccessToken>, Gate> {
        self.gate_issued_by(p, p, host, token)
    }

    /// [`Sandbox::gate_on`] for a platform that accepts tokens another platform's OAuth server
    /// issued (Microsoft Advertising with `IdentityProvider: Google`): the call is the
    /// platform's (counted, throttled), the token is looked up in `issuer`'s books. Such a token
    /// belongs to no environment of the platform's, so it is not checked against the host.
    pub(crate) fn gate_issued_by(
        &self,
        p: Provider,
        issuer: Provider,
        host: Environment,
        token: Option<&str>,
    ) -> Result<Arc<ledger::AccessToken>, Gate> {
        let now = self.now();
        self.counters().api_call(p, now);
        let faults = self.faults(p);
        if faults.throttled(self.limits(), format!("fault:api:{p}"), false, now) {
            return Err(Gate::Throttled);
        }
        let access = self
            .ledger()
            .check_access(issuer, token, now)
            .map_err(Gate::Token)?;
        if issuer == p && access.grant.app.environment != host {
            counters::Counters::bump(&self.counters().of(p).wrong_environment_sent);
            return Err(Gate::Token(ledger::Refusal::Unknown));
        }
        Ok(access)
    }

    /// The whole HTTP surface: every platform under its prefix (its sandbox host, where it has
    /// one, under `/<provider>/sandbox`) and the admin API.
    pub fn router(&self) -> Router {
        let mut router = Router::new();
        for p in Provider::ALL {
            let mut platform = platform::routes(p)
                .layer(axum::Extension(Environment::Production))
                .merge(authorize::routes(p));
            if let Some(host) = platform::sandbox_host_routes(p) {
                platform = platform.nest(
                    tokenwarden_core::provider::SANDBOX_HOST_PREFIX,
                    host.layer(axum::Extension(Environment::Sandbox)),
                );
            }
            let platform =
                platform
                    .fallback(edge_not_found)
                    .layer(axum::middleware::from_fn_with_state(
                        (self.clone(), p),
                        edge,
                    ));
            router = router.nest(&format!("/{}", p.id()), platform);
        }
        router
            .nest("/_sandbox", admin::routes())
            .with_state(self.clone())
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                keep_books,
            ))
    }

    /// Serves until `shutdown` completes, then lets open connections finish (up to 5 s).
    ///
    /// Served through hyper-util with a header-read timeout rather than `axum::serve`, which sets
    /// none (hardening.md §11, axum #2741).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tokenwarden_http::serve(
            listener,
            self.router(),
            tokenwarden_http::Limits {
                drain: Duration::from_secs(5),
                ..Default::default()
            },
            shutdown,
        )
        .await
    }
}

/// After every request, and before its answer leaves: the changes it made to the books are on
/// disk (when they are kept), so a token the caller stores is one a restarted sandbox knows.
async fn keep_books(State(sb): State<Sandbox>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    sb.keep_books().await;
    resp
}

/// The edge in front of each platform: added latency, outages, and counting 401s and 429s.
async fn edge(State((sb, p)): State<(Sandbox, Provider)>, req: Request, next: Next) -> Response {
    let now = sb.now();
    let faults = sb.faults(p);
    if let Some(latency) = faults.latency(now) {
        tokio::time::sleep(sb.real(latency)).await;
    }
    let token_endpoint = platform::is_token_path(p, req.uri().path());
    let throttled =
        token_endpoint && faults.throttled(sb.limits(), format!("fault:token:{p}"), true, now);
    let outage = faults.outage(now);
    if token_endpoint && outage.is_some() {
        counters::Counters::bump(&sb.counters().of(p).token_calls_in_outage);
    }
    let resp = match outage {
        Some((fault::OutageMode::Platform, _)) => {
            platform::render(p, ErrorCase::Outage, &ErrorDetail::default()).into_response()
        }
        Some((fault::OutageMode::Html, status)) => {
            platform::render(p, ErrorCase::OutagePage { status }, &ErrorDetail::default())
                .into_response()
        }
        // A throttled token endpoint answers with the platform's own rate-limit signal.
        None if throttled => platform::refuse(
            &sb,
            p,
            ErrorCase::RateLimited { limit: Limit::App },
            &ErrorDetail {
                reset_at: Some(now + chrono::TimeDelta::seconds(60)),
                now: Some(now),
                ..Default::default()
            },
        ),
        None => next.run(req).await,
    };
    if let Some(late) = faults.answer_latency(now) {
        tokio::time::sleep(sb.real(late)).await;
    }
    let c = sb.counters().of(p);
    match resp.status().as_u16() {
        401 => counters::Counters::bump(&c.unauthorized_sent),
        429 => counters::Counters::bump(&c.too_many_requests_sent),
        _ => {}
    }
    resp
}

/// A path the platform does not serve (e.g. TikTok without the trailing `/`): the edge's 404.
async fn edge_not_found() -> Response {
    Reply::html(
        404,
        "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n".into(),
    )
    .into_response()
}
