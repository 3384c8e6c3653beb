//! Webhook endpoints and their delivery.
//!
//! State changes are written to the outbox by the store in the same transaction as the change
//! (see `Store::set_state`), so a crash loses none. The [`run`] loop claims due deliveries, signs
//! them the Standard Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature`), and
//! posts them with its own HTTP client, so a slow receiver never holds up a refresh. A failure is
//! retried on the Standard Webhooks schedule under the same `webhook-id`; after the last attempt
//! the delivery is dead and stays in the log. URLs obey the SSRF rules (hardening rule 16): https
//! only, no credentials, no internal addresses, checked when an endpoint is created and again
//! after name resolution at every delivery; redirects are never followed.

use crate::ServerState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{Body, PathParam, Query};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden_core::clock::{Clock as _, SystemClock};
use tokenwarden_core::secret::Secret;
use tokenwarden_core::webhook::{self, Envelope};
use tokenwarden_store::{Delivery, WebhookEndpoint};

/// How long a claimed delivery is ours before another replica may take it.
const CLAIM: Duration = Duration::from_secs(60);
/// How long one delivery attempt may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The waits between attempts (Standard Webhooks' suggested schedule); then the delivery is dead.
const SCHEDULE: [i64; 7] = [5, 300, 1800, 7200, 18000, 36000, 36000];

/// Where webhooks may go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// Allow `http` and private, loopback and link-local addresses (local receivers, tests, the
    /// sandbox). Off by default.
    pub allow_private: bool,
}

/// The webhook routes (admin keys only).
pub fn routes() -> Router<ServerState> {
    Router::new()
        .route("/v1/webhooks", get(list).post(create))
        .route("/v1/webhooks/{id}", get(one).delete(delete))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries))
        .method_not_allowed_fallback(crate::error::method_not_allowed)
}

fn view(w: &WebhookEndpoint) -> Value {
    json!({"id": w.id, "url": w.url, "enabled": w.enabled, "created_at": w.created_at})
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("there is no webhook endpoint {id}"),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    url: String,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// Creates an endpoint. The answer holds its signing secret, the only time it is shown.
async fn create(
    State(s): State<ServerState>,
    caller: Caller,
    Body(b): Body<CreateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.admin()?;
    // A URL that could never be one (unparsable, another scheme, user info, a fragment, no host)
    // is malformed: 400. One that only this daemon's policy refuses (http, or a private address,
    // without [webhooks] allow_private) is 403.
    webhook::check_url(&b.url, true).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_webhook_url",
            format!("this webhook URL cannot be used: {e}"),
        )
    })?;
    let url = webhook::check_url(&b.url, s.webhooks.allow_private).map_err(|e| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "webhook_url_not_allowed",
            format!("this webhook URL is not allowed here: {e}; set [webhooks] allow_private = true for receivers on this host or your network"),
        )
    })?;
    let secret = Secret::new(webhook::secret_from_bytes(&rand::random()));
    let endpoint = WebhookEndpoint {
        id: format!("wh_{}", hex(&rand::random::<[u8; 8]>())),
        url: url.to_string(),
        signing_secret: secret.clone(),
        enabled: b.enabled,
        created_at: s.clock.now(),
    };
    s.store.put_webhook(&endpoint).await?;
    let mut v = view(&endpoint);
    v["secret"] = Value::String(secret.expose().to_owned());
    v["note"] = Value::String(
        "Keep the secret: it verifies the webhook-signature header and is not shown again.".into(),
    );
    Ok((StatusCode::CREATED, Json(v)))
}

async fn list(State(s): State<ServerState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let all: Vec<Value> = s.store.list_webhooks().await?.iter().map(view).collect();
    Ok(Json(json!({ "webhooks": all })))
}

async fn one(
    State(s): State<ServerState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let w = s
        .store
        .get_webhook(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(view(&w)))
}

