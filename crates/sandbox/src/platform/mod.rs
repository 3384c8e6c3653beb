//! The emulated platforms. Each module owns its token endpoint(s), a few API endpoints, and the ONE
//! function (`render`) that turns an [`ErrorCase`] into that platform's wire format.

pub(crate) mod amazon_ads;
pub(crate) mod google_ads;
pub(crate) mod linkedin;
pub(crate) mod meta;
pub(crate) mod microsoft_ads;
pub(crate) mod pinterest;
pub(crate) mod reddit;
pub(crate) mod snapchat;
pub(crate) mod threads;
pub(crate) mod tiktok;
pub(crate) mod tiktok_business;
pub(crate) mod x;
pub(crate) mod x_ads;

use crate::Sandbox;
use crate::error_case::{ErrorCase, ErrorDetail, Reply};
use crate::fault::{MalformedMode, ProviderFaults};
use crate::ledger::Grant;
use crate::provider::Provider;
use axum::Router;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

pub(crate) fn routes(p: Provider) -> Router<Sandbox> {
    match p {
        Provider::Snapchat => snapchat::routes(),
        Provider::TiktokBusiness => tiktok_business::routes(),
        Provider::Tiktok => tiktok::routes(),
        Provider::Threads => threads::routes(),
        Provider::Meta => meta::routes(),
        Provider::GoogleAds => google_ads::routes(),
        Provider::MicrosoftAds => microsoft_ads::routes(),
        Provider::AmazonAds => amazon_ads::routes(),
        Provider::Linkedin => linkedin::routes(),
        Provider::Pinterest => pinterest::routes(),
        Provider::Reddit => reddit::routes(),
        Provider::X => x::routes(),
        Provider::XAds => x_ads::routes(),
    }
}

/// The routes of the platform's own sandbox API host, where it has one: the same API, paths and
/// envelopes as production (each handler learns its host from the `Environment` extension).
pub(crate) fn sandbox_host_routes(p: Provider) -> Option<Router<Sandbox>> {
    p.sandbox_host()?;
    match p {
        Provider::TiktokBusiness => Some(tiktok_business::routes()),
        Provider::Pinterest => Some(pinterest::routes()),
        Provider::XAds => Some(x_ads::api_routes()),
        Provider::MicrosoftAds => Some(microsoft_ads::api_routes()),
        _ => None,
    }
}

/// Whether `path` (under the provider prefix, on either host) is one of the platform's token
/// endpoints.
pub(crate) fn is_token_path(p: Provider, path: &str) -> bool {
    let path = match p.sandbox_host() {
        Some(_) => path
            .strip_prefix(tokenwarden_core::provider::SANDBOX_HOST_PREFIX)
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(path),
        None => path,
    };
    let paths: &[&str] = match p {
        Provider::Snapchat => &["/login/oauth2/access_token"],
        Provider::TiktokBusiness => &[
            "/open_api/v1.3/oauth2/access_token/",
            "/open_api/v1.3/oauth2/revoke_token/",
            "/open_api/v1.3/tt_user/oauth2/refresh_token/",
        ],
        Provider::Tiktok => &["/v2/oauth/token/", "/v2/oauth/revoke/"],
        Provider::Threads => &[
            "/oauth/access_token",
            "/access_token",
            "/refresh_access_token",
        ],
        Provider::Meta => &["/v24.0/oauth/access_token"],
        Provider::GoogleAds => &["/token", "/revoke"],
        Provider::MicrosoftAds => &["/common/oauth2/v2.0/token"],
        Provider::AmazonAds => amazon_ads::TOKEN_PATHS,
        Provider::Linkedin => &[
            "/oauth/v2/accessToken",
            "/oauth/v2/introspectToken",
            "/oauth/v2/revoke",
        ],
        Provider::Pinterest => &["/v5/oauth/token"],
        Provider::Reddit => reddit::TOKEN_PATHS,
        Provider::X => x::TOKEN_PATHS,
        Provider::XAds => x_ads::TOKEN_PATHS,
    };
    paths.contains(&path)
}

