//! The dashboard: server-rendered pages for a person who watches the connections.
//!
//! - `/` (`overview.rs`): counts by state and provider, refused apps, the connections that need
//!   action first, activity, and the connect form.
//! - `/connections` (`connections.rs`): every connection with its state, token countdowns, last
//!   refresh and problems; filter by state or provider and search (server-side, plus a live
//!   filter script), in pages.
//! - `/connections/{id}` (`connection.rs`): problems with the fix, granted vs required scopes, the
//!   token's last four characters and expiry, buttons to re-authorize (the connect link), refresh
//!   now and probe now, a chart and the timeline of events.
//! - `/connections/{id}/reauthorize`, `/connect-account` (`reauthorize.rs`): the Re-authorize
//!   page every re-authorization link points at, and the buttons that mint a connect session.
//! - `/diagnose` (`diagnose.rs`): the classifier on a pasted response.
//! - `/login`, `/logout` (`login.rs`): sign in with an admin API key or the configured password;
//!   [`session`] keeps the sessions.
//! - [`view`]: the page frame, the CSP and small pieces of markup; [`chart`]: activity from the
//!   events table as inline SVG.
//! - `/assets/`: one stylesheet and one small script (`assets/`), embedded.
//!
//! Every POST carries the session's CSRF token and, when the browser sends `Origin`, must come
//! from this daemon's public origin. No token is ever rendered except as its last four characters.

pub mod chart;
mod connection;
mod connections;
mod diagnose;
mod login;
mod overview;
mod reauthorize;
pub mod session;
pub mod view;

use crate::ServerState;
use crate::page::escape;
use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use connection::{connection, probe_now, refresh_now};
use connections::connections;
use diagnose::{diagnose, diagnose_form};
use login::{login, login_form, logout};
use overview::overview;
use reauthorize::{connect_account, reauthorize, reauthorize_page};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use tokenwarden_core::classify::ResponseView;
use tokenwarden_core::connection::{Connection, ConnectionState};
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::provider::Context;
use tokenwarden_store::{ApiKeyRole, StoredTokens};
use view::{Nav, Page, badge, countdown, csrf_field, when};

pub use session::Sessions;

/// The dashboard's own state: sessions (and the password), and activity counts for the charts.
#[derive(Debug, Default)]
pub struct Dashboard {
    /// Signed-in browsers.
    pub sessions: Sessions,
    /// Hourly activity from the events table.
    pub activity: chart::Activity,
}

impl Dashboard {
    /// Lets people sign in with this password as well as with an admin API key (`None` or empty:
    /// API keys only).
    pub fn set_password(&self, password: Option<&str>) {
        self.sessions.set_password(password);
    }

    /// Ends sessions unused for this long (default [`session::IDLE_TIMEOUT`]; clamped to between
    /// a minute and the session's absolute lifetime).
    pub fn set_idle_timeout(&self, idle: std::time::Duration) {
        self.sessions.set_idle_timeout(idle);
    }

