//! Which headers cross the proxy (hardening rule 10): the caller's credentials never reach the
//! platform and cannot override ours; hop-by-hop headers, including every header the caller names
//! in `Connection:`, are removed (RFC 9110 §7.6.1); values with CR, LF or NUL are refused. On the
//! way back, the platform's cookies and authentication state, and any header named like our
//! credential's, stay behind.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the de-facto `keep-alive` and `proxy-connection`).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers that carry a caller's credentials or steer the request somewhere else.
const CALLER_ONLY: &[&str] = &[
    "authorization",
    "cookie",
    "access-token",
    "x-api-key",
    "host",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "expect",
];

/// Response headers that carry the platform's own credentials or authentication state for the
/// client that called it, which is tokenwarden, not the caller: a session cookie set on our
/// token's account, the digest state of a login. A `WWW-Authenticate` challenge is not among
/// them: it carries no secret and tells the caller why a token was refused (RFC 6750 §3).
const PLATFORM_ONLY: &[&str] = &[
    "set-cookie",
    "set-cookie2",
    "authentication-info",
    "proxy-authentication-info",
];

/// Prefix of the headers that speak to tokenwarden itself (the budget); never forwarded.
pub const OWN_PREFIX: &str = "tokenwarden-";

/// A header value the proxy will not forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header {name} has a value with CR, LF or NUL in it")]
pub struct BadHeader {
    /// The header's name (names are not secret; values may be).
    pub name: String,
}

