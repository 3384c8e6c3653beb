//! The authorize page: what a person sees in a browser, and the same POST for scripted approval.
//!
//! `GET <authorize path>?…` shows the app's name, the requested scopes, an account field and
//! Approve / Deny buttons. The buttons POST the same parameters (form-encoded) back to the same
//! path with `decision=approve|deny` and `account`; a script can send that POST directly:
//!
//! ```text
//! curl -si -X POST http://127.0.0.1:8181/snapchat/login/oauth2/authorize \
//!   -d client_id=demo-snapchat -d redirect_uri=http://127.0.0.1:8080/callback \
//!   -d response_type=code -d scope=snapchat-marketing-api -d state=xyz \
//!   -d decision=approve -d account=test-user
//! ```
//!
//! The answer is a 302 to `redirect_uri` with the platform's code parameter(s) and `state`.
//! `redirect_uri` must equal a registered one exactly, otherwise an error page and no redirect
//! (RFC 6749 §4.1.2.1).

use crate::Sandbox;
use crate::ledger::{App, AuthCode, to_delta};
use crate::provider::Provider;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) fn routes(p: Provider) -> Router<Sandbox> {
    // OAuth 1.0a's page takes a request token, not a client id: X Ads serves its own.
    if p == Provider::XAds {
        return Router::new();
    }
    Router::new().route(
        p.authorize_path(),
        get(
            move |State(sb): State<Sandbox>, Query(q): Query<HashMap<String, String>>| async move {
                show(&sb, p, &q)
            },
        )
        .post(
            move |State(sb): State<Sandbox>, Form(f): Form<HashMap<String, String>>| async move {
                decide(&sb, p, &f)
            },
        ),
    )
}

/// The name of the client-id parameter on each platform's authorize URL.
fn client_param(p: Provider) -> &'static str {
    match p {
        Provider::TiktokBusiness => "app_id",
        Provider::Tiktok => "client_key",
        _ => "client_id",
    }
}

/// The parameters the page carries through (everything the platform's authorize URL takes).
fn carried_params(p: Provider) -> &'static [&'static str] {
    match p {
        Provider::TiktokBusiness => &["app_id", "redirect_uri", "state"],
        Provider::XAds => &["oauth_token"],
        Provider::Tiktok => &[
            "client_key",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
            "code_challenge",
            "code_challenge_method",
        ],
        Provider::Snapchat | Provider::AmazonAds | Provider::Linkedin | Provider::Pinterest => &[
            "client_id",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
        ],
        Provider::Threads | Provider::Meta => &[
            "client_id",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
        ],
        Provider::GoogleAds => &[
            "client_id",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
            "code_challenge",
            "code_challenge_method",
            "access_type",
            "prompt",
            "include_granted_scopes",
            "login_hint",
        ],
        Provider::MicrosoftAds => &[
            "client_id",
            "redirect_uri",
            "response_type",
            "response_mode",
            "scope",
            "state",
            "code_challenge",
            "code_challenge_method",
            "prompt",
            "login_hint",
        ],
        Provider::Reddit => &[
            "client_id",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
            "duration",
        ],
        Provider::X => &[
            "client_id",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
            "code_challenge",
            "code_challenge_method",
        ],
    }
}

/// A request that passed the checks made before any redirect is allowed.
struct Checked {
    app: Arc<App>,
    redirect_uri: String,
    state: Option<String>,
    scopes: Vec<String>,
    code_challenge: Option<String>,
}

