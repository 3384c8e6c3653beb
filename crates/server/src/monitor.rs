//! The health monitor: every connection is probed on its provider's health endpoint (a cheap
//! authenticated call) on the provider's schedule. The classifier's verdict becomes the
//! connection's state and open problems:
//! - a refused or revoked grant → `reauth_required` at once, with one event;
//! - a token refused on its connection's host that works on the platform's other API host
//!   (production vs the platform's own sandbox, where the definition has one) → the open problem
//!   `environment_mismatch`, with one event; not `reauth_required`, since re-authorizing through
//!   the same app would bring another token of the same environment;
//! - a missing scope or role → an open problem with its fix; the connection stays usable;
//! - an expired token on a refreshable platform → refresh (exactly once) and probe again;
//! - throttling or an outage → nothing is marked; the probe is retried sooner.
//!
//! The probe's request and reading its answer are [`crate::probe`]'s; this module decides what
//! is due and what an answer means.
//!
//! It also forecasts: a token that cannot be renewed (TikTok Business when revoked, Meta
//! long-lived tokens) or a refresh token near its own end raises `expires_soon` days ahead.

use crate::ServerState;
use crate::probe::{
    Elsewhere, Identity, ask_elsewhere, check, client, header_values, identify, refuses_the_token,
};
use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;
use tokenwarden_core::classify::{Action, Blame, Classification, Kind};
use tokenwarden_core::connection::{Connection, Environment, Problem, ProblemCode};
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::provider::Provider;
use tokenwarden_core::token::TokenSet;
use tokenwarden_store::NewEvent;

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

/// What one probe found, in words (never a token or an upstream body: the classifier's titles).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Probed {
    /// `ok` (the token works), `problem` (the platform refused it or found something missing),
    /// `inconclusive` (throttled or an outage: nothing is marked), `unreachable` (no answer),
    /// `no_token` (no usable token to probe with: the refresh before it, or after a refused probe
    /// call, failed without the platform refusing the grant), `skipped` (the
    /// connection needs re-authorization or is pending, or its platform is not loaded).
    pub outcome: &'static str,
    /// The classifier's kind of the platform's answer, when there was one.
    pub kind: Option<&'static str>,
    /// The platform's own code, when it gave one.
    pub platform_code: Option<String>,
    /// What was found.
    pub title: String,
    /// What to do (empty when nothing).
    pub fix: String,
}

impl Probed {
    fn said(outcome: &'static str, title: impl Into<String>, fix: impl Into<String>) -> Probed {
        Probed {
            outcome,
            kind: None,
            platform_code: None,
            title: title.into(),
            fix: fix.into(),
        }
    }

    fn verdict(c: &Classification) -> Probed {
        let outcome = match c.kind {
            Kind::Ok => "ok",
            Kind::RateLimited | Kind::ServiceUnavailable => "inconclusive",
            _ => "problem",
        };
        Probed {
            outcome,
            kind: Some(c.kind.as_str()),
            platform_code: c.platform_code.clone(),
            title: if c.kind == Kind::Ok {
                "The token works: the platform answered the probe".into()
            } else {
                c.title.clone()
            },
            fix: c.fix.clone(),
        }
    }
}

/// Probes one connection now, on a person's or a program's request (`by`): as [`probe`], and the
/// connection's timeline records a `probed` event saying what was found.
pub async fn probe_on_demand(
    s: &ServerState,
    http: &reqwest::Client,
    conn: &Connection,
    by: &str,
) -> Probed {
    let found = probe(s, http, &conn.id).await;
    tracing::info!(
        connection = %conn.id,
        provider = %conn.provider,
        kind = "probed",
        outcome = found.outcome,
        verdict = found.kind.unwrap_or("-"),
        by,
        "probed on demand"
    );
    let mut event = NewEvent::new(
        Some(conn.id.clone()),
        s.clock.now(),
        "probed",
        format!("Probed on demand ({}): {}", found.outcome, found.title),
    )
    .with("provider", conn.provider.as_str())
    .with("outcome", found.outcome)
    .with("by", by);
    if let Some(kind) = found.kind {
        event = event.with("kind", kind);
    }
    if let Err(e) = s.store.append_event(&event).await {
        tracing::warn!(connection = %conn.id, error = %e, "could not record the probe event");
    }
    found
}

