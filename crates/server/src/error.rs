//! The one shape of an HTTP failure for programs: JSON `{"error":{"code","message"}}` with a
//! stable code (and, where it helps, `fix`, `reauthorize_url`, `Retry-After`); internal details are
//! logged, never sent. The API, the webhooks and connect-session routes, the dashboard's minting
//! and `/metrics` all answer failures with it.

use crate::page;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokenwarden_proxy::answer::ErrorAnswer;
use tokenwarden_store::StoreError;

/// A failure, as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    pub(crate) extra: Value,
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Value::Null,
            retry_after: None,
        }
    }

    /// Its HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// Its message (never a secret).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let (Value::Object(extra), Some(obj)) = (self.extra, error.as_object_mut()) {
            obj.extend(extra);
        }
        let mut resp = (self.status, Json(json!({ "error": error }))).into_response();
        page::secure_headers(resp.headers_mut());
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ErrorAnswer::store(&e).into()
    }
}

/// The answer the proxy would give, as the API gives it (its security headers, no verdict
/// headers).
impl From<ErrorAnswer> for ApiError {
    fn from(a: ErrorAnswer) -> Self {
        ApiError {
            status: a.status,
            code: a.code,
            message: a.message,
            extra: Value::Object(a.extra),
            retry_after: a.retry_after,
        }
    }
}

/// A known path called with a method it does not take (every router of the API answers so; axum
/// adds the `Allow` header).
pub(crate) async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not take {method}; the API's routes and methods are listed at /openapi.json",
            uri.path()
        ),
    )
    .into_response()
}

#[cfg(test)]
mod store_refusal_tests {
    use super::*;

    #[test]
    fn a_database_refusing_writes_is_named_with_its_fix() {
        let cases = [
            (
                StoreError::Full("database error 13: database or disk is full".into()),
                "store_full",
                "free space",
            ),
            (
                StoreError::ReadOnly(
                    "database error 8: attempt to write a readonly database".into(),
                ),
                "store_read_only",
                "writable primary",
            ),
            (
                StoreError::Unavailable("pool timed out".into()),
                "store_unavailable",
                "cannot reach its database",
            ),
        ];
        for (e, code, says) in cases {
            let api = ApiError::from(e);
            assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(api.code, code);
            assert!(api.message.contains(says), "{}", api.message);
        }
    }
}