    /// The daemon's clock runs `scale` times faster than real time (`--time-scale`): session
    /// lifetimes stay real time.
    pub fn set_time_scale(&self, scale: f64) {
        self.sessions.set_time_scale(scale);
    }
}

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// The dashboard's routes.
pub fn routes() -> Router<ServerState> {
    Router::new()
        .route("/", get(overview))
        .route("/connections", get(connections))
        .route("/connections/{id}", get(connection))
        .route("/connections/{id}/refresh", post(refresh_now))
        .route("/connections/{id}/probe", post(probe_now))
        .route(
            "/connections/{id}/reauthorize",
            get(reauthorize_page).post(reauthorize),
        )
        .route("/connect-account", post(connect_account))
        .route("/diagnose", get(diagnose_form).post(diagnose))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route(
            "/assets/app.css",
            get(|| asset(CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/assets/app.js",
            get(|| asset(JS, "text/javascript; charset=utf-8")),
        )
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn cookie_name(s: &ServerState) -> &'static str {
    if s.public_url.scheme() == "https" {
        "__Host-tw_session"
    } else {
        "tw_session"
    }
}

/// A signed-in browser.
#[derive(Debug)]
pub struct Signed {
    session: session::Session,
    cookie: String,
}

impl FromRequestParts<ServerState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &ServerState) -> Result<Self, Response> {
        let found = match crate::page::cookie(&parts.headers, cookie_name(s)) {
            Some(id) => s
                .dashboard
                .sessions
                .get(&*s.store, id, s.clock.now())
                .await
                .map(|session| (id.to_string(), session)),
            None => None,
        };
        match found {
            Some((cookie, session)) => Ok(Signed { session, cookie }),
            None => {
                // Back to where the visit was going after sign-in (a GET page of this daemon).
                let to = match parts.method {
                    axum::http::Method::GET => parts
                        .uri
                        .path_and_query()
                        .filter(|pq| pq.as_str() != "/")
                        .map_or_else(
                            || "/login".to_string(),
                            |pq| {
                                let next: String =
                                    url::form_urlencoded::byte_serialize(pq.as_str().as_bytes())
                                        .collect();
                                format!("/login?next={next}")
                            },
                        ),
                    _ => "/login".to_string(),
                };
                let mut r = Redirect::to(&to).into_response();
                crate::page::secure_headers(r.headers_mut());
                Err(r)
            }
        }
    }
}

/// Whether the request's `Origin` (when the browser names one) is this daemon's. Pages are sent
/// with `Referrer-Policy: no-referrer`, under which browsers send `Origin: null` on form posts; the
/// CSRF token and `SameSite=Strict` decide then.
fn same_origin(s: &ServerState, headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None | Some("null") => true,
        Some(o) => o == s.public_url.origin().ascii_serialization(),
    }
}

/// A form's CSRF field.
#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Refuses a state-changing request without this session's CSRF token, or from another origin.
fn check_post(
    s: &ServerState,
    signed: &Signed,
    headers: &HeaderMap,
    csrf: &str,
) -> Option<Response> {
    let origin_ok = same_origin(s, headers);
    if origin_ok && signed.session.csrf_ok(csrf) {
        return None;
    }
    tracing::warn!(
        origin_ok,
        "dashboard: refused a form post without a valid CSRF token"
    );
    Some(message(
        s,
        Some(signed),
        StatusCode::FORBIDDEN,
        "Refused",
        "This form was not sent from a dashboard page of this session (its anti-forgery token is missing or wrong). Reload the page and try again.",
    ))
}

fn message(
    s: &ServerState,
    signed: Option<&Signed>,
    status: StatusCode,
    title: &str,
    text: &str,
) -> Response {
    Page {
        title,
        nav: Nav::Overview,
        csrf: signed.map(|x| x.session.csrf.as_str()),
        who: signed.map(|x| x.session.who.as_str()),
        body: format!(
            "<div class=\"card\"><p>{}</p><p><a href=\"/\">Back to the overview</a></p></div>",
            escape(text)
        ),
        refresh_secs: None,
    }
    .send(status, &s.providers)
}

fn store_down(s: &ServerState, signed: &Signed, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "dashboard: the store does not answer");
    message(
        s,
        Some(signed),
        StatusCode::SERVICE_UNAVAILABLE,
        "The database does not answer",
        "tokenwarden cannot reach its database right now. This page will work again once it answers.",
    )
}

fn provider_name(s: &ServerState, id: &str) -> String {
    s.providers
        .get(id)
        .map_or_else(|| id.to_string(), |p| p.spec.name.clone())
}

fn chart_card(title: &str, bars: &chart::Bars) -> String {
    format!(
        "<section class=\"card\"><h2>{}</h2>{}<p class=\"legend\"><span class=\"key s0\"></span>refreshes \
<span class=\"key s1\"></span>failures <span class=\"key s2\"></span>throttles · last {} hours</p></section>",
        escape(title),
        chart::svg(bars, title),
        chart::CHART_HOURS
    )
}
