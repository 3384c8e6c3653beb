//! Alerts for people: a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat and
//! others take `{"text": …}`) told when a connection needs someone, with the fix in the message.
//!
//! What is alerted, once each:
//! - a transition to `reauth_required` (read from the events table after a cursor, so every
//!   refusal recorded by the engine, the monitor or another replica is seen exactly once here);
//! - a connection `degraded` for longer than [`AlertSettings::degraded_after`] (the problem's
//!   `since`, so a long outage alerts once, not every retry);
//! - an expiry forecast (`expires_soon`, raised by the monitor days ahead), once per token set;
//! - an app the platform refused (a wrong or rotated client secret), once per app problem.
//!
//! Delivery is best effort with a few retries; the webhook URL is a secret (anyone holding it can
//! post) and never appears in a log line or an error.
//!
//! Replicas: every replica may run a notifier; one at a time watches the database (the
//! [`crate::singleton::ALERTS`] lease, taken over when its holder dies), and every alert read from
//! the database is claimed there first ([`tokenwarden_store::Store::claim_alert`], one row per
//! condition and episode), so neither a second replica nor a restart sends it again. The
//! database refusing writes is the one alert each replica raises from its own memory.

use crate::ServerState;
use crate::metrics::ALERTS;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashSet;
use std::time::Duration;
use tokenwarden_core::connection::{Connection, ConnectionState, ProblemCode};
use tokenwarden_core::secret::Secret;
use url::Url;

/// Why an alert was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The platform refused the grant; a person must re-authorize.
    ReauthRequired,
    /// Transient failures have lasted longer than the threshold.
    Degraded,
    /// A token (or refresh token) that cannot be renewed ends soon.
    ExpiresSoon,
    /// The platform refused an app (a wrong or rotated client secret): every refresh of its
    /// connections fails until the app is fixed (hardening rule 5).
    AppRefused,
    /// The database refuses writes (a full disk, a read-only server): refreshed token sets are
    /// held in memory and refreshes wait.
    StoreRefusing,
}

impl Reason {
    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ReauthRequired => "reauth_required",
            Reason::Degraded => "degraded",
            Reason::ExpiresSoon => "expires_soon",
            Reason::AppRefused => "app_refused",
            Reason::StoreRefusing => "store_refusing",
        }
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Why.
    pub reason: Reason,
    /// The connection id (for [`Reason::AppRefused`], the app's id).
    pub connection: String,
    /// The platform's name.
    pub provider: String,
    /// What is wrong.
    pub title: String,
    /// What to do.
    pub fix: String,
    /// The re-authorization link (none for an app).
    pub reauthorize: Option<String>,
    /// The connection's dashboard page (the overview for an app).
    pub dashboard: String,
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped in text that is not a link.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Alert {
    /// The message text (Slack mrkdwn; readable as plain text elsewhere).
    pub fn text(&self) -> String {
        let (what, head) = match self.reason {
            Reason::ReauthRequired => ("connection", "needs re-authorization"),
            Reason::Degraded => ("connection", "has been degraded for a while"),
            Reason::ExpiresSoon => ("connection", "will stop working soon"),
            Reason::AppRefused => (
                "app",
                "was refused by the platform (its credentials or its configuration)",
            ),
            Reason::StoreRefusing => ("store", "refuses writes: token refreshes wait"),
        };
        let reauthorize = self
            .reauthorize
            .as_ref()
            .map(|l| format!("Re-authorize: <{l}|re-authorize page> · "))
            .unwrap_or_default();
        format!(
            ":warning: *tokenwarden*: {what} `{}` ({}) {head}.\n*What happened:* {}\n*Fix:* {}\n{reauthorize}Details: <{}|dashboard>",
            slack_escape(&self.connection),
            slack_escape(&self.provider),
            slack_escape(&self.title),
            slack_escape(&self.fix),
            self.dashboard,
        )
    }
}

/// Where alerts go.
pub trait Notifier: Send + Sync {
    /// Sends one alert; the error is plain words without the destination's URL.
    fn send(&self, alert: &Alert) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

/// A Slack-compatible incoming webhook.
#[derive(Debug, Clone)]
pub struct SlackWebhook {
    url: Secret,
    http: reqwest::Client,
}

impl SlackWebhook {
    /// A notifier posting to `url`: https, or http to a loopback address (a local relay, tests).
    pub fn new(url: &Secret) -> Result<SlackWebhook, String> {
        let parsed = Url::parse(url.expose())
            .map_err(|e| format!("the alert webhook URL is not a URL ({e})"))?;
        let loopback = match parsed.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        if !(parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback)) {
            return Err(
                "the alert webhook URL must be https (plain http only to a loopback address)"
                    .into(),
            );
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(SlackWebhook {
            url: url.clone(),
            http,
        })
    }
}

impl Notifier for SlackWebhook {
    async fn send(&self, alert: &Alert) -> Result<(), String> {
        let body = serde_json::json!({ "text": alert.text() });
        match self.http.post(self.url.expose()).json(&body).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("the webhook answered HTTP {}", r.status().as_u16())),
            // reqwest's error Display can carry the URL, which is the secret here.
            Err(e) if e.is_timeout() => Err("the webhook did not answer in time".into()),
            Err(_) => Err("the webhook could not be reached".into()),
        }
    }
}

