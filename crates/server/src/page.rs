//! Small HTML pages: everything shown is escaped, no inline script, and the headers of hardening
//! rule 12 (no caching, no referrer, no framing).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// A page with a heading, paragraphs (escaped here) and an optional link.
pub fn render(
    status: StatusCode,
    title: &str,
    paragraphs: &[String],
    link: Option<(&str, &str)>,
) -> Response {
    let mut body = String::new();
    for p in paragraphs {
        body.push_str(&format!("<p>{}</p>\n", escape(p)));
    }
    if let Some((href, text)) = link {
        body.push_str(&format!(
            "<p><a class=\"button\" href=\"{}\">{}</a></p>\n",
            escape(href),
            escape(text)
        ));
    }
    frame(status, title, body)
}

/// A page whose one button POSTs to `action` (a path of this daemon), which may redirect the
/// browser on to `then` (an origin the CSP's `form-action` must allow: browsers apply it to the
/// redirect after a form).
pub fn render_form(
    status: StatusCode,
    title: &str,
    paragraphs: &[String],
    action: &str,
    button: &str,
    then: &url::Url,
) -> Response {
    let mut body = String::new();
    for p in paragraphs {
        body.push_str(&format!("<p>{}</p>\n", escape(p)));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"{}\"><button type=\"submit\" class=\"button\" id=\"continue\">{}</button></form>\n",
        escape(action),
        escape(button)
    ));
    let mut resp = frame(status, title, body);
    let origin = then.origin().ascii_serialization();
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'{}; frame-ancestors 'none'",
        if then.origin().is_tuple() {
            format!(" {origin}")
        } else {
            String::new()
        }
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

fn frame(status: StatusCode, title: &str, body: String) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{t} · tokenwarden</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1d2330}}\
h1{{font-size:1.4rem}}.button{{display:inline-block;padding:.5rem 1rem;background:#1d4ed8;color:#fff;border:0;font:inherit;cursor:pointer;border-radius:.4rem;text-decoration:none}}</style>\
</head><body><h1>{t}</h1>\n{body}</body></html>\n",
        t = escape(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    resp
}

/// A token answer's headers: JSON with [`secure_headers`], built once and copied into each
/// answer (cheaper than inserting them one by one every time).
pub static TOKEN_HEADERS: std::sync::LazyLock<axum::http::HeaderMap> =
    std::sync::LazyLock::new(|| {
        let mut h = axum::http::HeaderMap::with_capacity(8);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        secure_headers(&mut h);
        h
    });

/// The headers every page and token response carries.
pub fn secure_headers(h: &mut axum::http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // For HTTP/1.0 caches, which ignore Cache-Control.
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    );
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape("<script>\"x\"&'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
    }
}
