//! What a platform sends an app when a user removes it (Meta's deauthorize callback, Threads'
//! uninstall callback, TikTok's `authorization.removed` webhook), sent to the app's
//! `deauthorize_url` exactly as the platform builds it, signed with the app's current secret.
//!
//! The first attempt is made before the revocation is answered, so whoever revoked (a test, a
//! person following the README) sees the receiver's answer in the admin API's reply; a failed
//! attempt (no answer, 5xx, 429) is retried in the background a few times, with the same
//! signature, as TikTok retries ("at least once delivery"). Nothing here logs the signed body.

use crate::Sandbox;
use crate::counters::Counters;
use crate::ledger::Grant;
use crate::provider::DeauthorizeCallback;
use serde_json::{Value, json};
use std::time::Duration;
use tokenwarden_core::platform_callback::{meta_signed_request, tiktok_signature};

/// Waits before the background retries of a failed first attempt (real time).
const RETRIES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(25),
];

/// One callback, ready to send.
#[derive(Clone)]
struct Message {
    url: String,
    content_type: &'static str,
    body: String,
    /// The signature header, for kinds that sign in one.
    header: Option<(&'static str, String)>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The platform's callback for `grant`'s removal, as it would build it now; `None` when the
/// platform sends none or the app has no callback URL.
fn message(sb: &Sandbox, grant: &Grant) -> Option<Message> {
    let kind = grant.provider.deauthorize_callback()?;
    let url = grant.app.deauthorize_url()?;
    let now = sb.now().timestamp();
    let Some(secret) = grant.app.secret() else {
        tracing::warn!(
            provider = %grant.provider.id(),
            app = %grant.app.client_id,
            "no removal callback sent: the app's secret was rotated before this sandbox restarted, and only its digest was kept"
        );
        return None;
    };
    Some(match kind {
        DeauthorizeCallback::SignedRequest => {
            // `user_id` is the id `/me` answers for this app (Meta: the app-scoped user id).
            let payload = json!({
                "algorithm": "HMAC-SHA256",
                "issued_at": now,
                "user_id": grant.numeric_id("user").to_string(),
            })
            .to_string();
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair(
                    "signed_request",
                    &meta_signed_request(secret.as_bytes(), &payload),
                )
                .finish();
            Message {
                url,
                content_type: "application/x-www-form-urlencoded",
                body,
                header: None,
            }
        }
        DeauthorizeCallback::TiktokWebhook => {
            // developers.tiktok.com `webhooks-events`: `content` is a serialized JSON string;
            // reason 1 = "User disconnects from TikTok app".
            let body = json!({
                "client_key": grant.app.client_id,
                "event": "authorization.removed",
                "create_time": now,
                "user_openid": crate::platform::uuid_like(grant, "open_id"),
                "content": json!({"reason": 1}).to_string(),
            })
            .to_string();
            let header = tiktok_signature(secret.as_bytes(), now, body.as_bytes());
            Message {
                url,
                content_type: "application/json",
                body,
                header: Some(("TikTok-Signature", header)),
            }
        }
    })
}

/// Whether to try again after this answer.
enum Outcome {
    Delivered(u16),
    Refused(u16),
    Failed(String),
}

async fn send(sb: &Sandbox, m: &Message) -> Outcome {
    let Some(http) = sb.http() else {
        return Outcome::Failed("the sandbox has no HTTP client".into());
    };
    let mut req = http
        .post(&m.url)
        .header("content-type", m.content_type)
        .body(m.body.clone());
    if let Some((name, value)) = &m.header {
        req = req.header(*name, value);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Outcome::Delivered(r.status().as_u16()),
        Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
            Outcome::Failed(format!("HTTP {}", r.status().as_u16()))
        }
        Ok(r) => Outcome::Refused(r.status().as_u16()),
        // Without the URL: reqwest's text names it, and it is in the reply already.
        Err(e) => Outcome::Failed(
            if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "the request failed"
            }
            .to_string(),
        ),
    }
}

fn count(sb: &Sandbox, grant: &Grant, outcome: &Outcome) {
    let c = sb.counters().of(grant.provider);
    match outcome {
        Outcome::Delivered(_) => Counters::bump(&c.deauthorize_callbacks_delivered),
        Outcome::Refused(_) | Outcome::Failed(_) => Counters::bump(&c.deauthorize_callbacks_failed),
    }
}

/// Sends the callback for `grant`'s removal, if the platform sends one and the app has a URL:
/// what happened, for the admin API's reply (`{"url", "status"}` or `{"url", "error"}`).
pub(crate) async fn announce(sb: &Sandbox, grant: &std::sync::Arc<Grant>) -> Option<Value> {
    let m = message(sb, grant)?;
    let first = send(sb, &m).await;
    count(sb, grant, &first);
    let reply = match &first {
        Outcome::Delivered(status) => json!({"url": m.url, "status": status}),
        Outcome::Refused(status) => {
            tracing::warn!(provider = %grant.provider, url = %m.url, status, "the app refused the deauthorize callback");
            json!({"url": m.url, "status": status})
        }
        Outcome::Failed(why) => {
            tracing::warn!(provider = %grant.provider, url = %m.url, error = %why, "the deauthorize callback failed; retrying in the background");
            json!({"url": m.url, "error": why, "retrying": true})
        }
    };
    if let Outcome::Failed(_) = first {
        let (sb, grant) = (sb.clone(), grant.clone());
        tokio::spawn(async move {
            for wait in RETRIES {
                tokio::time::sleep(wait).await;
                let outcome = send(&sb, &m).await;
                count(&sb, &grant, &outcome);
                if !matches!(outcome, Outcome::Failed(_)) {
                    return;
                }
            }
            tracing::warn!(provider = %grant.provider, url = %m.url, "the deauthorize callback was given up");
        });
    }
    Some(reply)
}
