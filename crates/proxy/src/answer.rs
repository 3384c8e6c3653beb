//! What tokenwarden answers over HTTP when it cannot hand out a token or reach its database: one
//! table, used by the proxy (`/proxy/…`) and by the server's API (`/v1/connections/{id}/token`
//! and the other routes), so a caller sees the same status, `error.code`, `fix`,
//! `reauthorize_url` and `Retry-After` for the same failure wherever it met it.
//!
//! The body is `{"error": {"code": …, "message": …, …extra}}`. Messages carry no secret: they are
//! [`TokenFailure`]'s and [`StoreError`]'s `Display`, which name rows and columns, never values.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use tokenwarden_core::classify::{Action, Kind};
use tokenwarden_engine::TokenFailure;
use tokenwarden_store::StoreError;
use url::Url;

/// Seconds a caller is told to wait when tokenwarden itself is what is unavailable.
const OWN_RETRY_SECS: u64 = 5;

/// One error answer: the status, the JSON body's fields, the wait, and the classifier's words for
/// it (the proxy sends them as `tokenwarden-kind` / `tokenwarden-action`).
#[derive(Debug, Clone)]
pub struct ErrorAnswer {
    /// The HTTP status.
    pub status: StatusCode,
    /// `error.code`: stable, for programs.
    pub code: &'static str,
    /// `error.message`: for people; never a secret.
    pub message: String,
    /// More fields of `error` (`fix`, `reauthorize_url`, …).
    pub extra: Map<String, Value>,
    /// `Retry-After`, in seconds, when waiting helps.
    pub retry_after: Option<u64>,
    /// The link that re-authorizes the connection, when that is the fix.
    pub reauthorize_url: Option<String>,
    /// What kind of failure it is.
    pub kind: Kind,
    /// What the caller should do.
    pub action: Action,
}

impl ErrorAnswer {
    /// An answer of `status` and `code` with nothing more; kind and action say "fix the request".
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ErrorAnswer {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
            retry_after: None,
            reauthorize_url: None,
            kind: Kind::InvalidRequest,
            action: Action::FixRequest,
        }
    }

    /// The same answer with the classifier's words `kind` and `action`.
    pub fn verdict(mut self, kind: Kind, action: Action) -> Self {
        self.kind = kind;
        self.action = action;
        self
    }

    /// The same answer with one more field in `error`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// The same answer asking the caller to wait `secs` seconds.
    pub fn wait(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Why no token could be handed out. `public_url` is where people re-authorize.
    pub fn token_failure(f: &TokenFailure, public_url: &Url) -> Self {
        let message = f.to_string();
        match f {
            TokenFailure::NotFound(_) => {
                ErrorAnswer::new(StatusCode::NOT_FOUND, "not_found", message)
                    .verdict(Kind::NotFound, Action::FixRequest)
            }
            TokenFailure::Pending(_) => ErrorAnswer::new(StatusCode::CONFLICT, "pending", message)
                .verdict(Kind::TokenInvalid, Action::Reauthorize),
            TokenFailure::ReauthRequired {
                connection, fix, ..
            } => {
                let url = reauthorize_url(public_url, connection.as_str());
                let mut a = ErrorAnswer::new(StatusCode::CONFLICT, "reauth_required", message)
                    .verdict(Kind::TokenRevoked, Action::Reauthorize)
                    .with("fix", fix.as_str())
                    .with("reauthorize_url", url.as_str());
                a.reauthorize_url = Some(url);
                a
            }
            TokenFailure::AppMisconfigured { fix, .. } => {
                ErrorAnswer::new(StatusCode::BAD_GATEWAY, "app_misconfigured", message)
                    .verdict(Kind::AppNotAuthorized, Action::FixRequest)
                    .with("fix", fix.as_str())
            }
            TokenFailure::Unavailable { retry_after, .. } => {
                ErrorAnswer::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
                    .verdict(Kind::ServiceUnavailable, Action::BackoffAndRetry)
                    .wait(retry_after.map_or(OWN_RETRY_SECS, |d| d.as_secs().max(1)))
            }
            TokenFailure::UnknownProvider(_) => ErrorAnswer::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unknown_provider",
                message,
            ),
            TokenFailure::Store(e) => ErrorAnswer::store(e),
        }
    }

    /// The database failed. A value that cannot be decrypted is 409 `decrypt_failed` (retrying
    /// cannot help; the row needs a person, and the fix says which); a database that refuses
    /// writes (full, read-only) is 503 with its own code; anything else is 503
    /// `store_unavailable`. Logged here, once, with the error (which holds no secret).
    pub fn store(e: &StoreError) -> Self {
        if let StoreError::DecryptFailed { .. } = e {
            tracing::error!(error = %e, "a stored secret cannot be decrypted");
            return ErrorAnswer::new(StatusCode::CONFLICT, "decrypt_failed", e.to_string())
                .verdict(Kind::TokenInvalid, Action::FixRequest)
                .with("fix", decrypt_fix(e));
        }
        let unavailable = |code, message: String| {
            ErrorAnswer::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
                .verdict(Kind::ServiceUnavailable, Action::BackoffAndRetry)
                .wait(OWN_RETRY_SECS)
        };
        if e.refuses_writes() {
            tracing::error!(error = %e, code = e.code(), "the database refuses writes");
            return unavailable(e.code(), e.to_string());
        }
        tracing::error!(error = %e, "store failure");
        unavailable(
            "store_unavailable",
            "tokenwarden cannot reach its database right now".to_string(),
        )
    }

    /// The JSON body: `{"error": {"code", "message", …extra}}`.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.clone().into());
        error.extend(self.extra.clone());
        json!({ "error": error })
    }
}

