//! The health monitor: every connection is probed on its provider's health endpoint (a cheap
//! authenticated call) on the provider's schedule. The classifier's verdict becomes the
//! connection's state and open problems:
//! - a refused or revoked grant → `reauth_required` at once, with one event;
//! - a missing scope or role → an open problem with its fix; the connection stays usable;
//! - an expired token on a refreshable platform → refresh (exactly once) and probe again;
//! - throttling or an outage → nothing is marked; the probe is retried sooner.
//!
//! It also forecasts: a token that cannot be renewed (TikTok Business when revoked, Meta
//! long-lived tokens) or a refresh token near its own end raises `expires_soon` days ahead.

use crate::ServerState;
use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;
use tokenwarden_core::classify::{Action, Blame, Classification, Kind, ResponseView};
use tokenwarden_core::connection::{Connection, ConnectionState, Problem};
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::provider::{Context, ProbeVia, Provider};
use tokenwarden_core::token::TokenSet;
use tokenwarden_store::NewEvent;

/// Problem codes the monitor owns (it clears them when the probe is healthy again).
const PROBE_CODES: [&str; 3] = ["missing_scope", "missing_role", "probe_failing"];
/// At most this much of a probe's body is read.
const MAX_PROBE_BODY: usize = 64 * 1024;

/// The monitor's HTTP client: no redirects followed (the credential would go along), bounded time.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_default()
}

/// Runs until `shutdown`: every `poll` (real time) probes what is due.
pub async fn run(s: ServerState, poll: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let http = client();
    loop {
        if *shutdown.borrow() {
            return;
        }
        probe_due(&s, &http).await;
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Probes every connection whose probe is due now; how many were probed.
pub async fn probe_due(s: &ServerState, http: &reqwest::Client) -> usize {
    let due = match s.store.due_probes(s.clock.now(), 100).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list due probes");
            return 0;
        }
    };
    for id in &due {
        probe(s, http, id).await;
    }
    due.len()
}

async fn fetch(
    http: &reqwest::Client,
    p: &Provider,
    base: &str,
    token: &TokenSet,
) -> Option<(u16, Vec<(String, String)>, Vec<u8>)> {
    let api = &p.spec.api;
    let url = format!("{}{}", base.trim_end_matches('/'), api.probe.path);
    let value = api
        .credential_value
        .replace("{access_token}", token.access_token.expose());
    let method =
        reqwest::Method::from_bytes(api.probe.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut resp = http
        .request(method, url)
        .header(api.credential_header.as_str(), value)
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(
            &chunk[..chunk.len().min(MAX_PROBE_BODY.saturating_sub(body.len()))],
        );
        if body.len() >= MAX_PROBE_BODY {
            break;
        }
    }
    Some((status, headers, body))
}

/// Asks whether `token` works, the way the provider's probe says: an API call, or introspection
/// at the authorization server (RFC 7662). `None` when there was no usable answer (unreachable).
async fn check(
    s: &ServerState,
    http: &reqwest::Client,
    p: &Provider,
    conn: &Connection,
    token: &TokenSet,
) -> Option<Classification> {
    if p.spec.api.probe.via == ProbeVia::Introspection {
        let app = s.store.get_app(&conn.provider, &conn.app).await.ok()??;
        let creds = tokenwarden_oauth::AppCredentials {
            client_id: app.client_id,
            client_secret: app.client_secret,
            redirect_uri: app.redirect_uri,
        };
        return s.oauth.introspect(p, &creds, token).await.ok();
    }
    let (status, headers, body) = fetch(http, p, &conn.api_base, token).await?;
    Some(p.classifier().classify(
        &ResponseView {
            status,
            headers: &headers,
            body: &body,
        },
        Context::Api,
        s.clock.now(),
    ))
}

/// Probes one connection now.
pub async fn probe(s: &ServerState, http: &reqwest::Client, id: &ConnectionId) {
    let Ok(Some(conn)) = s.store.get_connection(id).await else {
        return;
    };
    let Some(p) = s.providers.get(conn.provider.as_str()).cloned() else {
        return;
    };
    let now = s.clock.now();
    let every = TimeDelta::from_std(p.spec.api.probe.every).unwrap_or(TimeDelta::minutes(15));
    if !conn.state.can_serve_tokens() {
        let _ = s.store.set_next_probe(id, None).await;
        return;
    }
    let issued = match s.tokens.token(id).await {
        Ok(i) => i,
        // The token service has already recorded what happened (state, problem, event).
        Err(_) => {
            let _ = s.store.set_next_probe(id, Some(now + every)).await;
            return;
        }
    };
    let mut verdict = None;
    let mut token = issued.tokens;
    for attempt in 0..2 {
        let Some(c) = check(s, http, &p, &conn, &token).await else {
            verdict = None;
            break;
        };
        if attempt == 0 && c.action == Action::RefreshAndRetry {
            match s.tokens.replace(id, token.access_token.expose()).await {
                Ok(fresh) => {
                    token = fresh.tokens;
                    continue;
                }
                Err(_) => return,
            }
        }
        verdict = Some(c);
        break;
    }
    let verdict_kind = verdict.as_ref().map_or("unreachable", |c| c.kind.as_str());
    metrics::counter!(crate::metrics::PROBES, "provider" => conn.provider.to_string(), "kind" => verdict_kind)
        .increment(1);
    let next = match verdict {
        Some(c) => apply(s, &conn, &p, &c, &token).await,
        // Unreachable: transient; try again sooner, mark nothing.
        None => now + TimeDelta::minutes(1),
    };
    let _ = s
        .store
        .set_next_probe(id, Some(next.min(now + every)))
        .await;
}