/// When to alert.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Alert when a connection has been degraded this long (clock time).
    pub degraded_after: TimeDelta,
    /// How often (real time) to look for something to alert.
    pub poll: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            degraded_after: TimeDelta::minutes(30),
            poll: Duration::from_secs(15),
        }
    }
}

/// What the watcher remembers between passes.
#[derive(Debug, Default)]
pub struct Watcher {
    cursor: i64,
    /// (connection, reason, what makes it this occurrence) already alerted, for the conditions read
    /// from the connections; refusals are read once each from the events after `cursor`.
    sent: HashSet<(String, Reason, String)>,
    /// Alerts that failed to send, with their claim in the database and attempts so far.
    retry: Vec<(Alert, Option<String>, u32)>,
}

const MAX_ATTEMPTS: u32 = 5;

impl Watcher {
    /// Starts after the last event already in the store (history is not re-alerted).
    pub async fn start(s: &ServerState) -> Watcher {
        let mut w = Watcher::default();
        loop {
            match s.store.list_events(None, w.cursor, 1000).await {
                Ok(batch) => {
                    let Some(last) = batch.last() else { break };
                    w.cursor = last.id;
                    if batch.len() < 1000 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "alerts: cannot read events; starting from the beginning");
                    break;
                }
            }
        }
        w
    }

    fn alert(s: &ServerState, c: &Connection, reason: Reason, title: &str, fix: &str) -> Alert {
        let mut dashboard = s.public_url.clone();
        dashboard.set_path(&format!("/connections/{}", c.id));
        Alert {
            reason,
            connection: c.id.to_string(),
            provider: s
                .providers
                .get(c.provider.as_str())
                .map_or_else(|| c.provider.to_string(), |p| p.spec.name.clone()),
            title: title.to_string(),
            fix: fix.to_string(),
            reauthorize: Some(s.reauthorize_link(c.id.as_str())),
            dashboard: dashboard.to_string(),
        }
    }

    /// Claims `key` in the database for this replica: true when no replica (this one before a
    /// restart included) has sent it.
    async fn claim(s: &ServerState, key: &str, now: DateTime<Utc>) -> bool {
        match s.store.claim_alert(key, s.tokens.owner(), now).await {
            Ok(first) => first,
            Err(e) => {
                tracing::warn!(error = %e, "alerts: cannot record an alert as sent; trying again next pass");
                false
            }
        }
    }

    /// What should be alerted now (and is remembered as alerted), with the key each was
    /// claimed under in the database.
    pub async fn due(&mut self, s: &ServerState, settings: &AlertSettings) -> Vec<Alert> {
        self.due_claimed(s, settings)
            .await
            .into_iter()
            .map(|(a, _)| a)
            .collect()
    }

    async fn due_claimed(
        &mut self,
        s: &ServerState,
        settings: &AlertSettings,
    ) -> Vec<(Alert, Option<String>)> {
        let now: DateTime<Utc> = s.clock.now();
        let mut out: Vec<(Alert, Option<String>)> = Vec::new();
        // Transitions to reauth_required, from the events table.
        loop {
            let batch = match s.store.list_events(None, self.cursor, 500).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "alerts: cannot read events");
                    break;
                }
            };
            let Some(last) = batch.last() else { break };
            self.cursor = last.id;
            for e in batch.iter().filter(|e| e.kind == "reauth_required") {
                let Some(id) = &e.connection else { continue };
                let Ok(Some(c)) = s.store.get_connection(id).await else {
                    continue;
                };
                if c.state != ConnectionState::ReauthRequired {
                    continue; // already re-authorized
                }
                let p = c
                    .problems
                    .iter()
                    .find(|p| p.code.needs_person())
                    .or(c.problems.first());
                let (title, fix) = p.map_or_else(
                    || {
                        (
                            e.message.clone(),
                            "Re-authorize the connection.".to_string(),
                        )
                    },
                    |p| (p.title.clone(), p.fix.clone()),
                );
                // Once per refusal: the episode is the problem's start (two events of one refusal,
                // from two replicas, are one alert), else the event.
                let key = format!(
                    "reauth_required/{}/{}",
                    c.id,
                    p.map_or_else(
                        || format!("event{}", e.id),
                        |p| p.since.timestamp_millis().to_string()
                    )
                );
                if Self::claim(s, &key, now).await {
                    out.push((
                        Self::alert(s, &c, Reason::ReauthRequired, &title, &fix),
                        Some(key),
                    ));
                }
            }
            if batch.len() < 500 {
                break;
            }
        }
        // Sustained degradation and expiry forecasts, from the connections' open problems.
        let conns = match s.store.list_connections().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "alerts: cannot list connections");
                return out;
            }
        };
        let mut current = HashSet::new();
        for c in &conns {
            for p in &c.problems {
                let key = match p.code {
                    ProblemCode::RefreshFailing | ProblemCode::ProbeFailing
                        if c.state == ConnectionState::Degraded
                            && now - p.since >= settings.degraded_after =>
                    {
                        (
                            c.id.to_string(),
                            Reason::Degraded,
                            p.since.timestamp_millis().to_string(),
                        )
                    }
                    // The monitor rewrites the problem at every probe (since, days left); the
                    // occurrence is the token set whose end is forecast.
                    ProblemCode::ExpiresSoon => {
                        let ends = match s.store.get_tokens(&c.id).await {
                            Ok(Some(t)) => {
                                format!("{:?}/{:?}", t.set.expires_at, t.set.refresh_expires_at)
                            }
                            _ => p.code.as_str().to_owned(),
                        };
                        (c.id.to_string(), Reason::ExpiresSoon, ends)
                    }
                    _ => continue,
                };
                current.insert(key.clone());
                if !self.sent.contains(&key) {
                    let claim = format!("{}/{}/{}", key.1.as_str(), key.0, key.2);
                    if !Self::claim(s, &claim, now).await {
                        // Sent before (by this replica before a restart, or another), or not
                        // recorded: not sent now.
                        continue;
                    }
                    self.sent.insert(key.clone());
                    let title = match key.1 {
                        Reason::Degraded => format!(
                            "{} (degraded since {})",
                            p.title,
                            p.since.format("%Y-%m-%d %H:%M UTC")
                        ),
                        _ => p.title.clone(),
                    };
                    let fix = match key.1 {
                        Reason::Degraded => format!(
                            "{} If it lasts, check the platform's status page and tokenwarden's network path to it.",
                            p.fix
                        ),
                        _ => p.fix.clone(),
                    };
                    out.push((Self::alert(s, c, key.1, &title, &fix), Some(claim)));
                }
            }
        }
        out.extend(
            self.store_refusing(s, &mut current)
                .into_iter()
                .map(|a| (a, None)),
        );
        // Apps the platform refused, once per open problem.
        for app in s.store.list_apps(None).await.unwrap_or_default() {
            let problems = match s.store.app_problems(&app.provider, &app.id).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "alerts: cannot read app problems");
                    continue;
                }
            };
            for p in problems {
                let key = (
                    format!("app:{}/{}", app.provider, app.id),
                    Reason::AppRefused,
                    format!("{}@{}", p.code, p.since.timestamp_millis()),
                );
                current.insert(key.clone());
                if self.sent.contains(&key) {
                    continue;
                }
                let claim = format!("{}/{}/{}", key.1.as_str(), key.0, key.2);
                if !Self::claim(s, &claim, now).await {
                    continue;
                }
                self.sent.insert(key);
                {
                    out.push((
                        Alert {
                            reason: Reason::AppRefused,
                            connection: app.id.to_string(),
                            provider: s.providers.get(app.provider.as_str()).map_or_else(
                                || app.provider.to_string(),
                                |pr| pr.spec.name.clone(),
                            ),
                            title: p.title.clone(),
                            fix: p.fix.clone(),
                            reauthorize: None,
                            dashboard: s.public_url.to_string(),
                        },
                        Some(claim),
                    ));
                }
            }
        }
        // Forget occurrences that are over (or whose connection is gone), so a later one alerts.
        self.sent.retain(|k| current.contains(k));
        out
    }

    /// The database refusing writes: nothing can be recorded on a connection (nor an alert
    /// claimed), so each replica reads it from its own token service's memory. Once per episode.
    fn store_refusing(
        &mut self,
        s: &ServerState,
        current: &mut HashSet<(String, Reason, String)>,
    ) -> Vec<Alert> {
        let held = s.tokens.held_in_memory();
        let mut out = Vec::new();
        if held > 0 {
            let key = ("database".to_string(), Reason::StoreRefusing, String::new());
            current.insert(key.clone());
            if self.sent.insert(key) {
                out.push(Alert {
                    reason: Reason::StoreRefusing,
                    connection: "database".into(),
                    provider: "tokenwarden".into(),
                    title: format!(
                        "The database refuses writes: {held} refreshed token set(s) are held in memory, and refreshes wait"
                    ),
                    fix: "Free space on the database's disk, or make the database writable again (see the store_full / store_read_only log lines). tokenwarden stores the held sets as soon as it can; until then, do not restart it: sets held in memory are lost on a restart.".into(),
                    reauthorize: None,
                    dashboard: s.public_url.to_string(),
                });
            }
        }
        out
    }

    /// One pass: finds what is due and sends it (and what failed before).
    pub async fn pass<N: Notifier>(&mut self, s: &ServerState, n: &N, settings: &AlertSettings) {
        let due = self.due_claimed(s, settings).await;
        self.send(s, n, due).await;
    }

    /// A pass of a replica that does not hold the notifier's lease: only what this replica
    /// alone knows (the database refusing its writes), and retries.
    pub async fn pass_local<N: Notifier>(&mut self, s: &ServerState, n: &N) {
        let mut current: HashSet<(String, Reason, String)> = self
            .sent
            .iter()
            .filter(|k| k.1 != Reason::StoreRefusing)
            .cloned()
            .collect();
        let due = self.store_refusing(s, &mut current);
        self.sent.retain(|k| current.contains(k));
        self.send(s, n, due.into_iter().map(|a| (a, None)).collect())
            .await;
    }

    async fn send<N: Notifier>(
        &mut self,
        s: &ServerState,
        n: &N,
        due: Vec<(Alert, Option<String>)>,
    ) {
        let mut todo: Vec<(Alert, Option<String>, u32)> = std::mem::take(&mut self.retry);
        todo.extend(due.into_iter().map(|(a, k)| (a, k, 0)));
        for (alert, claim, attempts) in todo {
            match n.send(&alert).await {
                Ok(()) => {
                    metrics::counter!(ALERTS, "reason" => alert.reason.as_str(), "outcome" => "sent")
                        .increment(1);
                    tracing::info!(connection = %alert.connection, provider = %alert.provider, kind = "alert_sent", reason = alert.reason.as_str(), "alert sent");
                }
                Err(e) => {
                    metrics::counter!(ALERTS, "reason" => alert.reason.as_str(), "outcome" => "failed")
                        .increment(1);
                    if attempts + 1 < MAX_ATTEMPTS {
                        tracing::warn!(connection = %alert.connection, provider = %alert.provider, kind = "alert_failed", reason = alert.reason.as_str(), error = %e, "alert not sent; will retry");
                        self.retry.push((alert, claim, attempts + 1));
                    } else {
                        tracing::error!(connection = %alert.connection, provider = %alert.provider, kind = "alert_failed", reason = alert.reason.as_str(), error = %e, "alert not sent; giving up");
                        // Never sent: give the claim back, so the replica that watches next may.
                        if let Some(key) = claim
                            && let Err(e) = s.store.unclaim_alert(&key).await
                        {
                            tracing::warn!(error = %e, "alerts: cannot give back an unsent alert's claim");
                        }
                    }
                }
            }
        }
    }
}