/// What to do about a value that cannot be decrypted.
pub fn decrypt_fix(e: &StoreError) -> &'static str {
    if e.undecryptable_connection().is_some() {
        "Re-authorize the connection (its new tokens replace the broken ones), or restart tokenwarden with the master key file it was written with."
    } else {
        "Restart tokenwarden with the master key file this value was written with, or enter the secret again (an app's secret comes back from the configuration at the next start)."
    }
}

/// The page where a person re-authorizes `connection`: `{public_url}/connections/{id}/reauthorize`.
pub fn reauthorize_url(public_url: &Url, connection: &str) -> String {
    let mut u = public_url.clone();
    let encoded: String = url::form_urlencoded::byte_serialize(connection.as_bytes()).collect();
    u.set_path(&format!("/connections/{encoded}/reauthorize"));
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokenwarden_core::id::ConnectionId;

    fn url() -> Url {
        Url::parse("https://tw.example/base?x=1#f").unwrap()
    }

    #[test]
    fn reauth_required_carries_the_fix_and_the_link_in_the_body_and_beside_it() {
        let f = TokenFailure::ReauthRequired {
            connection: ConnectionId::parse("acme:eu").unwrap(),
            title: "The grant was revoked".into(),
            fix: "Connect again".into(),
        };
        let a = ErrorAnswer::token_failure(&f, &url());
        assert_eq!(a.status, StatusCode::CONFLICT);
        assert_eq!(a.code, "reauth_required");
        let link = "https://tw.example/connections/acme%3Aeu/reauthorize";
        assert_eq!(a.reauthorize_url.as_deref(), Some(link));
        let body = a.body();
        assert_eq!(body["error"]["reauthorize_url"], link);
        assert_eq!(body["error"]["fix"], "Connect again");
        assert_eq!(
            body["error"]["message"],
            "connection acme:eu needs re-authorization: The grant was revoked"
        );
        assert_eq!(
            (a.kind, a.action),
            (Kind::TokenRevoked, Action::Reauthorize)
        );
    }

    #[test]
    fn waits_are_whole_seconds_and_never_zero() {
        let c = ConnectionId::parse("c1").unwrap();
        let unavailable = |retry_after| TokenFailure::Unavailable {
            connection: c.clone(),
            reason: "the platform is down".into(),
            retry_after,
        };
        let secs = |f| ErrorAnswer::token_failure(&f, &url()).retry_after;
        assert_eq!(secs(unavailable(None)), Some(OWN_RETRY_SECS));
        assert_eq!(secs(unavailable(Some(Duration::from_millis(200)))), Some(1));
        assert_eq!(secs(unavailable(Some(Duration::from_secs(90)))), Some(90));
        assert_eq!(secs(TokenFailure::Pending(c.clone())), None);
    }

    #[test]
    fn every_token_failure_has_its_own_code() {
        let c = ConnectionId::parse("c1").unwrap();
        let cases = [
            (TokenFailure::NotFound(c.clone()), 404, "not_found"),
            (TokenFailure::Pending(c.clone()), 409, "pending"),
            (
                TokenFailure::AppMisconfigured {
                    connection: c.clone(),
                    title: "t".into(),
                    fix: "f".into(),
                },
                502,
                "app_misconfigured",
            ),
            (
                TokenFailure::UnknownProvider("acme".into()),
                500,
                "unknown_provider",
            ),
        ];
        for (f, status, code) in cases {
            let a = ErrorAnswer::token_failure(&f, &url());
            assert_eq!((a.status.as_u16(), a.code), (status, code), "{f}");
        }
    }
}