fn listed_in_connection(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn has_forbidden_bytes(v: &HeaderValue) -> bool {
    v.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// Adds the definition's extra headers (`api.headers`, filled): one that `replaces` overwrites a
/// caller's header of that name, any other is only a default the caller may have set. A name or
/// value that is not a valid header is skipped (definitions are validated; values are checked
/// when filled).
pub fn attach_extra(h: &mut HeaderMap, extra: &[tokenwarden_core::provider::ExtraHeader]) {
    for e in extra {
        let (Ok(name), Ok(mut value)) = (
            reqwest::header::HeaderName::from_bytes(e.name.as_bytes()),
            HeaderValue::from_str(&e.value),
        ) else {
            continue;
        };
        // The developer token: kept out of any debug output of the request.
        value.set_sensitive(e.sensitive);
        if e.replaces || !h.contains_key(&name) {
            h.insert(name, value);
        }
    }
}

/// The caller's headers as they may go to the platform, before our credential is added.
/// `credential_header` is the provider's (e.g. TikTok's `Access-Token`); `streamed` keeps the
/// caller's `Content-Length` for a body that is streamed rather than buffered.
pub fn outbound(
    caller: &HeaderMap,
    credential_header: &str,
    streamed: bool,
) -> Result<HeaderMap, BadHeader> {
    let listed = listed_in_connection(caller);
    let mut out = HeaderMap::with_capacity(caller.len());
    for (name, value) in caller {
        let n = name.as_str();
        if has_forbidden_bytes(value) {
            return Err(BadHeader { name: n.into() });
        }
        let drop = HOP_BY_HOP.contains(&n)
            || CALLER_ONLY.contains(&n)
            || n.eq_ignore_ascii_case(credential_header)
            || n.starts_with(OWN_PREFIX)
            || listed.iter().any(|l| l == n)
            || (n == "content-length" && !streamed);
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    Ok(out)
}

/// The platform's response headers as they may go back to the caller: no hop-by-hop headers,
/// nothing the platform meant for tokenwarden itself (cookies, authentication state), and no
/// header named like the one our credential travels in (`credential_header`, e.g. TikTok's
/// `Access-Token`), which a platform echoing the request would fill with our token.
///
/// The platform's map is filtered in place: an answer with nothing to drop (most) costs no new
/// map (issue 19).
pub fn inbound(mut upstream: HeaderMap, credential_header: &str) -> HeaderMap {
    let listed = listed_in_connection(&upstream);
    let dropped: Vec<HeaderName> = upstream
        .keys()
        .filter(|name| {
            let n = name.as_str();
            HOP_BY_HOP.contains(&n)
                || PLATFORM_ONLY.contains(&n)
                || n.eq_ignore_ascii_case(credential_header)
                || n.starts_with(OWN_PREFIX)
                || listed.iter().any(|l| l == n)
        })
        .cloned()
        .collect();
    for name in &dropped {
        upstream.remove(name);
    }
    // Room for the verdict headers the proxy adds, made once (a map parsed to fit its headers
    // would otherwise grow while they go in).
    upstream.reserve(VERDICT_HEADERS);
    upstream
}

/// The most headers the proxy adds to an answer (`tokenwarden-kind`, `-action`, `-attempts`,
/// `-waited-ms`, `-refreshed`, `-retry-after-ms`, `-platform-code`, `-reauthorize-url`).
const VERDICT_HEADERS: usize = 8;

// The map an answer's headers arrive in has room for the verdict headers and the daemon's three
// security headers (`X-Content-Type-Options`, `Referrer-Policy`, `Strict-Transport-Security`).
const _: () = assert!(crate::h1::SPARE_HEADERS >= VERDICT_HEADERS + 3);

/// Adds our credential as the provider definition says (`Authorization: Bearer …`,
/// `Access-Token: …`), replacing anything of that name.
pub fn attach_credential(
    headers: &mut HeaderMap,
    header: &str,
    template: &str,
    access_token: &str,
) -> Result<(), BadHeader> {
    let bad = || BadHeader {
        name: header.to_string(),
    };
    let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| bad())?;
    // Written once, into one allocation of the right size (every call does this).
    let mut text = String::with_capacity(template.len() + access_token.len());
    // A search for the brace, not for the whole placeholder: `str::find` with a string pattern
    // sets up a two-way searcher on every call (half of this function's cost; issue 19).
    const PLACEHOLDER: &str = "{access_token}";
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let (before, from) = rest.split_at(i);
        text.push_str(before);
        match from.strip_prefix(PLACEHOLDER) {
            Some(after) => {
                text.push_str(access_token);
                rest = after;
            }
            None => {
                text.push('{');
                rest = &from[1..];
            }
        }
    }
    text.push_str(rest);
    let mut value = HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).map_err(|_| bad())?;
    value.set_sensitive(true);
    headers.insert(name, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn caller_credentials_and_hop_by_hop_are_dropped() {
        let caller = map(&[
            ("authorization", "Bearer tw_callerkey"),
            ("access-token", "theirs"),
            ("cookie", "s=1"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("host", "evil.example"),
            ("tokenwarden-budget-ms", "100"),
            ("content-length", "12"),
            ("content-type", "application/json"),
            ("x-custom", "kept"),
        ]);
        let out = outbound(&caller, "Access-Token", false).unwrap();
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "x-custom"]);
        let out = outbound(&caller, "Authorization", true).unwrap();
        assert!(out.contains_key("content-length"));
        assert!(!out.contains_key("access-token"));
    }

    #[test]
    fn our_credential_wins() {
        let mut h = outbound(
            &map(&[("authorization", "Bearer theirs")]),
            "Authorization",
            false,
        )
        .unwrap();
        attach_credential(&mut h, "Authorization", "Bearer {access_token}", "ours").unwrap();
        assert_eq!(h.get_all("authorization").iter().count(), 1);
        assert_eq!(h["authorization"], "Bearer ours");
        assert!(h["authorization"].is_sensitive());
        // The template as the definition writes it: the token wherever (and as often as) it
        // names it, the rest as written; a token that would break the header is refused.
        for (template, want) in [
            ("{access_token}", "ours"),
            ("OAuth {access_token}; v=2", "OAuth ours; v=2"),
            ("{access_token}/{access_token}", "ours/ours"),
            ("fixed", "fixed"),
        ] {
            attach_credential(&mut h, "Access-Token", template, "ours").unwrap();
            assert_eq!(h["access-token"], want);
        }
        assert!(attach_credential(&mut h, "Access-Token", "{access_token}", "a\r\nb").is_err());
        // Braces that are not the placeholder stay as written, as `str::replace` leaves them.
        for template in [
            "{",
            "{{access_token}}",
            "{access_token",
            "{x} {access_token} {",
            "{{{access_token}",
            "a{access_tokenb}{access_token}",
            "}{access_token}{",
            "é{access_token}ü{",
        ] {
            attach_credential(&mut h, "Access-Token", template, "ours").unwrap();
            assert_eq!(
                h["access-token"].as_bytes(),
                template.replace("{access_token}", "ours").as_bytes(),
                "{template}"
            );
        }
    }

    #[test]
    fn bare_cr_and_nul_are_refused() {
        // `HeaderValue` itself refuses CR/LF/NUL from text; from raw bytes only NUL-free obs-text
        // passes. Either way the check stands guard.
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(b"a\rb") {
            h.insert("x-bad", v);
            assert!(outbound(&h, "Authorization", false).is_err());
        }
    }

    #[test]
    fn inbound_drops_hop_by_hop() {
        let up = map(&[
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("tokenwarden-kind", "forged"),
            ("content-type", "application/json"),
            ("x-app-usage", "{}"),
        ]);
        let out = inbound(up.clone(), "Authorization");
        // Sorted: dropping a name moves the last one into its place (the order of different
        // names means nothing in HTTP; the values of one name keep theirs, tested below).
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "x-app-usage"]);
    }

    #[test]
    fn inbound_keeps_every_value_of_a_kept_name_and_none_of_a_dropped_one() {
        let up = map(&[
            ("vary", "a"),
            ("set-cookie", "one=1"),
            ("x-trace", "t"),
            ("vary", "b"),
            ("set-cookie", "two=2"),
            ("connection", "x-trace"),
        ]);
        let out = inbound(up, "Authorization");
        let pairs: Vec<(&str, &str)> = out
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(pairs, [("vary", "a"), ("vary", "b")]);
    }

    #[test]
    fn inbound_drops_the_platforms_cookies_and_our_credential_header() {
        let up = map(&[
            ("set-cookie", "sid=1"),
            ("Set-Cookie2", "old=1"),
            ("authentication-info", "nextnonce=x"),
            ("proxy-authentication-info", "nextnonce=y"),
            ("proxy-authenticate", "Basic"),
            ("access-token", "ours, echoed"),
            ("www-authenticate", "Bearer error=\"invalid_token\""),
            ("authorization", "kept when it is not the credential header"),
        ]);
        let out = inbound(up.clone(), "Access-Token");
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "www-authenticate"]);
        let out = inbound(up.clone(), "Authorization");
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["access-token", "www-authenticate"]);
    }
}