fn problem(code: &str, c: &Classification, now: DateTime<Utc>) -> Problem {
    Problem {
        code: code.into(),
        title: c.title.clone(),
        fix: c.fix.clone(),
        since: now,
    }
}

/// Turns a probe's verdict into state and problems; returns when to probe next.
async fn apply(
    s: &ServerState,
    conn: &Connection,
    p: &Provider,
    c: &Classification,
    token: &TokenSet,
) -> DateTime<Utc> {
    let now = s.clock.now();
    let every = TimeDelta::from_std(p.spec.api.probe.every).unwrap_or(TimeDelta::minutes(15));
    let fresh = s
        .store
        .get_connection(&conn.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| conn.clone());
    let mut problems: Vec<Problem> = fresh
        .problems
        .iter()
        .filter(|x| !PROBE_CODES.contains(&x.code.as_str()) && x.code != "expires_soon")
        .cloned()
        .collect();
    let mut state = fresh.state;
    let mut next = now + every;
    let mut event: Option<(&'static str, String)> = None;
    match (c.kind, c.blame) {
        (Kind::Ok, _) => {}
        (Kind::RateLimited | Kind::ServiceUnavailable, _) => {
            // Transient: never marks the connection; probe again when the platform allows.
            let wait = c
                .retry_after
                .and_then(|d| TimeDelta::from_std(d).ok())
                .unwrap_or(TimeDelta::minutes(2));
            next = now + wait.max(TimeDelta::seconds(10));
            problems.extend(
                fresh
                    .problems
                    .iter()
                    .filter(|x| x.code == "probe_failing")
                    .cloned(),
            );
        }
        (Kind::InsufficientScope, _) => {
            problems.push(problem("missing_scope", c, now));
            event = Some((
                "missing_scope",
                format!("The probe found a missing scope: {}", c.title),
            ));
        }
        (Kind::AppNotAuthorized, _) if c.action != Action::Reauthorize => {
            problems.push(problem("missing_role", c, now));
            event = Some((
                "missing_role",
                format!("The probe found a missing role or permission: {}", c.title),
            ));
        }
        (_, Blame::Connection) if c.action == Action::Reauthorize => {
            problems.push(problem("grant_refused", c, now));
            state = ConnectionState::ReauthRequired;
            event = Some((
                "reauth_required",
                format!("The platform refused the grant: {}", c.title),
            ));
        }
        _ => {
            problems.push(Problem {
                code: "probe_failing".into(),
                title: format!("The health probe failed: {}", c.title),
                fix: c.fix.clone(),
                since: now,
            });
        }
    }
    if let Some(p) = forecast(p, token, now) {
        problems.push(p);
    }
    if state == ConnectionState::Degraded
        && c.kind == Kind::Ok
        && !problems.iter().any(|x| x.code == "refresh_failing")
    {
        state = ConnectionState::Active;
    }
    if (state != fresh.state || problems != fresh.problems)
        && let Err(e) = s.store.set_state(&conn.id, state, &problems, now).await
    {
        tracing::warn!(connection = %conn.id, error = %e, "cannot record the probe's outcome");
    }
    if let Some((kind, message)) = event {
        let already = fresh
            .problems
            .iter()
            .any(|x| x.code == kind || (kind == "reauth_required" && x.code == "grant_refused"));
        if !already {
            let e = NewEvent::new(Some(conn.id.clone()), now, kind, message)
                .with("provider", conn.provider.as_str());
            let _ = s.store.append_event(&e).await;
        }
    }
    if state == ConnectionState::ReauthRequired {
        let _ = s.store.set_next_refresh(&conn.id, None).await;
    }
    next
}

/// `expires_soon`, when a token that cannot be renewed (or a refresh token) ends within the
/// provider's warning window.
fn forecast(p: &Provider, t: &TokenSet, now: DateTime<Utc>) -> Option<Problem> {
    let warn = TimeDelta::from_std(p.spec.refresh.warn_before).unwrap_or(TimeDelta::days(7));
    let ending = if p.spec.refresh.style.can_refresh() {
        t.refresh_expires_at
    } else {
        t.expires_at
    };
    let at = ending.filter(|at| *at - now <= warn)?;
    let days = (at - now).num_hours().max(0) as f64 / 24.0;
    let what = if p.spec.refresh.style.can_refresh() {
        "The refresh token"
    } else {
        "The token"
    };
    Some(Problem {
        code: "expires_soon".into(),
        title: format!(
            "{what} expires in {days:.1} days ({})",
            at.format("%Y-%m-%d %H:%M UTC")
        ),
        fix: format!(
            "{} does not renew it without the person: re-authorize before then with the connect link.",
            p.spec.name
        ),
        since: now,
    })
}
