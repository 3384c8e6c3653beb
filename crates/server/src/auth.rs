//! Who calls the API: the API key in `Authorization: Bearer tw_…`, its role, and the limit on
//! refused keys per client address.

use crate::ServerState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use tokenwarden_store::{ApiKeyInfo, ApiKeyRole};

/// The authenticated caller. Refused keys count against the client's address
/// ([`ClientLimits::api_key_failures`](crate::limits::ClientLimits)): past the limit the address
/// gets `429 too_many_failures` with `Retry-After` until the window passes, even with a good key
/// (a locked address cannot tell good keys from bad). A request without a key is not a guess and
/// is not counted.
#[derive(Debug)]
pub struct Caller(pub ApiKeyInfo);

impl FromRequestParts<ServerState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ServerState) -> Result<Self, ApiError> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send an API key as 'Authorization: Bearer tw_…'",
            )
        };
        let client = s.limits.client(&parts.headers, &parts.extensions);
        let failures = &s.limits.api_key_failures;
        if let Some(wait) = failures.locked(&client.key(), s.clock.now()) {
            let secs = crate::limits::retry_secs(wait);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                format!("too many refused API keys came from this address; retry in {secs} s"),
            );
            e.retry_after = Some(secs);
            return Err(e);
        }
        let presented = presented_key(&parts.headers).ok_or_else(unauthorized)?;
        match s.store.verify_api_key(presented).await? {
            Some(info) => Ok(Caller(info)),
            None => {
                failures.record(client.key(), s.clock.now());
                tracing::warn!(%client, "an API key was refused");
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this API key is unknown or revoked: check it was copied whole (tw_…), or make a new one with 'tokenwarden keys create'",
                ))
            }
        }
    }
}

/// The API key in `Authorization: Bearer …` (trimmed), if the header has that form.
pub(crate) fn presented_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

impl Caller {
    /// Who called, for events and logs: `key:<id>` (the key's public id, never the key).
    pub(crate) fn who(&self) -> String {
        format!("key:{}", self.0.id)
    }

    pub(crate) fn admin(&self) -> Result<(), ApiError> {
        match self.0.role {
            ApiKeyRole::Admin => Ok(()),
            ApiKeyRole::TokenReader => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this API key may only fetch tokens",
            )),
        }
    }
}