/// Probes one connection now; says what it found.
pub async fn probe(s: &ServerState, http: &reqwest::Client, id: &ConnectionId) -> Probed {
    let Ok(Some(conn)) = s.store.get_connection(id).await else {
        return Probed::said("skipped", format!("There is no connection {id}"), "");
    };
    let Some(p) = s.providers.get(conn.provider.as_str()).cloned() else {
        return Probed::said(
            "skipped",
            format!("Provider {} is not loaded", conn.provider),
            "Add its definition (providers/*.toml) and restart.",
        );
    };
    let now = s.clock.now();
    let every = TimeDelta::from_std(p.spec.api.probe.every).unwrap_or(TimeDelta::minutes(15));
    if !conn.state.can_serve_tokens() {
        let _ = s.store.set_next_probe(id, None).await;
        return Probed::said(
            "skipped",
            format!(
                "Not probed: the connection is {} and has no token to probe with",
                conn.state.as_str()
            ),
            "Complete the connect flow (re-authorize) first.",
        );
    }
    let issued = match s.tokens.token(id).await {
        Ok(i) => i,
        // The token service has already recorded what happened (state, problem, event).
        Err(f) => {
            let _ = s.store.set_next_probe(id, Some(now + every)).await;
            return no_token(&f);
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
                // The platform refused the token and then the grant: that is what the probe
                // found (the token service has recorded it), not a probe without a token.
                Err(f @ tokenwarden_engine::TokenFailure::ReauthRequired { .. }) => {
                    return Probed {
                        kind: Some(c.kind.as_str()),
                        platform_code: c.platform_code.clone(),
                        ..Probed::said("problem", f.to_string(), no_token(&f).fix)
                    };
                }
                Err(f) => return no_token(&f),
            }
        }
        verdict = Some(c);
        break;
    }
    let verdict_kind = verdict.as_ref().map_or("unreachable", |c| c.kind.as_str());
    metrics::counter!(crate::metrics::PROBES, "provider" => conn.provider.to_string(), "kind" => verdict_kind)
        .increment(1);
    // A connection whose account was not read when it was connected (the platform did not say,
    // or it was connected before accounts were recorded) learns it from its first good probe.
    if verdict.as_ref().is_some_and(|c| c.kind == Kind::Ok)
        && conn.account.is_none()
        && let Identity::Known(account) = identify(
            &p,
            &conn.api_base,
            &token,
            &header_values(s, &conn).await,
            now,
        )
        .await
    {
        match s.store.set_account(id, &account).await {
            Ok(()) => {
                tracing::info!(connection = %id, provider = %conn.provider, "recorded the platform account behind the grant")
            }
            Err(e) => tracing::warn!(connection = %id, error = %e, "could not record the account"),
        }
    }
    let (next, found) = match verdict {
        Some(c) => {
            let elsewhere = if refuses_the_token(&c) {
                ask_elsewhere(s, http, &p, &conn, &token).await
            } else {
                None
            };
            let mut found = Probed::verdict(&c);
            match &elsewhere {
                Some(Elsewhere::Works(belongs)) => {
                    let mismatch = environment_mismatch(&p.spec.name, &conn, *belongs, now);
                    found.title = mismatch.title;
                    found.fix = mismatch.fix;
                }
                Some(Elsewhere::Undecided(_)) => {
                    found.outcome = "inconclusive";
                    found.title = format!(
                        "{}; the platform's other host could not say whether the token belongs there, so nothing is marked yet and it is probed again soon",
                        c.title
                    );
                }
                None => {}
            }
            (apply(s, &conn, &p, &c, elsewhere, &token).await, found)
        }
        // Unreachable: transient; try again sooner, mark nothing.
        None => (
            now + TimeDelta::minutes(1),
            Probed::said(
                "unreachable",
                "The platform did not answer the probe; nothing is marked, and it is probed again in a minute",
                "",
            ),
        ),
    };
    let _ = s
        .store
        .set_next_probe(id, Some(next.min(now + every)))
        .await;
    found
}

/// The probe had no token to call with: the token service has recorded why (state, problem,
/// event); its words (scrubbed, never a token) say it here too.
fn no_token(f: &tokenwarden_engine::TokenFailure) -> Probed {
    let fix = match f {
        tokenwarden_engine::TokenFailure::ReauthRequired { fix, .. }
        | tokenwarden_engine::TokenFailure::AppMisconfigured { fix, .. } => fix.clone(),
        _ => String::new(),
    };
    Probed::said("no_token", f.to_string(), fix)
}

fn problem(code: ProblemCode, c: &Classification, now: DateTime<Utc>) -> Problem {
    Problem {
        code,
        title: c.title.clone(),
        fix: c.fix.clone(),
        since: now,
    }
}