/// Checks the client and redirect_uri (errors → page), then the rest (errors → redirect).
fn check(p: Provider, sb: &Sandbox, q: &HashMap<String, String>) -> Result<Checked, Response> {
    let client_id = q.get(client_param(p)).map(String::as_str).unwrap_or("");
    let Some(app) = sb.ledger().app(p, client_id) else {
        return Err(error_page(
            "Unknown app",
            &format!("No {} app has the id {client_id:?}.", p.id()),
        ));
    };
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    if !app.redirect_allowed(&redirect_uri) {
        return Err(error_page(
            "redirect_uri mismatch",
            &format!(
                "The redirect_uri {redirect_uri:?} is not registered for {}. Registered: {:?}.",
                app.client_id,
                app.redirect_uris()
            ),
        ));
    }
    let state = q.get("state").cloned();
    let bounce = |error: &str, description: &str| {
        redirect(
            &redirect_uri,
            &[("error", error), ("error_description", description)],
            state.as_deref(),
        )
    };
    if p != Provider::TiktokBusiness && q.get("response_type").map(String::as_str) != Some("code") {
        return Err(bounce(
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    let scopes: Vec<String> = match (p, q.get("scope")) {
        (Provider::TiktokBusiness, _) | (_, None) => p.default_scopes(),
        (_, Some(s)) => s
            .split(p.scope_separator())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    };
    if p == Provider::Snapchat && scopes.iter().any(|s| s != "snapchat-marketing-api") {
        return Err(bounce(
            "invalid_scope",
            "The only scope is snapchat-marketing-api",
        ));
    }
    // Login with Amazon refuses a scope the app is not approved for as unknown (Part A §3).
    if p == Provider::AmazonAds
        && scopes
            .iter()
            .any(|s| !crate::platform::amazon_ads::SCOPES.contains(&s.as_str()))
    {
        return Err(bounce("invalid_scope", "An unknown scope was requested"));
    }
    // Reddit issues a refresh token only for duration=permanent, and refuses a request without a
    // duration (platforms-ads.md Part B §3).
    if p == Provider::Reddit
        && !matches!(
            q.get("duration").map(String::as_str),
            Some("permanent" | "temporary")
        )
    {
        return Err(bounce("invalid_request", "invalid duration parameter"));
    }
    // X requires PKCE (Part B §4).
    if p == Provider::X && q.get("code_challenge").is_none_or(|c| c.is_empty()) {
        return Err(bounce(
            "invalid_request",
            "Missing required parameter [code_challenge].",
        ));
    }
    let code_challenge = if matches!(
        p,
        Provider::Tiktok | Provider::GoogleAds | Provider::MicrosoftAds | Provider::X
    ) {
        match (q.get("code_challenge"), q.get("code_challenge_method")) {
            (None, _) => None,
            (Some(c), Some(m)) if m == "S256" && !c.is_empty() => Some(c.clone()),
            _ => {
                return Err(bounce(
                    "invalid_request",
                    "code_challenge_method must be S256",
                ));
            }
        }
    } else {
        None
    };
    Ok(Checked {
        app,
        redirect_uri,
        state,
        scopes,
        code_challenge,
    })
}

fn show(sb: &Sandbox, p: Provider, q: &HashMap<String, String>) -> Response {
    let c = match check(p, sb, q) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let hidden: String = carried_params(p)
        .iter()
        .filter_map(|k| q.get(*k).map(|v| (k, v)))
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let scopes: String = c
        .scopes
        .iter()
        .map(|s| format!("<li>{}</li>", escape(s)))
        .collect();
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorize {app} · {platform} (tokenwarden sandbox)</title></head>\
<body style=\"font-family:sans-serif;max-width:32em;margin:3em auto\">\
<p>tokenwarden sandbox · {platform}</p>\
<h1>{app} wants to access your account</h1>\
<p>It asks for:</p><ul>{scopes}</ul>\
<form method=\"post\" action=\"{action}\">{hidden}\
<label>Account <input type=\"text\" name=\"account\" value=\"test-user\" maxlength=\"64\"></label>\
<p><button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button> \
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></p></form></body></html>",
        app = escape(&c.app.name),
        platform = escape(p.id()),
        action = escape(&format!("/{}{}", p.id(), p.authorize_path())),
    );
    page(StatusCode::OK, body)
}

fn decide(sb: &Sandbox, p: Provider, f: &HashMap<String, String>) -> Response {
    let c = match check(p, sb, f) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match f.get("decision").map(String::as_str) {
        Some("approve") => {}
        Some("deny") => {
            let params = crate::platform::consent_error_params(p, true);
            return redirect(&c.redirect_uri, params, c.state.as_deref());
        }
        _ => return error_page("Bad decision", "decision must be approve or deny"),
    }
    let account = f
        .get("account")
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .unwrap_or("test-user");
    if account.len() > 64 {
        return error_page(
            "Bad account",
            "The account name is longer than 64 characters.",
        );
    }
    let code = sb.ledger().issue_code(AuthCode {
        app: c.app.clone(),
        redirect_uri: c.redirect_uri.clone(),
        account: account.to_string(),
        scopes: c.scopes.clone(),
        code_challenge: c.code_challenge,
        expires_at: sb.now() + to_delta(p.code_lifetime()),
    });
    let scopes = c.scopes.join(",");
    let params: Vec<(&str, &str)> = match p {
        // Nango's handler reads `code`, the docs say `auth_code`: send both (platforms.md §2).
        Provider::TiktokBusiness => vec![("auth_code", &code), ("code", &code)],
        Provider::Tiktok => vec![("code", &code), ("scopes", &scopes)],
        _ => vec![("code", &code)],
    };
    redirect(&c.redirect_uri, &params, c.state.as_deref())
}

fn redirect(uri: &str, params: &[(&str, &str)], state: Option<&str>) -> Response {
    let Ok(mut url) = url::Url::parse(uri) else {
        return error_page("Bad redirect_uri", "The redirect_uri is not a URL.");
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
    }
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    harden(&mut resp);
    resp
}

pub(crate) fn error_page(title: &str, detail: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1><p>{d}</p></body></html>",
            t = escape(title),
            d = escape(detail)
        ),
    )
}

pub(crate) fn page(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    harden(&mut resp);
    resp
}

/// hardening.md §12: no framing, no inline scripts, nothing cached, no referrer leaking the code.
pub(crate) fn harden(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            super::escape("<a href=\"x\" onclick='y'>&</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
