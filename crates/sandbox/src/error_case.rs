//! Every error the sandbox can send, as one enum of cases. Each platform module renders a case
//! with ONE function (`render`), and [`error_catalogue`] renders every case each platform emits,
//! so a test can check the classifier against the kind the sandbox meant.

use crate::provider::Provider;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Which limit a rate-limit error reports (Meta and Threads answer each with its own code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// A per-user / per-token limit (Meta 17/2446079, Snapchat 10 req/s per token), and the
    /// "throttle" fault.
    User,
    /// A per-app limit (Meta/Threads code 4, Snapchat 20 req/s per app, TikTok 40100).
    App,
    /// Meta's business-use-case limit on one ad account (80004, subcode 2446079).
    AdAccount,
    /// A temporary restriction of the app for too many requests (TikTok Business 61000,
    /// `TOO_MANY_REQUESTS_BL` in the official SDK table).
    Restricted,
    /// A rate-limit sub-code under Meta's "unknown error" code 1 (issue 18 family 3: a sub-code
    /// the definition knows decides over codes 1 and 2).
    UnderUnknownCode,
}

/// An error the sandbox sends. The platform module decides which case a situation becomes
/// (e.g. Snapchat answers every token refusal with the same 401) and renders it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "case")]
pub enum ErrorCase {
    /// No credential in the request.
    CredentialMissing,
    /// The access token expired.
    TokenExpired,
    /// Snapchat's other 401 shape: a bare `unauthorized` text body, which does not say whether
    /// the token expired or is invalid.
    TokenRefusedPlainText,
    /// Snapchat's 401 with an empty body, which says nothing at all.
    TokenRefusedEmpty,
    /// The token is not one the platform issued (garbage, or from another app).
    TokenInvalid,
    /// The grant was revoked (user removed the app, password changed, app secret rotated).
    TokenRevoked,
    /// The token lacks a scope the endpoint needs.
    ScopeMissing,
    /// The user lost their role on the ad account / advertiser.
    RoleMissing,
    /// The app the token or code belongs to is not the app that asked.
    AppMismatch,
    /// The person behind the grant left the account or logged out (TikTok Business 40114
    /// `ADVERTISER_LOGOUT`, 40120 `TIKTOK_USER_NOT_LOGGED_IN`): the grant no longer works.
    AuthorizerGone {
        /// The TikTok user logged out (40120) rather than the advertiser (40114).
        user_logged_out: bool,
    },
    /// Access refused for the app or account (TikTok Business 40003 `FORBIDDEN`, 41000
    /// `BLOCKED`): neither a request bug nor something a new authorization fixes.
    AccessRefused {
        /// Blocked outright (41000) rather than forbidden (40003).
        blocked: bool,
    },
    /// The endpoint does not exist (TikTok Business 40400 `ROUTE_NOT_FOUND`) or was retired
    /// (41001 `INTERFACE_OFFLINE`).
    EndpointGone {
        /// Retired (41001) rather than never there (40400).
        retired: bool,
    },
    /// The request's timestamp or signature is out of date (TikTok Business 40115
    /// `AUTH_TIMESTAMP_EXPIRE`): the app's clock or signing, not the grant.
    StaleSignature,
    /// A rate limit.
    RateLimited {
        /// Which one.
        limit: Limit,
    },
    /// The platform's own service error.
    Outage,
    /// An HTML error page from a load balancer.
    OutagePage {
        /// 502 or 503 (Meta's "Sorry, something went wrong." uses the same status).
        status: u16,
    },
    /// An asynchronous task fetched before it finished (TikTok Business 40201), or published
    /// before it was ready (Threads 24/4279009, Instagram 9007/2207027).
    TaskPending,
    /// An asynchronous job asked about before it finished: HTTP 200 whose status says it is still
    /// running (Threads container `IN_PROGRESS`, Meta `async_status` "Job Running", TikTok
    /// Business task `PROCESSING`, TikTok post `PROCESSING_DOWNLOAD`, Snapchat report `RUNNING`).
    WorkPending,
    /// An asynchronous job that ended without a result, in HTTP 200 (Meta "Job Failed", TikTok
    /// Business task `FAILED`, Snapchat report `FAILED`): start it again.
    WorkFailed,
    /// Media the platform could not process, in HTTP 200 (Threads container `ERROR` or
    /// `EXPIRED`, TikTok post `FAILED`): the media or the container must change.
    MediaRejected {
        /// The Threads container expired unpublished (24 h) rather than failed.
        expired: bool,
    },
    /// Graph 190 without a sub-code whose text says the session expired (issue 18 family 3).
    TokenExpiredUnspecific,
    /// Graph 100 marked `is_transient: true`: retryable despite its request-error code.
    TransientParamError,
    /// Graph 100 without a sub-code naming an object that was deleted (issue 18 family 2).
    ObjectDeleted,
    /// A batch answer in HTTP 200 with a failed item (Snapchat `sub_request_status`).
    BatchItemsFailed {
        /// The failed item carries an E-code (E3003) rather than only its reason text.
        coded: bool,
    },
    /// The consent step failed: the platform redirects back with error parameters (RFC 6749
    /// §4.1.2.1), because the person declined or the app is not set up (issue 18 family 5).
    ConsentRefused {
        /// The person pressed Deny (access_denied) rather than the platform refusing the app.
        declined: bool,
    },
    /// The object does not exist or cannot be loaded.
    NotFound,
    /// The request's parameters are wrong.
    InvalidParams,
    /// Token endpoint: a required parameter is missing or malformed.
    OAuthInvalidRequest,
    /// Token endpoint: unknown client or wrong secret (also after a secret rotation).
    OAuthInvalidClient,
    /// Token endpoint: the code or refresh token is invalid, used, expired, rotated or revoked.
    OAuthInvalidGrant,
    /// Token endpoint: a grant type the platform does not support here.
    OAuthUnsupportedGrant,
    /// Token endpoint: the refresh token is not accepted (TikTok Business 40107
    /// `INVALID_REFRESH_TOKEN`) or has expired (40103 `REFRESH_TOKEN_EXPIRE`).
    RefreshTokenRefused {
        /// Expired (40103) rather than invalid (40107).
        expired: bool,
    },
}