/// Renders `case` the way platform `p` sends it.
pub(crate) fn render(p: Provider, case: ErrorCase, detail: &ErrorDetail) -> Reply {
    match p {
        Provider::Snapchat => snapchat::render(case, detail),
        Provider::TiktokBusiness => tiktok_business::render(case, detail),
        Provider::Tiktok => tiktok::render(case, detail),
        Provider::Threads => threads::render(case, detail),
        Provider::Meta => meta::render(case, detail),
        Provider::GoogleAds => google_ads::render(case, detail),
        Provider::MicrosoftAds => microsoft_ads::render(case, detail),
        Provider::AmazonAds => amazon_ads::render(case, detail),
        Provider::Linkedin => linkedin::render(case, detail),
        Provider::Pinterest => pinterest::render(case, detail),
        Provider::Reddit => reddit::render(case, detail),
        Provider::X => x::render(case, detail),
        Provider::XAds => x_ads::render(case, detail),
    }
}

/// The cases platform `p` can send.
pub(crate) fn cases(p: Provider) -> Vec<ErrorCase> {
    match p {
        Provider::Snapchat => snapchat::CASES.to_vec(),
        Provider::TiktokBusiness => tiktok_business::CASES.to_vec(),
        Provider::Tiktok => tiktok::CASES.to_vec(),
        Provider::Threads => threads::CASES.to_vec(),
        Provider::Meta => meta::CASES.to_vec(),
        Provider::GoogleAds => google_ads::CASES.to_vec(),
        Provider::MicrosoftAds => microsoft_ads::CASES.to_vec(),
        Provider::AmazonAds => amazon_ads::CASES.to_vec(),
        Provider::Linkedin => linkedin::CASES.to_vec(),
        Provider::Pinterest => pinterest::CASES.to_vec(),
        Provider::Reddit => reddit::CASES.to_vec(),
        Provider::X => x::CASES.to_vec(),
        Provider::XAds => x_ads::CASES.to_vec(),
    }
}

/// The parameters a platform's authorize page sends back when the consent step fails (RFC 6749
/// §4.1.2.1): `declined` when the person pressed Deny, otherwise the platform refusing the app
/// (Threads' own `error_code`, platforms.md §4: 1349245 "user has not accepted the invite to test
/// the app"; elsewhere RFC 6749 `unauthorized_client`). Meta and Threads add `error_reason`.
pub(crate) fn consent_error_params(
    p: Provider,
    declined: bool,
) -> &'static [(&'static str, &'static str)] {
    match (p, declined) {
        (Provider::Threads | Provider::Meta, true) => &[
            ("error", "access_denied"),
            ("error_reason", "user_denied"),
            ("error_description", "Permissions error"),
        ],
        // LinkedIn's own names for the member's refusal (§1 OAuth).
        (Provider::Linkedin, true) => &[
            ("error", "user_cancelled_authorize"),
            ("error_description", "The user cancelled the authorization"),
        ],
        (_, true) => &[
            ("error", "access_denied"),
            ("error_description", "The user denied the request"),
        ],
        // Login with Amazon before the app is approved for the Ads API (Part A §3 Pitfalls).
        (Provider::AmazonAds, false) => &[
            ("error", "invalid_scope"),
            ("error_description", "An unknown scope was requested"),
        ],
        (Provider::Threads, false) => &[
            ("error_code", "1349245"),
            (
                "error_message",
                "The user has not accepted the invite to test the app.",
            ),
        ],
        (_, false) => &[
            ("error", "unauthorized_client"),
            (
                "error_description",
                "The app is not set up to use this authorization flow",
            ),
        ],
    }
}

/// The consent step's failed redirect as the catalogue shows it: 302 to an example callback.
pub(crate) fn consent_redirect(p: Provider, declined: bool) -> Reply {
    let mut url = url::Url::parse("https://app.example.invalid/callback").expect("a valid URL");
    url.query_pairs_mut()
        .extend_pairs(consent_error_params(p, declined))
        .append_pair("state", "example-state");
    Reply {
        status: 302,
        headers: vec![("location".into(), url.to_string())],
        body: Vec::new(),
    }
}

/// Renders and sends an error, counting rate-limit signals (some travel inside HTTP 200).
pub(crate) fn refuse(sb: &Sandbox, p: Provider, case: ErrorCase, detail: &ErrorDetail) -> Response {
    if matches!(case, ErrorCase::RateLimited { .. }) {
        crate::counters::Counters::bump(&sb.counters().of(p).rate_limited_sent);
    }
    render(p, case, detail).into_response()
}

