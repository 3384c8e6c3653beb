//! The dashboard: server-rendered pages for a person who watches the connections.
//!
//! - `/`: counts by state and provider, the connections that need action first, activity.
//! - `/connections`: every connection with its state, token countdowns, last refresh and
//!   problems; filter by state or provider and search (server-side, plus a live filter script).
//! - `/connections/{id}`: problems with the fix, granted vs required scopes, the token's last four
//!   characters and expiry, buttons to re-authorize (the connect link), refresh now and probe now,
//!   a chart and the timeline of events.
//! - `/diagnose`: the classifier on a pasted response.
//! - `/login`, `/logout`: sign in with an admin API key or the configured password.
//! - `/assets/`: one stylesheet and one small script, embedded.
//!
//! Every POST carries the session's CSRF token and, when the browser sends `Origin`, must come
//! from this daemon's public origin. No token is ever rendered except as its last four characters.

pub mod chart;
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
        .route("/connect-account", get(connect_account))
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

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
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
        let found = cookie_value(&parts.headers, cookie_name(s))
            .and_then(|id| Some((id.to_string(), s.dashboard.sessions.get(id)?)));
        match found {
            Some((cookie, session)) => Ok(Signed { session, cookie }),
            None => {
                let mut r = Redirect::to("/login").into_response();
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

// ---------------------------------------------------------------- sign-in

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    secret: String,
}

fn login_page(s: &ServerState, status: StatusCode, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    Page {
        title: "Sign in",
        nav: Nav::None,
        csrf: None,
        who: None,
        body: format!(
            "<div class=\"card narrow\">{error}<form method=\"post\" action=\"/login\" class=\"stack\">\
<label for=\"secret\">Admin API key or dashboard password</label>\
<input id=\"secret\" name=\"secret\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
<button type=\"submit\" class=\"primary\">Sign in</button></form>\
<p class=\"muted\">An admin key is in <code>tokenwarden-data/admin.key</code> after <code>tokenwarden serve</code> first runs.</p></div>"
        ),
        refresh_secs: None,
    }
    .send(status, &s.providers)
}

async fn login_form(State(s): State<ServerState>) -> Response {
    login_page(&s, StatusCode::OK, None)
}

async fn login(
    State(s): State<ServerState>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    if !same_origin(&s, &headers) {
        return login_page(
            &s,
            StatusCode::FORBIDDEN,
            Some("Sign in from this daemon's own page."),
        );
    }
    if s.dashboard.sessions.locked_out() {
        return login_page(
            &s,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed sign-ins in the last minute. Wait a minute and try again."),
        );
    }
    let secret = f.secret.trim();
    let key = if secret.starts_with("tw_") {
        match s.store.verify_api_key(secret).await {
            Ok(Some(k)) if k.role == ApiKeyRole::Admin => Some(format!("API key {}", k.id)),
            Ok(_) => None,
            Err(e) => {
                tracing::error!(error = %e, "dashboard sign-in: the store does not answer");
                return login_page(
                    &s,
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("tokenwarden cannot reach its database right now."),
                );
            }
        }
    } else {
        None
    };
    // A password may look like a key; it is checked whenever the key was not a valid admin key.
    let who = key.or_else(|| {
        s.dashboard
            .sessions
            .password_ok(secret)
            .then(|| "password".to_string())
    });
    let Some(who) = who else {
        s.dashboard.sessions.failed();
        tracing::warn!("dashboard: a sign-in was refused");
        return login_page(
            &s,
            StatusCode::UNAUTHORIZED,
            Some("That is not an admin API key or the dashboard password."),
        );
    };
    tracing::info!(%who, "dashboard: signed in");
    let (id, _) = s.dashboard.sessions.start(who);
    let secure = if s.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        cookie_name(&s),
        session::SESSION_TTL.as_secs()
    );
    let mut r = Redirect::to("/").into_response();
    crate::page::secure_headers(r.headers_mut());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(
    State(s): State<ServerState>,
    signed: Signed,
    headers: HeaderMap,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Some(refused) = check_post(&s, &signed, &headers, &f.csrf) {
        return refused;
    }
    s.dashboard.sessions.end(&signed.cookie);
    let mut r = Redirect::to("/login").into_response();
    crate::page::secure_headers(r.headers_mut());
    let secure = if s.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
        cookie_name(&s)
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

// ---------------------------------------------------------------- data

/// A connection with its token set (never shown beyond its hint).
struct Row {
    conn: Connection,
    tokens: Option<StoredTokens>,
}

/// Open app-level problems (hardening rule 5): (provider, app, problem).
async fn app_problems(
    s: &ServerState,
) -> Result<
    Vec<(String, String, tokenwarden_core::connection::Problem)>,
    tokenwarden_store::StoreError,
> {
    let mut out = Vec::new();
    for app in s.store.list_apps(None).await? {
        for p in s.store.app_problems(&app.provider, &app.id).await? {
            out.push((app.provider.to_string(), app.id.to_string(), p));
        }
    }
    Ok(out)
}

/// How urgently a connection needs a person: lower is more urgent; `None` when it needs nothing.
fn urgency(c: &Connection) -> Option<u8> {
    match c.state {
        ConnectionState::ReauthRequired => Some(0),
        ConnectionState::Degraded => Some(1),
        _ if !c.problems.is_empty() => Some(2),
        ConnectionState::Pending => Some(3),
        _ => None,
    }
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

// ---------------------------------------------------------------- overview

async fn overview(State(s): State<ServerState>, signed: Signed) -> Response {
    let now = s.clock.now();
    // The overview needs no token set, so it reads connections only (one query).
    let conns = match s.store.list_connections().await {
        Ok(c) => c,
        Err(e) => return store_down(&s, &signed, e),
    };
    let (bars, _) = match s.dashboard.activity.bars(&*s.store, None, now).await {
        Ok(b) => b,
        Err(e) => return store_down(&s, &signed, e),
    };
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_provider: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    for c in &conns {
        *by_state.entry(c.state.as_str()).or_default() += 1;
        let idx = ConnectionState::ALL
            .iter()
            .position(|x| *x == c.state)
            .unwrap_or(0);
        by_provider.entry(c.provider.to_string()).or_default()[idx] += 1;
    }
    let mut body = String::new();
    body.push_str("<section class=\"stats\">");
    let _ = write!(
        body,
        "<a class=\"stat\" href=\"/connections\"><span class=\"n\">{}</span><span>connections</span></a>",
        conns.len()
    );
    for st in [
        ConnectionState::Active,
        ConnectionState::Degraded,
        ConnectionState::ReauthRequired,
        ConnectionState::Pending,
    ] {
        let _ = write!(
            body,
            "<a class=\"stat {k}\" href=\"/connections?state={k}\" data-count=\"{k}\"><span class=\"n\">{}</span><span>{}</span></a>",
            by_state.get(st.as_str()).copied().unwrap_or(0),
            match st {
                ConnectionState::Active => "healthy",
                ConnectionState::Degraded => "degraded",
                ConnectionState::ReauthRequired => "need re-authorization",
                ConnectionState::Pending => "pending",
            },
            k = st.as_str()
        );
    }
    body.push_str("</section>");

    match app_problems(&s).await {
        Ok(list) if !list.is_empty() => {
            body.push_str("<section class=\"card\" id=\"app-problems\"><h2>App problems</h2><p class=\"muted\">The platform refused one of your apps; its connections are kept and will work again once the app is fixed.</p><ul class=\"problems\">");
            for (provider, app, p) in list {
                let _ = write!(
                    body,
                    "<li data-code=\"{}\"><strong>{} · app {}: {}</strong><p class=\"fix\"><b>Fix:</b> {}</p><p class=\"muted\">since {}</p></li>",
                    escape(&p.code),
                    escape(&provider_name(&s, &provider)),
                    escape(&app),
                    escape(&p.title),
                    escape(&p.fix),
                    when(Some(p.since))
                );
            }
            body.push_str("</ul></section>");
        }
        Ok(_) => {}
        Err(e) => return store_down(&s, &signed, e),
    }

    let mut urgent: Vec<&Connection> = conns.iter().filter(|c| urgency(c).is_some()).collect();
    urgent.sort_by_key(|c| (urgency(c), c.id.to_string()));
    body.push_str("<section class=\"card\" id=\"needs-action\"><h2>Needs action</h2>");
    if urgent.is_empty() {
        body.push_str("<p class=\"ok-note\">Nothing needs you: every connection is healthy.</p>");
    } else {
        body.push_str("<table><thead><tr><th>Connection</th><th>Provider</th><th>State</th><th>What is wrong</th><th>Fix</th><th></th></tr></thead><tbody>");
        for c in urgent {
            let (what, fix) = c.problems.first().map_or_else(
                || match c.state {
                    ConnectionState::Pending => (
                        "Authorization has not completed".to_string(),
                        "Open the connect link and approve.".to_string(),
                    ),
                    _ => (String::new(), String::new()),
                },
                |p| (p.title.clone(), p.fix.clone()),
            );
            let _ = write!(
                body,
                "<tr data-connection=\"{id}\"><td><a href=\"/connections/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td class=\"fix\">{}</td>\
<td>{}</td></tr>",
                escape(&provider_name(&s, c.provider.as_str())),
                badge(c.state),
                escape(&what),
                escape(&fix),
                action_button(&s, c),
                id = escape(c.id.as_str()),
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</section>");

    body.push_str("<div class=\"grid2\"><section class=\"card\"><h2>By provider</h2><table><thead><tr><th>Provider</th><th>healthy</th><th>degraded</th><th>reauth</th><th>pending</th></tr></thead><tbody>");
    for (p, counts) in &by_provider {
        let _ = write!(
            body,
            "<tr><td><a href=\"/connections?provider={pe}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&provider_name(&s, p)),
            counts[1],
            counts[2],
            counts[3],
            counts[0],
            pe = escape(p)
        );
    }
    if by_provider.is_empty() {
        body.push_str("<tr><td colspan=\"5\" class=\"muted\">No connections yet.</td></tr>");
    }
    body.push_str("</tbody></table></section>");
    body.push_str(&chart_card("Activity, all connections", &bars));
    body.push_str("</div>");
    body.push_str(&connect_form(&s));
    Page {
        title: "Overview",
        nav: Nav::Overview,
        csrf: Some(&signed.session.csrf),
        who: Some(&signed.session.who),
        body,
        refresh_secs: Some(15),
    }
    .send(StatusCode::OK, &s.providers)
}

/// The one button a row of "Needs action" offers: the connect link where only a person
/// re-authorizing helps, the connection's page otherwise (tokenwarden is already retrying).
fn action_button(s: &ServerState, c: &Connection) -> String {
    let needs_person = matches!(
        c.state,
        ConnectionState::ReauthRequired | ConnectionState::Pending
    ) || c
        .problems
        .iter()
        .any(|p| matches!(p.code.as_str(), "expires_soon" | "missing_scope"));
    if needs_person {
        format!(
            "<a class=\"button small primary\" href=\"{}\">Re-authorize</a>",
            escape(&s.connect_link(c.provider.as_str(), c.id.as_str()))
        )
    } else {
        format!(
            "<a class=\"button small\" href=\"/connections/{}\">Details</a>",
            escape(c.id.as_str())
        )
    }
}

fn connect_form(s: &ServerState) -> String {
    let mut options = String::new();
    let mut ids: Vec<_> = s.providers.iter().collect();
    ids.sort_by(|a, b| a.spec.id.as_str().cmp(b.spec.id.as_str()));
    for p in ids {
        let _ = write!(
            options,
            "<option value=\"{}\">{}</option>",
            escape(p.spec.id.as_str()),
            escape(&p.spec.name)
        );
    }
    format!(
        "<section class=\"card\" id=\"connect\"><h2>Connect an account</h2>\
<form method=\"get\" action=\"/connect-account\" class=\"row\">\
<label>Platform <select name=\"provider\" id=\"connect-provider\">{options}</select></label>\
<label>Connection id <input name=\"connection_id\" id=\"connect-id\" required pattern=\"[A-Za-z0-9._-]+\" placeholder=\"e.g. acme-snapchat\"></label>\
<button type=\"submit\" class=\"primary\" id=\"connect-go\">Connect</button></form>\
<p class=\"muted\">You are sent to the platform to approve access, then back here.</p></section>"
    )
}

#[derive(Debug, Deserialize)]
struct ConnectQuery {
    provider: String,
    connection_id: String,
}

/// The connect form's target: on to `/connect/{provider}` (which starts the authorization).
async fn connect_account(
    State(s): State<ServerState>,
    signed: Signed,
    Query(q): Query<ConnectQuery>,
) -> Response {
    let id = q.connection_id.trim();
    if s.providers.get(&q.provider).is_none() || ConnectionId::parse(id).is_err() {
        return message(
            &s,
            Some(&signed),
            StatusCode::BAD_REQUEST,
            "Cannot connect",
            "Pick a platform and give the connection an id of letters, digits, '.', '_' or '-'.",
        );
    }
    let link = s.connect_link(&q.provider, id);
    let mut r = Redirect::to(&link).into_response();
    crate::page::secure_headers(r.headers_mut());
    r
}

// ---------------------------------------------------------------- connections

#[derive(Debug, Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    page: usize,
}

/// Rows per page of the connections table (token sets are read for the shown page only).
const PAGE: usize = 100;

async fn connections(
    State(s): State<ServerState>,
    signed: Signed,
    Query(f): Query<ListQuery>,
) -> Response {
    let now = s.clock.now();
    let conns = match s.store.list_connections().await {
        Ok(c) => c,
        Err(e) => return store_down(&s, &signed, e),
    };
    let last = match s.dashboard.activity.last_refreshes(&*s.store, now).await {
        Ok(l) => l,
        Err(e) => return store_down(&s, &signed, e),
    };
    let needle = f.q.trim().to_lowercase();
    let matching: Vec<&Connection> = conns
        .iter()
        .filter(|c| f.state.is_empty() || c.state.as_str() == f.state)
        .filter(|c| f.provider.is_empty() || c.provider.as_str() == f.provider)
        .filter(|c| needle.is_empty() || search_text(c).contains(&needle))
        .collect();
    let pages = matching.len().div_ceil(PAGE).max(1);
    let page = f.page.min(pages - 1);
    let mut shown = Vec::new();
    for c in matching.iter().skip(page * PAGE).take(PAGE) {
        match s.store.get_tokens(&c.id).await {
            Ok(tokens) => shown.push(Row {
                conn: (*c).clone(),
                tokens,
            }),
            Err(e) => return store_down(&s, &signed, e),
        }
    }
    let mut body = String::new();
    let opt = |v: &str, text: &str, cur: &str| {
        format!(
            "<option value=\"{}\"{}>{}</option>",
            escape(v),
            if v == cur { " selected" } else { "" },
            escape(text)
        )
    };
    let mut states = opt("", "any state", &f.state);
    for st in ConnectionState::ALL {
        states.push_str(&opt(st.as_str(), st.as_str(), &f.state));
    }
    let mut providers = opt("", "any provider", &f.provider);
    for p in s.providers.iter() {
        providers.push_str(&opt(p.spec.id.as_str(), &p.spec.name, &f.provider));
    }
    let _ = write!(
        body,
        "<form method=\"get\" action=\"/connections\" class=\"row filters\">\
<input type=\"search\" name=\"q\" id=\"filter\" value=\"{}\" placeholder=\"Search id, provider, account…\" data-filter=\"#connections tbody tr\">\
<select name=\"state\">{states}</select><select name=\"provider\">{providers}</select>\
<button type=\"submit\">Filter</button></form>",
        escape(&f.q)
    );
    body.push_str("<section class=\"card\"><table id=\"connections\"><thead><tr><th>Connection</th><th>Provider</th><th>Account</th><th>State</th><th>Token expires</th><th>Refresh token</th><th>Last refresh</th><th>Problems</th></tr></thead><tbody>");
    for r in &shown {
        let c = &r.conn;
        let problems = match c.problems.as_slice() {
            [] => "<span class=\"muted\">none</span>".to_string(),
            [one] => escape(&one.title),
            [first, rest @ ..] => format!(
                "{} <span class=\"muted\">+{}</span>",
                escape(&first.title),
                rest.len()
            ),
        };
        let _ = write!(
            body,
            "<tr data-search=\"{}\" data-connection=\"{id}\"><td><a href=\"/connections/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{problems}</td></tr>",
            escape(&search_text(c)),
            escape(&provider_name(&s, c.provider.as_str())),
            escape(&c.account_ids.join(", ")),
            badge(c.state),
            r.tokens.as_ref().map_or_else(
                || "<span class=\"muted\">—</span>".into(),
                |t| countdown(t.set.expires_at, now)
            ),
            r.tokens.as_ref().map_or_else(
                || "<span class=\"muted\">—</span>".into(),
                |t| countdown(t.set.refresh_expires_at, now)
            ),
            when(last.get(c.id.as_str()).copied()),
            id = escape(c.id.as_str()),
        );
    }
    if shown.is_empty() {
        body.push_str("<tr><td colspan=\"8\" class=\"muted\">No connection matches.</td></tr>");
    }
    let pager = |to: usize, text: &str| {
        format!(
            "<a class=\"button small\" href=\"/connections?q={}&amp;state={}&amp;provider={}&amp;page={to}\">{text}</a>",
            escape(&query_escape(&f.q)),
            escape(&query_escape(&f.state)),
            escape(&query_escape(&f.provider)),
        )
    };
    let _ = write!(
        body,
        "</tbody></table><p class=\"muted pager\">{} of {} connections match{}. {}{}</p></section>",
        matching.len(),
        conns.len(),
        if pages > 1 {
            format!(
                "; rows {}–{} (page {} of {pages})",
                page * PAGE + 1,
                page * PAGE + shown.len(),
                page + 1
            )
        } else {
            String::new()
        },
        if page > 0 {
            pager(page - 1, "Previous")
        } else {
            String::new()
        },
        if page + 1 < pages {
            pager(page + 1, "Next")
        } else {
            String::new()
        },
    );
    Page {
        title: "Connections",
        nav: Nav::Connections,
        csrf: Some(&signed.session.csrf),
        who: Some(&signed.session.who),
        body,
        refresh_secs: Some(30),
    }
    .send(StatusCode::OK, &s.providers)
}

/// Percent-encodes a query value (the filter links carry what the person typed).
fn query_escape(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

fn search_text(c: &Connection) -> String {
    format!(
        "{} {} {} {}",
        c.id,
        c.provider,
        c.account_ids.join(" "),
        c.state
    )
    .to_lowercase()
}

// ---------------------------------------------------------------- one connection

#[derive(Debug, Deserialize, Default)]
struct NoticeQuery {
    #[serde(default)]
    notice: String,
}

fn notice_text(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "refreshed" => ("ok", "Refreshed: a new token is stored."),
        "refresh_failed" => (
            "error",
            "The refresh did not succeed; the problems and the timeline below say why.",
        ),
        "probed" => ("ok", "Probed: the state below is the platform's answer."),
        "probe_skipped" => (
            "error",
            "Not probed: a connection that needs re-authorization or is pending has no token to probe with.",
        ),
        _ => return None,
    })
}

async fn connection(
    State(s): State<ServerState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(nq): Query<NoticeQuery>,
) -> Response {
    let now = s.clock.now();
    let Ok(id) = ConnectionId::parse(id.as_str()) else {
        return message(
            &s,
            Some(&signed),
            StatusCode::NOT_FOUND,
            "No such connection",
            "That is not a connection id.",
        );
    };
    let conn = match s.store.get_connection(&id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return message(
                &s,
                Some(&signed),
                StatusCode::NOT_FOUND,
                "No such connection",
                &format!("There is no connection {id}."),
            );
        }
        Err(e) => return store_down(&s, &signed, e),
    };
    let tokens = match s.store.get_tokens(&id).await {
        Ok(t) => t,
        Err(e) => return store_down(&s, &signed, e),
    };
    let (bars, last_refresh) = match s
        .dashboard
        .activity
        .bars(&*s.store, Some(id.as_str()), now)
        .await
    {
        Ok(b) => b,
        Err(e) => return store_down(&s, &signed, e),
    };
    let events = match recent_events(&s, &id, 100).await {
        Ok(e) => e,
        Err(e) => return store_down(&s, &signed, e),
    };
    let provider = s.providers.get(conn.provider.as_str()).cloned();
    let csrf = csrf_field(&signed.session.csrf);
    let mut body = String::new();
    if let Some((class, text)) = notice_text(&nq.notice) {
        let _ = write!(
            body,
            "<p class=\"notice {class}\" role=\"status\">{}</p>",
            escape(text)
        );
    }
    let _ = write!(
        body,
        "<section class=\"card head\"><div class=\"title-row\">{} <span class=\"provider\">{}</span></div>\
<div class=\"actions\"><a class=\"button primary\" id=\"reauthorize\" href=\"{}\">Re-authorize</a>\
<form method=\"post\" action=\"/connections/{id}/refresh\" class=\"inline\">{csrf}<button type=\"submit\" id=\"refresh-now\">Refresh now</button></form>\
<form method=\"post\" action=\"/connections/{id}/probe\" class=\"inline\">{csrf}<button type=\"submit\" id=\"probe-now\">Probe now</button></form></div></section>",
        badge(conn.state),
        escape(&provider_name(&s, conn.provider.as_str())),
        escape(&s.connect_link(conn.provider.as_str(), conn.id.as_str())),
        id = escape(conn.id.as_str()),
    );

    body.push_str("<section class=\"card\" id=\"problems\"><h2>Open problems</h2>");
    if conn.problems.is_empty() {
        body.push_str("<p class=\"ok-note\">No open problems.</p>");
    } else {
        body.push_str("<ul class=\"problems\">");
        for p in &conn.problems {
            let _ = write!(
                body,
                "<li data-code=\"{}\"><strong>{}</strong><p class=\"fix\"><b>Fix:</b> {}</p><p class=\"muted\">code {} · since {}</p></li>",
                escape(&p.code),
                escape(&p.title),
                escape(&p.fix),
                escape(&p.code),
                when(Some(p.since))
            );
        }
        body.push_str("</ul>");
    }
    body.push_str("</section>");

    body.push_str("<div class=\"grid2\"><section class=\"card\"><h2>Token</h2><dl>");
    match &tokens {
        Some(t) => {
            let _ = write!(
                body,
                "<dt>Access token</dt><dd><code id=\"token-hint\">{}</code> <span class=\"muted\">(last four characters only)</span></dd>\
<dt>Expires</dt><dd>{}</dd><dt>Refresh token expires</dt><dd>{}</dd><dt>Issued</dt><dd>{}</dd><dt>Last refresh</dt><dd>{}</dd><dt>Version</dt><dd>{}</dd>",
                escape(&t.set.access_token.hint()),
                countdown(t.set.expires_at, now),
                if t.set.refresh_token.is_some() { countdown(t.set.refresh_expires_at, now) } else { "<span class=\"muted\">none</span>".into() },
                when(Some(t.set.issued_at)),
                when(last_refresh),
                t.version
            );
        }
        None => body.push_str("<dt>Access token</dt><dd class=\"muted\">none yet: authorization has not completed</dd>"),
    }
    let _ = write!(
        body,
        "<dt>Account</dt><dd>{}</dd><dt>App</dt><dd>{}</dd><dt>Environment</dt><dd>{}</dd><dt>Connected</dt><dd>{}</dd><dt>Changed</dt><dd>{}</dd></dl></section>",
        if conn.account_ids.is_empty() {
            "<span class=\"muted\">—</span>".to_string()
        } else {
            escape(&conn.account_ids.join(", "))
        },
        escape(conn.app.as_str()),
        escape(conn.environment.as_str()),
        when(Some(conn.created_at)),
        when(Some(conn.updated_at)),
    );

    body.push_str("<div class=\"column\"><section class=\"card\" id=\"scopes\"><h2>Scopes</h2><table><thead><tr><th>Scope</th><th>Required</th><th>Granted</th></tr></thead><tbody>");
    let required: Vec<String> = provider
        .as_ref()
        .map(|p| {
            let mut r = p.spec.authorize.required_scopes.clone();
            for d in &p.spec.authorize.default_scopes {
                if !r.contains(d) {
                    r.push(d.clone());
                }
            }
            r
        })
        .unwrap_or_default();
    let must: Vec<String> = provider
        .as_ref()
        .map(|p| p.spec.authorize.required_scopes.clone())
        .unwrap_or_default();
    let mut all = required.clone();
    for g in &conn.scopes {
        if !all.contains(g) {
            all.push(g.clone());
        }
    }
    for sc in &all {
        let granted = conn.scopes.contains(sc);
        let _ = write!(
            body,
            "<tr class=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            if must.contains(sc) && !granted {
                "missing"
            } else {
                ""
            },
            escape(sc),
            if must.contains(sc) {
                "required"
            } else if required.contains(sc) {
                "requested"
            } else {
                "—"
            },
            if granted {
                "✓ granted"
            } else {
                "✗ not granted"
            }
        );
    }
    if all.is_empty() {
        body.push_str("<tr><td colspan=\"3\" class=\"muted\">This platform takes no scopes (permissions are set on the app).</td></tr>");
    }
    body.push_str("</tbody></table></section>");
    body.push_str(&chart_card("Activity of this connection", &bars));
    body.push_str("</div></div>");

    body.push_str(
        "<section class=\"card\" id=\"timeline\"><h2>Timeline</h2><ol class=\"timeline\">",
    );
    for e in events.iter().rev() {
        let _ = write!(
            body,
            "<li class=\"ev {}\"><span class=\"kind\">{}</span> {} <span class=\"muted\">{}</span></li>",
            escape(&e.kind),
            escape(&e.kind),
            escape(&e.message),
            when(Some(e.at))
        );
    }
    if events.is_empty() {
        body.push_str("<li class=\"muted\">No events yet.</li>");
    }
    body.push_str("</ol></section>");
    let title = format!("Connection {}", conn.id);
    Page {
        title: &title,
        nav: Nav::Connections,
        csrf: Some(&signed.session.csrf),
        who: Some(&signed.session.who),
        body,
        refresh_secs: Some(20),
    }
    .send(StatusCode::OK, &s.providers)
}

/// The last `keep` events of a connection (the store lists oldest first, so page to the end).
async fn recent_events(
    s: &ServerState,
    id: &ConnectionId,
    keep: usize,
) -> Result<Vec<tokenwarden_store::Event>, tokenwarden_store::StoreError> {
    let mut out: std::collections::VecDeque<tokenwarden_store::Event> = Default::default();
    let mut after = 0;
    loop {
        let batch = s.store.list_events(Some(id), after, 500).await?;
        let n = batch.len();
        if let Some(last) = batch.last() {
            after = last.id;
        }
        for e in batch {
            out.push_back(e);
            if out.len() > keep {
                out.pop_front();
            }
        }
        if n < 500 {
            break;
        }
    }
    Ok(out.into())
}

fn back_to(id: &ConnectionId, notice: &str) -> Response {
    let mut r =
        Redirect::to(&format!("/connections/{}?notice={notice}", id.as_str())).into_response();
    crate::page::secure_headers(r.headers_mut());
    r
}

async fn refresh_now(
    State(s): State<ServerState>,
    signed: Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Some(refused) = check_post(&s, &signed, &headers, &f.csrf) {
        return refused;
    }
    let Ok(id) = ConnectionId::parse(id.as_str()) else {
        return message(
            &s,
            Some(&signed),
            StatusCode::NOT_FOUND,
            "No such connection",
            "That is not a connection id.",
        );
    };
    tracing::info!(connection = %id, who = %signed.session.who, "dashboard: refresh now");
    match s.tokens.refresh_now(&id).await {
        Ok(_) => {
            s.wake.notify_one();
            back_to(&id, "refreshed")
        }
        Err(e) => {
            tracing::info!(connection = %id, error = %e, "dashboard: refresh now failed");
            back_to(&id, "refresh_failed")
        }
    }
}

async fn probe_now(
    State(s): State<ServerState>,
    signed: Signed,
    Path(id): Path<String>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Some(refused) = check_post(&s, &signed, &headers, &f.csrf) {
        return refused;
    }
    let Ok(id) = ConnectionId::parse(id.as_str()) else {
        return message(
            &s,
            Some(&signed),
            StatusCode::NOT_FOUND,
            "No such connection",
            "That is not a connection id.",
        );
    };
    let serving =
        matches!(s.store.get_connection(&id).await, Ok(Some(c)) if c.state.can_serve_tokens());
    if !serving {
        return back_to(&id, "probe_skipped");
    }
    tracing::info!(connection = %id, who = %signed.session.who, "dashboard: probe now");
    crate::monitor::probe(&s, &crate::monitor::client(), &id).await;
    back_to(&id, "probed")
}

// ---------------------------------------------------------------- diagnose

#[derive(Debug, Deserialize)]
struct DiagnoseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    response: String,
    #[serde(default)]
    token_endpoint: Option<String>,
}

fn diagnose_page(
    s: &ServerState,
    signed: &Signed,
    form: Option<&DiagnoseForm>,
    result: String,
) -> Response {
    let mut options = String::new();
    for p in s.providers.iter() {
        let id = p.spec.id.as_str();
        let _ = write!(
            options,
            "<option value=\"{}\"{}>{}</option>",
            escape(id),
            if form.is_some_and(|f| f.provider == id) {
                " selected"
            } else {
                ""
            },
            escape(&p.spec.name)
        );
    }
    let body = format!(
        "<section class=\"card\"><form method=\"post\" action=\"/diagnose\" class=\"stack\">{}\
<label>Platform <select name=\"provider\" id=\"diagnose-provider\">{options}</select></label>\
<label for=\"response\"><span>The response, as <code>curl -i</code> prints it (status line, headers, blank line, body)</span></label>\
<textarea id=\"response\" name=\"response\" rows=\"10\" spellcheck=\"false\" required>{}</textarea>\
<label class=\"check\"><input type=\"checkbox\" name=\"token_endpoint\" value=\"1\"{}> from a token endpoint (code exchange or refresh)</label>\
<button type=\"submit\" class=\"primary\" id=\"diagnose-go\">Diagnose</button></form></section>{result}",
        csrf_field(&signed.session.csrf),
        escape(form.map_or("", |f| f.response.as_str())),
        if form.is_some_and(|f| f.token_endpoint.is_some()) {
            " checked"
        } else {
            ""
        },
    );
    Page {
        title: "Diagnose a response",
        nav: Nav::Diagnose,
        csrf: Some(&signed.session.csrf),
        who: Some(&signed.session.who),
        body,
        refresh_secs: None,
    }
    .send(StatusCode::OK, &s.providers)
}

async fn diagnose_form(State(s): State<ServerState>, signed: Signed) -> Response {
    diagnose_page(&s, &signed, None, String::new())
}

async fn diagnose(
    State(s): State<ServerState>,
    signed: Signed,
    headers: HeaderMap,
    axum::Form(f): axum::Form<DiagnoseForm>,
) -> Response {
    if let Some(refused) = check_post(&s, &signed, &headers, &f.csrf) {
        return refused;
    }
    let result = match (
        s.providers.get(&f.provider),
        tokenwarden_core::raw_http::parse(f.response.as_bytes()),
    ) {
        (None, _) => format!(
            "<section class=\"card\"><p class=\"error\">Unknown platform {}.</p></section>",
            escape(&f.provider)
        ),
        (_, Err(e)) => format!(
            "<section class=\"card\"><p class=\"error\">{}</p></section>",
            escape(&e.to_string())
        ),
        (Some(p), Ok(raw)) => {
            let c = p.classifier().classify(
                &ResponseView {
                    status: raw.status,
                    headers: &raw.headers,
                    body: &raw.body,
                },
                if f.token_endpoint.is_some() {
                    Context::TokenEndpoint
                } else {
                    Context::Api
                },
                s.clock.now(),
            );
            let mut facts: Vec<(String, String)> = vec![
                ("kind".into(), c.kind.as_str().into()),
                ("action".into(), c.action.as_str().into()),
                (
                    "retryable".into(),
                    if c.retryable { "yes" } else { "no" }.into(),
                ),
                ("HTTP status".into(), c.status.to_string()),
            ];
            if let Some(w) = c.retry_after {
                facts.push(("wait".into(), format!("{}s", w.as_secs())));
            }
            if let Some(code) = &c.platform_code {
                facts.push(("platform code".into(), code.clone()));
            }
            if let Some(sub) = &c.platform_subcode {
                facts.push(("subcode".into(), sub.clone()));
            }
            let mut dl = String::new();
            for (k, v) in facts {
                let _ = write!(dl, "<dt>{}</dt><dd>{}</dd>", escape(&k), escape(&v));
            }
            let docs = c
                .docs_url
                .as_deref()
                .filter(|u| u.starts_with("https://"))
                .map(|u| {
                    format!(
                        "<p><a href=\"{}\" rel=\"noreferrer\">Platform documentation</a></p>",
                        escape(u)
                    )
                })
                .unwrap_or_default();
            format!(
                "<section class=\"card verdict {}\" id=\"verdict\"><h2>{}</h2><dl class=\"facts\">{dl}</dl>\
<h3>What happened</h3><p>{}</p><h3>Fix</h3><p class=\"fix\">{}</p>{docs}</section>",
                escape(c.kind.as_str()),
                escape(&c.title),
                escape(&c.explanation),
                escape(&c.fix),
            )
        }
    };
    diagnose_page(&s, &signed, Some(&f), result)
}