impl ErrorCase {
    /// The classifier kind this response is meant to produce.
    pub fn intended_kind(&self) -> &'static str {
        match self {
            ErrorCase::CredentialMissing => "invalid_request",
            ErrorCase::TokenExpired => "token_expired",
            ErrorCase::TokenInvalid
            | ErrorCase::TokenRefusedPlainText
            | ErrorCase::TokenRefusedEmpty => "token_invalid",
            ErrorCase::TokenRevoked => "token_revoked",
            ErrorCase::ScopeMissing => "insufficient_scope",
            ErrorCase::RoleMissing | ErrorCase::AppMismatch | ErrorCase::AccessRefused { .. } => {
                "app_not_authorized"
            }
            ErrorCase::AuthorizerGone { .. } => "token_revoked",
            ErrorCase::EndpointGone { .. } | ErrorCase::StaleSignature => "invalid_request",
            ErrorCase::RateLimited { .. } => "rate_limited",
            ErrorCase::Outage | ErrorCase::OutagePage { .. } => "service_unavailable",
            ErrorCase::TaskPending | ErrorCase::WorkPending => "async_pending",
            ErrorCase::WorkFailed | ErrorCase::TransientParamError => "service_unavailable",
            ErrorCase::MediaRejected { .. } => "invalid_request",
            ErrorCase::TokenExpiredUnspecific => "token_expired",
            ErrorCase::ObjectDeleted | ErrorCase::BatchItemsFailed { .. } => "not_found",
            // Consent-step errors are the app's problem, fixed in its dashboard (issue 18 item 5).
            ErrorCase::ConsentRefused { .. } => "app_not_authorized",
            ErrorCase::NotFound => "not_found",
            ErrorCase::InvalidParams => "invalid_request",
            ErrorCase::OAuthInvalidRequest => "invalid_request",
            // A wrong or rotated client secret is the app's configuration, not a refusal of one
            // connection (hardening.md §5; platforms.md §2 maps 40101 to invalid_request).
            ErrorCase::OAuthInvalidClient => "invalid_request",
            ErrorCase::OAuthInvalidGrant => "token_revoked",
            ErrorCase::OAuthUnsupportedGrant => "invalid_request",
            ErrorCase::RefreshTokenRefused { expired: false } => "token_revoked",
            ErrorCase::RefreshTokenRefused { expired: true } => "token_expired",
        }
    }
}

/// Facts a rendering may mention: the app, when the limit resets, when the token expired, and
/// a more precise message for parameter errors.
#[derive(Debug, Clone, Default)]
pub struct ErrorDetail {
    /// The app id, where the platform names it (TikTok's 40100 message).
    pub app_id: Option<String>,
    /// When a rate-limit window resets (TikTok's `x-ratelimit-reset`).
    pub reset_at: Option<DateTime<Utc>>,
    /// When the token expired (Graph's "Session has expired on …").
    pub expired_at: Option<DateTime<Utc>>,
    /// The sandbox's "now", for messages that quote it.
    pub now: Option<DateTime<Utc>>,
    /// A more precise message for parameter, grant and not-found errors.
    pub message: Option<String>,
    /// A Graph `error_subcode` for parameter errors (e.g. 36009 "code has been used").
    pub graph_subcode: Option<u32>,
}

impl ErrorDetail {
    /// A detail that carries only a message.
    pub fn message(m: impl Into<String>) -> Self {
        ErrorDetail {
            message: Some(m.into()),
            ..Default::default()
        }
    }
}

/// A rendered HTTP response, plain data so the catalogue can hand it to a classifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// An HTML reply.
    pub fn html(status: u16, body: String) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
            body: body.into_bytes(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut resp = self.body.into_response();
        *resp.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let h = resp.headers_mut();
        h.remove(axum::http::header::CONTENT_TYPE);
        for (k, v) in self.headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&v),
            ) {
                h.append(k, v);
            }
        }
        resp
    }
}

/// The load balancer's HTML error page in front of every platform (Meta's own page differs).
pub(crate) fn load_balancer_page(status: u16) -> Reply {
    let reason = if status == 502 {
        "502 Bad Gateway"
    } else {
        "503 Service Temporarily Unavailable"
    };
    Reply::html(
        status,
        format!(
            "<html>\r\n<head><title>{reason}</title></head>\r\n<body>\r\n<center><h1>{reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        ),
    )
}

/// One catalogue entry: provider id, case, status, headers, body.
pub type CatalogueEntry = (&'static str, ErrorCase, u16, Vec<(String, String)>, Vec<u8>);

/// Every error every platform module can send, rendered with representative details.
pub fn error_catalogue() -> Vec<CatalogueEntry> {
    let detail = ErrorDetail {
        app_id: Some("7000000000000000001".into()),
        reset_at: DateTime::from_timestamp(1_800_000_060, 0),
        expired_at: DateTime::from_timestamp(1_800_000_000, 0),
        now: DateTime::from_timestamp(1_800_000_030, 0),
        message: None,
        graph_subcode: None,
    };
    let mut out = Vec::new();
    for p in Provider::ALL {
        for case in crate::platform::cases(p) {
            let r = crate::platform::render(p, case, &detail);
            out.push((p.id(), case, r.status, r.headers, r.body));
        }
    }
    out
}