async fn delete(
    State(s): State<ServerState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    if !s.store.delete_webhook(&id).await? {
        return Err(not_found(&id));
    }
    Ok(Json(json!({"deleted": true, "id": id})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    limit: Option<i64>,
}

/// The delivery log, newest first: status, attempts, next attempt and the last error.
async fn deliveries(
    State(s): State<ServerState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    Query(q): Query<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.admin()?;
    let limit = crate::extract::limit(q.limit, 50, 500)?;
    if s.store.get_webhook(&id).await?.is_none() {
        return Err(not_found(&id));
    }
    let log = s.store.list_deliveries(&id, limit).await?;
    let out: Vec<Value> = log
        .iter()
        .map(|d| {
            let kind = serde_json::from_str::<Value>(&d.payload)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_owned));
            json!({
                "id": d.id,
                "type": kind,
                "status": format!("{:?}", d.status).to_lowercase(),
                "attempts": d.attempts,
                "next_attempt_at": d.next_attempt_at,
                "last_error": d.last_error,
                "created_at": d.created_at,
            })
        })
        .collect();
    Ok(Json(json!({ "deliveries": out })))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Resolves names and keeps only public addresses, so a name cannot point a delivery inside the
/// network (DNS rebinding included: the address checked is the address connected to).
#[derive(Debug)]
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| webhook::is_public(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("{host} resolves only to internal addresses").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client deliveries go through: no redirects, bounded time, public addresses only unless
/// the policy allows private ones.
pub fn client(policy: WebhookPolicy) -> reqwest::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(TIMEOUT)
        .user_agent(concat!("tokenwarden-webhooks/", env!("CARGO_PKG_VERSION")));
    if !policy.allow_private {
        b = b.dns_resolver(Arc::new(PublicOnly));
    }
    b.build()
}

/// Delivers due webhooks until `stop` turns true. `poll` is how often (real time) it looks when
/// it has been idle.
pub async fn run(s: ServerState, poll: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    let client = match client(s.webhooks) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e.without_url(), "webhooks are off: no HTTP client");
            return;
        }
    };
    loop {
        if *stop.borrow() {
            return;
        }
        let claimed = match s.store.claim_due_deliveries(s.clock.now(), 16, CLAIM).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the webhook outbox");
                Vec::new()
            }
        };
        let idle = claimed.is_empty();
        let mut sends = tokio::task::JoinSet::new();
        for d in claimed {
            let (s, client) = (s.clone(), client.clone());
            sends.spawn(async move { deliver(&s, &client, d).await });
        }
        while sends.join_next().await.is_some() {}
        if idle {
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }
}

/// What one attempt came to.
enum Outcome {
    Delivered,
    Failed(String),
    /// Can never succeed (the endpoint is gone or its URL is refused).
    Hopeless(String),
}

async fn deliver(s: &ServerState, client: &reqwest::Client, d: Delivery) {
    let outcome = attempt(s, client, &d).await;
    let label = match &outcome {
        Outcome::Delivered => "delivered",
        Outcome::Failed(_) => "failed",
        Outcome::Hopeless(_) => "dead",
    };
    metrics::counter!(crate::metrics::WEBHOOK_DELIVERIES, "outcome" => label).increment(1);
    let now = s.clock.now();
    let about = About::of(&d);
    let (connection, provider, event) = (&about.connection, &about.provider, &about.event);
    let result = match outcome {
        Outcome::Delivered => {
            tracing::info!(%connection, %provider, kind = "webhook_delivered", %event, webhook = %d.webhook, delivery = %d.id, attempts = d.attempts, "webhook delivered");
            s.store.mark_delivered(&d.id).await
        }
        Outcome::Failed(why) => {
            let retry = retry_at(now, d.attempts);
            match retry {
                Some(at) => {
                    tracing::warn!(%connection, %provider, kind = "webhook_failed", %event, webhook = %d.webhook, delivery = %d.id, attempts = d.attempts, error = %why, retry_at = %at, "webhook delivery failed; will retry")
                }
                None => {
                    tracing::warn!(%connection, %provider, kind = "webhook_failed", %event, webhook = %d.webhook, delivery = %d.id, attempts = d.attempts, error = %why, "webhook delivery failed for the last time")
                }
            }
            s.store.mark_failed(&d.id, &why, retry).await
        }
        Outcome::Hopeless(why) => {
            tracing::warn!(%connection, %provider, kind = "webhook_failed", %event, webhook = %d.webhook, delivery = %d.id, error = %why, "webhook delivery cannot succeed");
            s.store.mark_failed(&d.id, &why, None).await
        }
    };
    if let Err(e) = result {
        // The claim runs out and the delivery is tried again: at least once, never lost.
        tracing::warn!(delivery = %d.id, error = %e, "could not record a webhook outcome");
    }
}

/// What a delivery is about, for its log lines: read from the payload the outbox stored (ids and
/// the event type only; the payload carries no secret, and only these fields are logged).
struct About {
    connection: String,
    provider: String,
    event: String,
}

impl About {
    fn of(d: &Delivery) -> About {
        let v: Value = serde_json::from_str(&d.payload).unwrap_or(Value::Null);
        let field = |v: &Value| v.as_str().unwrap_or("-").to_string();
        About {
            connection: field(&v["data"]["connection_id"]),
            provider: field(&v["data"]["provider"]),
            event: field(&v["type"]),
        }
    }
}