/// Runs the notifier until `stop` changes.
pub async fn run<N: Notifier>(
    s: ServerState,
    notifier: N,
    settings: AlertSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut w = Watcher::start(&s).await;
    // Renewed at every pass or so; taken over within three polls (at least 3 s) of its holder
    // dying.
    let mut lease = crate::singleton::JobLease::new(
        s.store.clone(),
        crate::singleton::ALERTS,
        s.tokens.owner(),
        (settings.poll * 3).max(Duration::from_secs(3)),
    );
    loop {
        if *stop.borrow() {
            lease.release().await;
            return;
        }
        if lease.held().await {
            w.pass(&s, &notifier, &settings).await;
        } else {
            w.pass_local(&s, &notifier).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.poll) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_carries_the_fix_and_escapes_platform_text() {
        let a = Alert {
            reason: Reason::ReauthRequired,
            connection: "acme".into(),
            provider: "Snapchat Marketing API".into(),
            title: "The grant was revoked <by the user>".into(),
            fix: "Re-authorize & retry".into(),
            reauthorize: Some("https://t.example.com/connections/acme/reauthorize".into()),
            dashboard: "https://t.example.com/connections/acme".into(),
        };
        let t = a.text();
        assert!(t.contains("needs re-authorization"));
        assert!(t.contains("&lt;by the user&gt;"));
        assert!(t.contains("Re-authorize &amp; retry"));
        assert!(
            t.contains("<https://t.example.com/connections/acme/reauthorize|re-authorize page>")
        );
    }

    #[test]
    fn only_https_or_loopback_http_is_accepted() {
        assert!(SlackWebhook::new(&Secret::new("https://hooks.slack.com/services/x")).is_ok());
        assert!(SlackWebhook::new(&Secret::new("http://127.0.0.1:9/hook")).is_ok());
        let e = SlackWebhook::new(&Secret::new(
            "http://hooks.example.com/services/T0/secretpart",
        ))
        .unwrap_err();
        assert!(!e.contains("secretpart"), "{e}");
        assert!(SlackWebhook::new(&Secret::new("not a url")).is_err());
    }
}