/// Sends a successful token response, unless the "malformed token response" fault is armed.
pub(crate) fn token_reply(sb: &Sandbox, p: Provider, mut value: Value) -> Response {
    let faults = sb.faults(p);
    if !ProviderFaults::take(&faults.malformed_next) {
        return Reply::json(200, &value)
            .header("cache-control", "no-store")
            .into_response();
    }
    let mode = faults.settings.read().malformed_mode;
    // TikTok Business nests the token under `data`.
    let target = match value.get_mut("data") {
        Some(d) if d.is_object() => d,
        _ => &mut value,
    };
    match mode {
        MalformedMode::Truncated => {
            let text = serde_json::to_string(&value).unwrap_or_default();
            let cut = text.len() / 2;
            Reply {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: text.as_bytes()[..cut].to_vec(),
            }
            .into_response()
        }
        MalformedMode::Html => Reply::html(
            200,
            "<!DOCTYPE html><html><head><title>Service</title></head><body><p>Please try again later.</p></body></html>".into(),
        )
        .into_response(),
        MalformedMode::MissingFields => {
            if let Some(o) = target.as_object_mut() {
                o.remove("access_token");
                o.remove("expires_in");
            }
            Reply::json(200, &value).into_response()
        }
        MalformedMode::ExpiresInString => {
            if let Some(o) = target.as_object_mut() {
                let e = o.get("expires_in").cloned().unwrap_or(Value::from(3600));
                o.insert("expires_in".into(), Value::String(e.to_string()));
            }
            Reply::json(200, &value).into_response()
        }
    }
}

/// `Authorization: Bearer <token>`.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// A stable UUID-shaped id (Snapchat's ids are UUIDs).
pub(crate) fn uuid_like(grant: &Grant, salt: &str) -> String {
    let a = grant.numeric_id(salt);
    let b = grant.numeric_id(&format!("{salt}/2"));
    let h = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// How many campaigns every ad account has: enough for a few pages.
pub(crate) const CAMPAIGNS_PER_ACCOUNT: usize = 25;

/// Offset pagination shared by the listing endpoints: the slice and whether more remain.
pub(crate) fn page_of(total: usize, offset: usize, size: usize) -> (std::ops::Range<usize>, bool) {
    let start = offset.min(total);
    let end = start.saturating_add(size).min(total);
    (start..end, end < total)
}

/// The request's scheme and host, to build absolute `next` links as the platforms do.
pub(crate) fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// One Graph error (Threads and Meta share the envelope, platforms.md §5): HTTP status, message,
/// type, code, subcode. On code 190 the `WWW-Authenticate: OAuth "Facebook Platform"` challenge
/// is added; a missing token gets `invalid_request` in it instead.
pub(crate) struct GraphError<'a> {
    pub status: u16,
    pub message: &'a str,
    pub kind: &'a str,
    pub code: u32,
    pub subcode: Option<u32>,
    pub transient: bool,
}

impl GraphError<'_> {
    pub fn reply(&self) -> Reply {
        let mut error = serde_json::json!({
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "fbtrace_id": format!("A{}", crate::ledger::short_id()),
        });
        if let Some(sub) = self.subcode {
            error["error_subcode"] = sub.into();
        }
        if self.transient {
            error["is_transient"] = true.into();
        }
        let reply = Reply::json(self.status, &serde_json::json!({ "error": error }));
        // Quotes inside the message would break the quoted-string challenge.
        let quoted = self.message.replace('"', "'");
        match self.code {
            190 => reply.header(
                "www-authenticate",
                format!("OAuth \"Facebook Platform\" \"invalid_token\" \"{quoted}\""),
            ),
            2500 => reply.header(
                "www-authenticate",
                format!("OAuth \"Facebook Platform\" \"invalid_request\" \"{quoted}\""),
            ),
            _ => reply,
        }
    }
}

/// Graph's "Session has expired on …" text for code 190/463.
pub(crate) fn session_expired_message(d: &ErrorDetail) -> String {
    let fmt = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%A, %d-%b-%y %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "an earlier date".into())
    };
    format!(
        "Error validating access token: Session has expired on {}. The current time is {}.",
        fmt(d.expired_at),
        fmt(d.now)
    )
}

/// The Graph way of passing a token: `Authorization: Bearer` or the `access_token` parameter.
pub(crate) fn graph_token(
    headers: &HeaderMap,
    query: &std::collections::HashMap<String, String>,
) -> Option<String> {
    bearer(headers).or_else(|| query.get("access_token").cloned())
}

/// Graph paging cursors are opaque; here they are base64 of the offset.
pub(crate) fn cursor(offset: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(format!("offset:{offset}"))
}

/// The offset a [`cursor`] stands for.
pub(crate) fn cursor_offset(c: &str) -> Option<usize> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(c)
        .ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("offset:")?
        .parse()
        .ok()
}