/// `environment_mismatch`: the connection's token works only on the platform's `belongs` host,
/// while its app is configured for `conn.environment`. The cause is the app's configuration (the
/// credentials are those of an app of the other environment), so the fix says which `[[apps]]`
/// setting to change; re-authorizing as configured would bring another token of the same kind.
fn environment_mismatch(
    provider_name: &str,
    conn: &Connection,
    belongs: Environment,
    since: DateTime<Utc>,
) -> Problem {
    let (app, provider) = (conn.app.as_str(), conn.provider.as_str());
    let (configured, belongs) = (conn.environment.as_str(), belongs.as_str());
    Problem {
        code: ProblemCode::EnvironmentMismatch,
        title: format!(
            "The token belongs to {provider_name}'s {belongs} environment, but app {app} is configured for {configured}"
        ),
        fix: format!(
            "The platform refuses this token on its {configured} host and accepts it on its {belongs} host: \
the client id and secret of app {app} are those of a {belongs} app. Re-authorizing as configured now would \
only bring another {belongs} token. Either set environment = \"{belongs}\" in the [[apps]] entry with \
provider = \"{provider}\" and id = \"{app}\", then connect again; or keep environment = \"{configured}\" \
and give that entry the client id and secret of a {configured} app, then connect again."
        ),
        since,
    }
}

