//! The dashboard's page frame and small pieces of markup. Everything that comes from data (ids,
//! account names, platform messages, fixes) goes through [`escape`]; no inline script or style,
//! so the CSP allows only this origin's `/assets/`.

use crate::page::{escape, secure_headers};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use tokenwarden_core::connection::ConnectionState;
use tokenwarden_core::provider::Registry;

/// Which navigation entry is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// `/`
    Overview,
    /// `/connections`
    Connections,
    /// `/diagnose`
    Diagnose,
    /// The sign-in page (no navigation).
    None,
}

/// A page to send.
#[derive(Debug)]
pub struct Page<'a> {
    /// The `<title>` and the heading.
    pub title: &'a str,
    /// Navigation entry.
    pub nav: Nav,
    /// The session's CSRF token (for the sign-out form); `None` when signed out.
    pub csrf: Option<&'a str>,
    /// Who is signed in.
    pub who: Option<&'a str>,
    /// The body, already escaped.
    pub body: String,
    /// Reload the page every this many seconds (the script skips it while a form is in use).
    pub refresh_secs: Option<u32>,
}

/// The CSP of dashboard pages: scripts and styles from this origin only, nothing inline; forms
/// may go to this origin and to the platforms' authorize pages (the connect form's redirect
/// leads there, and browsers apply `form-action` to redirects).
pub fn csp(providers: &Registry) -> String {
    let mut origins: Vec<String> = providers
        .iter()
        .map(|p| p.spec.authorize.url.origin().ascii_serialization())
        .filter(|o| o != "null")
        .collect();
    origins.sort();
    origins.dedup();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
base-uri 'none'; form-action 'self' {}; frame-ancestors 'none'",
        origins.join(" ")
    )
}

impl Page<'_> {
    /// Renders with the security headers of rule 12 and the dashboard CSP.
    pub fn send(self, status: StatusCode, providers: &Registry) -> Response {
        let nav = |n: Nav, href: &str, text: &str| {
            format!(
                "<a href=\"{href}\"{}>{text}</a>",
                if n == self.nav {
                    " aria-current=\"page\""
                } else {
                    ""
                }
            )
        };
        let header_right = match (self.csrf, self.who) {
            (Some(csrf), who) => format!(
                "<span class=\"who\">{}</span><form method=\"post\" action=\"/logout\" class=\"inline\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><button class=\"link\" type=\"submit\">Sign out</button></form>",
                escape(who.unwrap_or("")),
                escape(csrf)
            ),
            (None, _) => String::new(),
        };
        let navigation = if self.nav == Nav::None {
            String::new()
        } else {
            format!(
                "<nav>{}{}{}</nav>",
                nav(Nav::Overview, "/", "Overview"),
                nav(Nav::Connections, "/connections", "Connections"),
                nav(Nav::Diagnose, "/diagnose", "Diagnose"),
            )
        };
        let refresh = self
            .refresh_secs
            .map(|s| format!(" data-refresh=\"{s}\""))
            .unwrap_or_default();
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} · tokenwarden</title><link rel=\"stylesheet\" href=\"/assets/app.css\">\
<script src=\"/assets/app.js\" defer></script></head>\
<body{refresh}><header class=\"top\"><a class=\"brand\" href=\"/\">token<b>warden</b></a>{navigation}\
<div class=\"right\">{header_right}</div></header><main><h1>{t}</h1>\n{body}</main></body></html>\n",
            t = escape(self.title),
            body = self.body,
        );
        let mut resp = (status, html).into_response();
        let h = resp.headers_mut();
        secure_headers(h);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&csp(providers)) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        resp
    }
}

/// A state badge.
pub fn badge(state: ConnectionState) -> String {
    let text = match state {
        ConnectionState::Pending => "pending",
        ConnectionState::Active => "healthy",
        ConnectionState::Degraded => "degraded",
        ConnectionState::ReauthRequired => "reauth required",
    };
    format!(
        "<span class=\"badge {}\" data-state=\"{}\">{text}</span>",
        state.as_str(),
        state.as_str()
    )
}

/// A countdown to `at` (the script keeps it ticking; without script it reads as rendered).
pub fn countdown(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        None => "<span class=\"muted\">no expiry</span>".into(),
        Some(at) => {
            let secs = (at - now).num_seconds();
            format!(
                "<time class=\"countdown{}\" datetime=\"{}\" data-seconds=\"{secs}\" title=\"{}\">{}</time>",
                if secs < 600 { " soon" } else { "" },
                at.to_rfc3339(),
                at.format("%Y-%m-%d %H:%M:%S UTC"),
                relative(secs)
            )
        }
    }
}

/// "in 3h 05m", "expired 2m ago".
pub fn relative(secs: i64) -> String {
    let a = secs.unsigned_abs();
    let text = if a >= 86_400 {
        format!("{}d {}h", a / 86_400, (a % 86_400) / 3600)
    } else if a >= 3600 {
        format!("{}h {:02}m", a / 3600, (a % 3600) / 60)
    } else if a >= 60 {
        format!("{}m {:02}s", a / 60, a % 60)
    } else {
        format!("{a}s")
    };
    if secs >= 0 {
        format!("in {text}")
    } else {
        format!("expired {text} ago")
    }
}

/// A time, or a dash.
pub fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "<span class=\"muted\">—</span>".into(),
        |t| {
            format!(
                "<time datetime=\"{}\">{}</time>",
                t.to_rfc3339(),
                t.format("%Y-%m-%d %H:%M UTC")
            )
        },
    )
}

/// A hidden CSRF field.
pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(csrf)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_well() {
        assert_eq!(relative(90), "in 1m 30s");
        assert_eq!(relative(3 * 3600 + 5 * 60), "in 3h 05m");
        assert_eq!(relative(-120), "expired 2m 00s ago");
        assert_eq!(relative(2 * 86_400 + 3600), "in 2d 1h");
    }

    #[test]
    fn csp_allows_no_inline_script_and_names_authorize_origins() {
        let reg = Registry::builtin().unwrap();
        let c = csp(&reg);
        assert!(c.contains("script-src 'self';"), "{c}");
        assert!(!c.contains("unsafe-inline"), "{c}");
        assert!(c.contains("frame-ancestors 'none'"));
        assert!(c.contains("https://"), "{c}");
    }
}