/// When to try again after `attempts` attempts, or `None` to give up.
fn retry_at(now: DateTime<Utc>, attempts: i64) -> Option<DateTime<Utc>> {
    let i = usize::try_from(attempts.max(1) - 1).ok()?;
    SCHEDULE.get(i).map(|secs| now + TimeDelta::seconds(*secs))
}

async fn attempt(s: &ServerState, client: &reqwest::Client, d: &Delivery) -> Outcome {
    let endpoint = match s.store.get_webhook(&d.webhook).await {
        Ok(Some(e)) => e,
        Ok(None) => return Outcome::Hopeless("the endpoint was deleted".into()),
        Err(e) => return Outcome::Failed(format!("store: {e}")),
    };
    if !endpoint.enabled {
        return Outcome::Hopeless("the endpoint is disabled".into());
    }
    let url = match webhook::check_url(&endpoint.url, s.webhooks.allow_private) {
        Ok(u) => u,
        Err(e) => return Outcome::Hopeless(format!("the URL is refused: {e}")),
    };
    let Ok(key) = webhook::secret_key(endpoint.signing_secret.expose()) else {
        return Outcome::Hopeless("the endpoint's signing secret is unusable".into());
    };
    let body = finish_body(s, &d.payload);
    // Receivers compare the timestamp with their own clock, so it is real time even when the
    // daemon runs on a scaled clock.
    let ts = SystemClock.now().timestamp();
    let signature = webhook::sign(&key, &d.id, ts, &body);
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &d.id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => Outcome::Delivered,
        Ok(r) if r.status().is_redirection() => Outcome::Failed(format!(
            "HTTP {} from the endpoint (redirects are not followed)",
            r.status().as_u16()
        )),
        Ok(r) => Outcome::Failed(format!("HTTP {} from the endpoint", r.status().as_u16())),
        Err(e) if e.is_timeout() => Outcome::Failed("the endpoint did not answer in time".into()),
        Err(e) if e.is_connect() => Outcome::Failed(format!(
            "could not connect to the endpoint: {}",
            root_cause(&e)
        )),
        Err(e) => Outcome::Failed(format!("sending failed: {}", e.without_url())),
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Adds what only the daemon knows (the re-authorization link) to a stored body. Deterministic,
/// so every retry sends the same bytes.
fn finish_body(s: &ServerState, stored: &str) -> String {
    let Ok(mut env) = serde_json::from_str::<Envelope>(stored) else {
        return stored.to_owned();
    };
    if env.data.to == "reauth_required" {
        env.data.reauthorize_url = Some(s.reauthorize_link(&env.data.connection_id));
    }
    env.to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_the_schedule_then_stop() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(retry_at(now, 1), Some(now + TimeDelta::seconds(5)));
        assert_eq!(retry_at(now, 2), Some(now + TimeDelta::minutes(5)));
        assert_eq!(retry_at(now, 7), Some(now + TimeDelta::hours(10)));
        assert_eq!(retry_at(now, 8), None);
    }
}

#[cfg(test)]
mod resolver_tests {
    use super::*;
    use reqwest::dns::Resolve;

    #[tokio::test]
    async fn names_that_resolve_inside_are_refused() {
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let e = match PublicOnly.resolve(name).await {
            Ok(_) => panic!("localhost resolved through the public-only resolver"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("internal addresses"), "{e}");
    }

    /// What a name resolves to is checked with the same rules as a URL's address: IPv6 forms
    /// that embed an internal IPv4 address (6to4, Teredo, NAT64, mapped) are dropped, so a
    /// name whose AAAA record is one of them cannot reach inside. (The resolver is handed the
    /// address as a name here; `lookup_host` returns it as it is, without DNS.)
    #[tokio::test]
    async fn resolved_addresses_that_embed_internal_ipv4_are_refused() {
        for inside in [
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
            "2001:0:a00:1:8000:63bf:a247:27dd",
            "64:ff9b::a00:1",
            "::ffff:0:169.254.169.254",
        ] {
            let name: reqwest::dns::Name = inside.parse().unwrap();
            match PublicOnly.resolve(name).await {
                Ok(addrs) => panic!(
                    "{inside} resolved to {:?}",
                    addrs.collect::<Vec<SocketAddr>>()
                ),
                Err(e) => assert!(e.to_string().contains("internal addresses"), "{e}"),
            }
        }
        let name: reqwest::dns::Name = "2002:5db8:d822::1".parse().unwrap();
        let kept: Vec<SocketAddr> = PublicOnly.resolve(name).await.unwrap().collect();
        assert_eq!(kept.len(), 1, "6to4 of a public address is kept");
    }
}