/// Turns a probe's verdict (and, for a refused token, what the other host said) into state and
/// problems; returns when to probe next.
async fn apply(
    s: &ServerState,
    conn: &Connection,
    p: &Provider,
    c: &Classification,
    elsewhere: Option<Elsewhere>,
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
        .filter(|x| !x.code.probe_owned() && x.code != ProblemCode::ExpiresSoon)
        .cloned()
        .collect();
    let mut next = now + every;
    let mut event: Option<(&'static str, String)> = None;
    // Transient: never marks the connection, nor clears what the last answered probe found;
    // probe again when the platform allows.
    let mut transient = |wait: Option<Duration>, problems: &mut Vec<Problem>| {
        let wait = wait
            .and_then(|d| TimeDelta::from_std(d).ok())
            .unwrap_or(TimeDelta::minutes(2));
        next = now + wait.max(TimeDelta::seconds(10));
        problems.extend(
            fresh
                .problems
                .iter()
                .filter(|x| x.code.probe_owned())
                .cloned(),
        );
    };
    match (c.kind, c.blame, elsewhere) {
        (Kind::Ok, ..) => {}
        (Kind::RateLimited | Kind::ServiceUnavailable, ..) => {
            transient(c.retry_after, &mut problems)
        }
        // The token works on the platform's other host: a configuration problem, not a refused
        // grant. The connection keeps its state (the token itself is good; nothing transient
        // happened) and the problem says what to change.
        (.., Some(Elsewhere::Works(belongs))) => {
            let since = fresh
                .problems
                .iter()
                .find(|x| x.code == ProblemCode::EnvironmentMismatch)
                .map_or(now, |x| x.since);
            let found = environment_mismatch(&p.spec.name, &fresh, belongs, since);
            if since == now {
                tracing::warn!(
                    connection = %conn.id,
                    provider = %conn.provider,
                    app = %conn.app,
                    configured = conn.environment.as_str(),
                    token_environment = belongs.as_str(),
                    "the token works only on the platform's other environment's host"
                );
            }
            event = Some((
                ProblemCode::EnvironmentMismatch.as_str(),
                found.title.clone(),
            ));
            problems.push(found);
        }
        // The other host could not say: neither a refusal nor a mismatch is established yet.
        (.., Some(Elsewhere::Undecided(wait))) => transient(wait, &mut problems),
        (Kind::InsufficientScope, ..) => {
            problems.push(problem(ProblemCode::MissingScope, c, now));
            event = Some((
                "missing_scope",
                format!("The probe found a missing scope: {}", c.title),
            ));
        }
        (Kind::AppNotAuthorized, ..) if c.action != Action::Reauthorize => {
            problems.push(problem(ProblemCode::MissingRole, c, now));
            event = Some((
                "missing_role",
                format!("The probe found a missing role or permission: {}", c.title),
            ));
        }
        (_, Blame::Connection, _) if c.action == Action::Reauthorize => {
            problems.push(problem(ProblemCode::GrantRefused, c, now));
            event = Some((
                "reauth_required",
                format!("The platform refused the grant: {}", c.title),
            ));
        }
        _ => {
            problems.push(Problem {
                code: ProblemCode::ProbeFailing,
                title: format!("The health probe failed: {}", c.title),
                fix: c.fix.clone(),
                since: now,
            });
        }
    }
    if let Some(p) = forecast(p, token, now) {
        problems.push(p);
    }
    // One line per problem the probe found that was not open before (a problem that stays open
    // is not news on every probe).
    for found in problems
        .iter()
        .filter(|x| !fresh.problems.iter().any(|old| old.code == x.code))
    {
        tracing::warn!(
            connection = %conn.id,
            provider = %conn.provider,
            kind = "probe_problem",
            problem = found.code.as_str(),
            verdict = c.kind.as_str(),
            title = %found.title,
            "the health probe found a problem"
        );
    }
    if let Err(e) = s.tokens.states().set_problems(&fresh, problems, now).await {
        tracing::warn!(connection = %conn.id, error = %e, "cannot record the probe's outcome");
    }
    if let Some((kind, message)) = event {
        let already = fresh.problems.iter().any(|x| {
            x.code.as_str() == kind || (kind == "reauth_required" && x.code.needs_person())
        });
        if !already {
            let e = NewEvent::new(Some(conn.id.clone()), now, kind, message)
                .with("provider", conn.provider.as_str());
            let _ = s.store.append_event(&e).await;
        }
    }
    next
}

/// `expires_soon`, when a token that cannot be renewed (or a refresh token) ends within the
/// provider's warning window.
fn forecast(p: &Provider, t: &TokenSet, now: DateTime<Utc>) -> Option<Problem> {
    let warn = TimeDelta::from_std(p.spec.refresh.warn_before).unwrap_or(TimeDelta::days(7));
    // Per token set: TikTok Business renews only the sets that came with a refresh token.
    let renews = p.spec.refresh.renews(t);
    let ending = if renews {
        t.refresh_expires_at
    } else {
        t.expires_at
    };
    let at = ending.filter(|at| *at - now <= warn)?;
    let days = (at - now).num_hours().max(0) as f64 / 24.0;
    let what = if renews {
        "The refresh token"
    } else {
        "The token"
    };
    Some(Problem {
        code: ProblemCode::ExpiresSoon,
        title: format!(
            "{what} expires in {days:.1} days ({})",
            at.format("%Y-%m-%d %H:%M UTC")
        ),
        fix: format!(
            "{} does not renew it without the person{}: re-authorize before {} with the connect link.",
            p.spec.name,
            if renews && !p.spec.refresh.refresh_token_extends {
                " (its end is counted from the consent, and refreshing does not move it)"
            } else {
                ""
            },
            at.format("%Y-%m-%d %H:%M UTC")
        ),
        since: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(environment: Environment) -> Connection {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        Connection {
            id: ConnectionId::parse("c-1").unwrap(),
            provider: "tiktok-business".parse().unwrap(),
            app: "main".parse().unwrap(),
            state: tokenwarden_core::connection::ConnectionState::Active,
            environment,
            region: None,
            api_base: "https://business-api.tiktok.com/open_api/v1.3".into(),
            account_ids: vec![],
            account: None,
            end_user: None,
            scopes: vec![],
            problems: vec![],
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn the_mismatch_names_the_app_both_environments_and_the_setting_to_change() {
        let since = DateTime::from_timestamp(1_800_000_100, 0).unwrap();
        for (configured, belongs) in [
            (Environment::Production, Environment::Sandbox),
            (Environment::Sandbox, Environment::Production),
        ] {
            let p =
                environment_mismatch("TikTok API for Business", &conn(configured), belongs, since);
            let (c, b) = (configured.as_str(), belongs.as_str());
            assert_eq!(p.code.as_str(), "environment_mismatch");
            assert_eq!(p.since, since);
            assert_eq!(
                p.title,
                format!(
                    "The token belongs to TikTok API for Business's {b} environment, but app main is configured for {c}"
                )
            );
            for needle in [
                format!("set environment = \"{b}\""),
                format!("keep environment = \"{c}\""),
                "provider = \"tiktok-business\" and id = \"main\"".to_string(),
                format!("client id and secret of a {c} app"),
                "connect again".to_string(),
                "Re-authorizing as configured now would only bring another".to_string(),
            ] {
                assert!(p.fix.contains(&needle), "{needle:?} in {:?}", p.fix);
            }
        }
    }

    /// TikTok Business renews only the sets that came with a refresh token: a set without one is
    /// forecast on its own expiry, a creator set on its refresh token's.
    #[test]
    fn a_tiktok_business_forecast_follows_what_the_token_set_can_do() {
        use tokenwarden_core::secret::Secret;
        let reg = tokenwarden_core::provider::Registry::builtin().unwrap();
        let p = reg.get("tiktok-business").unwrap();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let soon = now + TimeDelta::days(2);
        let mut set = TokenSet {
            access_token: Secret::new("a"),
            refresh_token: None,
            token_type: None,
            scopes: vec![],
            issued_at: now,
            expires_at: Some(soon),
            refresh_expires_at: None,
            token_secret: None,
        };
        let long_term = forecast(p, &set, now).expect("an expiring long-term token is forecast");
        assert!(
            long_term.title.starts_with("The token"),
            "{}",
            long_term.title
        );
        set.refresh_token = Some(Secret::new("r"));
        set.refresh_expires_at = Some(now + TimeDelta::days(300));
        assert!(
            forecast(p, &set, now).is_none(),
            "a creator token is refreshed"
        );
        set.refresh_expires_at = Some(soon);
        let creator = forecast(p, &set, now).unwrap();
        assert!(
            creator.title.starts_with("The refresh token"),
            "{}",
            creator.title
        );
    }
}
