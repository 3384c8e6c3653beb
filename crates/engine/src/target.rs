//! Where a call may go (hardening rule 9): only under the API base the provider definition names
//! for the connection's environment, built so that nothing the caller sends can change the origin.
//!
//! The path is never `Url::join`ed (a path starting `//` or holding `scheme:` replaces the origin,
//! rust-url #1024, #869): it is checked as raw text, appended to the base, parsed, and the result
//! is asserted to keep the base's origin and path prefix before any credential is attached.

use tokenwarden_core::connection::Connection;
use tokenwarden_core::provider::Provider;
use url::Url;

/// Why a target was refused. `Display` quotes nothing the caller sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    /// The path does not start with `/`, or starts with `//` (a network-path reference).
    #[error("the path must start with a single '/'")]
    NotRelative,
    /// A `.` or `..` segment, raw or encoded, with or without `;parameters` (`..;`, `..;x=y`).
    #[error(
        "the path may not contain '.' or '..' segments (nor '..;' path parameters), in any encoding"
    )]
    DotSegment,
    /// An encoded `/`, `\`, `.`, `%` or control character: an escape trick.
    #[error("the path may not contain encoded '/', '\\', '.', '%' or control characters")]
    EncodedEscape,
    /// A raw backslash, control character or a `scheme:` before the first `/`.
    #[error("the path contains characters that are not allowed")]
    BadCharacter,
    /// A malformed `%` escape.
    #[error("the path contains a malformed percent escape")]
    BadEscape,
    /// The connection's recorded API base is not one the provider definition names.
    #[error("the connection's API base is not one of its provider's API hosts")]
    UnknownBase,
    /// After building, the URL left the API base (a defect this check exists to catch).
    #[error("the built URL leaves the provider's API base")]
    LeftBase,
    /// An absolute URL where a path under the API base was expected.
    #[error("absolute URLs are refused; send a path under the connection's API base")]
    Absolute,
}

/// The API base a connection's calls go to: its recorded `api_base`, which must be the provider's
/// production or sandbox base, or one of its regions' bases (as the registry points them, e.g. at
/// the local sandbox).
pub fn api_base(provider: &Provider, conn: &Connection) -> Result<Url, UrlRefused> {
    let api = &provider.spec.api;
    let recorded = conn.api_base.trim_end_matches('/');
    std::iter::once(&api.base_url)
        .chain(api.sandbox_base_url.as_ref())
        .chain(provider.spec.regions.iter().map(|r| &r.api_base_url))
        .find(|u| u.as_str().trim_end_matches('/') == recorded)
        .cloned()
        .ok_or(UrlRefused::UnknownBase)
}

/// The base a call to `path` (raw) goes to: the base of the definition's `[[api.services]]` entry
/// that serves the path, in the environment of the connection's own `base`; otherwise `base`.
pub fn base_for(provider: &Provider, base: &Url, path: &str) -> Url {
    let api = &provider.spec.api;
    let sandbox = is_sandbox(provider, base);
    api.services
        .iter()
        .find(|s| s.serves(path))
        .and_then(|s| {
            if sandbox {
                s.sandbox_base_url.clone()
            } else {
                Some(s.base_url.clone())
            }
        })
        .unwrap_or_else(|| base.clone())
}

/// Every base a connection whose own base is `base` may call: that one first, then its
/// environment's services' (a caller of the reqwest middleware names whole URLs).
pub fn bases(provider: &Provider, base: &Url) -> Vec<Url> {
    let sandbox = is_sandbox(provider, base);
    std::iter::once(base.clone())
        .chain(provider.spec.api.services.iter().filter_map(|s| {
            if sandbox {
                s.sandbox_base_url.clone()
            } else {
                Some(s.base_url.clone())
            }
        }))
        .collect()
}

fn is_sandbox(provider: &Provider, base: &Url) -> bool {
    provider
        .spec
        .api
        .sandbox_base_url
        .as_ref()
        .is_some_and(|u| u.as_str().trim_end_matches('/') == base.as_str().trim_end_matches('/'))
}

/// Checks a raw (still percent-encoded) path as it arrived.
pub fn check_path(path: &str) -> Result<(), UrlRefused> {
    if !path.starts_with('/') {
        // `https://…`, `//host/…` or `host/…` are all attempts to name another origin.
        return Err(if path.contains("://") || path.contains(':') {
            UrlRefused::Absolute
        } else {
            UrlRefused::NotRelative
        });
    }
    if path.starts_with("//") {
        return Err(UrlRefused::NotRelative);
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(UrlRefused::BadEscape)?;
                let v = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(UrlRefused::BadEscape)?;
                if matches!(v, b'/' | b'\\' | b'.' | b'%') || v < 0x20 || v == 0x7f {
                    return Err(UrlRefused::EncodedEscape);
                }
                i += 3;
                continue;
            }
            b'\\' | b'#' | b'?' => return Err(UrlRefused::BadCharacter),
            _ if b < 0x20 || b == 0x7f || b == b' ' => return Err(UrlRefused::BadCharacter),
            _ => {}
        }
        i += 1;
    }
    if path.split('/').any(is_dot_segment) {
        return Err(UrlRefused::DotSegment);
    }
    // `/https://evil.example/…`: a URL where a path belongs (it could not leave the base, but it
    // is never what a caller of a platform API means). Any other colon in the first segment is
    // an ordinary path character: Google's custom methods are `resource:verb`
    // (`/customers:listAccessibleCustomers`, the Google Ads probe).
    if path[1..].split('/').next().is_some_and(names_a_url) {
        return Err(UrlRefused::Absolute);
    }
    Ok(())
}

/// Schemes that name a place or run something: a first segment `scheme:…` with one of them is a
/// URL, whatever follows the colon.
const URL_SCHEMES: &[&str] = &[
    "http",
    "https",
    "ws",
    "wss",
    "ftp",
    "file",
    "data",
    "javascript",
    "vbscript",
    "mailto",
    "gopher",
];

/// Whether a raw first path segment reads as the start of a URL: a scheme (RFC 3986 §3.1) with
/// nothing after its colon (`https:` of `/https://host/`), or a well-known scheme whatever follows.
fn names_a_url(seg: &str) -> bool {
    let Some((scheme, rest)) = seg.split_once(':') else {
        return false;
    };
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    is_scheme && (rest.is_empty() || URL_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme)))
}

/// Whether a raw segment is `.` or `..` once its path parameters are stripped: Tomcat, Jetty and
/// Spring drop everything from the first `;` (raw, or `%3B` after decoding) before they resolve
/// dot segments, so `..;x=y` climbs a level there. Encoded dots never get here (refused as
/// escapes), so the dots are raw.
fn is_dot_segment(seg: &str) -> bool {
    let cut = [seg.find(';'), find_ascii_ci(seg, "%3b")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(seg.len());
    matches!(&seg[..cut], "." | "..")
}

fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Checks a raw query string: no control characters, spaces or fragments.
fn check_query(query: &str) -> Result<(), UrlRefused> {
    if query
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b == b' ' || b == b'#')
    {
        return Err(UrlRefused::BadCharacter);
    }
    Ok(())
}

/// Query parameters that carry a platform credential (Graph's `access_token`): the caller's are
/// dropped so they can neither reach the platform nor override ours (hardening rule 10).
const CREDENTIAL_PARAMS: &[&str] = &["access_token"];

fn strip_credentials(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            // Compared as the platform reads it: `access%5Ftoken` and `%61ccess_token` decode to
            // `access_token` there.
            let raw = pair.split('=').next().unwrap_or("");
            let name = url::form_urlencoded::parse(raw.as_bytes())
                .next()
                .map(|(k, _)| k)
                .unwrap_or_default();
            !CREDENTIAL_PARAMS
                .iter()
                .any(|c| name.eq_ignore_ascii_case(c))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The URL for `path` (raw, starting with `/`) and `query` (raw) under `base`.
pub fn build(base: &Url, path: &str, query: Option<&str>) -> Result<Url, UrlRefused> {
    check_path(path)?;
    // The base's scheme and host as they were parsed once, with the path (and query) set on
    // them: a proxied call no longer parses (and IDNA-maps) the host again every time (issue
    // 19). `set_path` parses the path as `Url::parse` would; `within` below still checks the
    // result.
    let mut url = base.clone();
    let base_path = base.path().trim_end_matches('/');
    let mut joined = String::with_capacity(base_path.len() + path.len());
    joined.push_str(base_path);
    joined.push_str(path);
    url.set_path(&joined);
    url.set_fragment(None);
    let query = match query {
        Some(q) => {
            check_query(q)?;
            Some(strip_credentials(q)).filter(|q| !q.is_empty())
        }
        None => None,
    };
    url.set_query(query.as_deref());
    within(base, &url)?;
    Ok(url)
}

/// Whether two URLs have the same origin: scheme, host and port for the web's schemes without
/// the two allocations of [`Url::origin`] each; any other scheme by its origin (opaque, so
/// never the same).
fn same_origin(a: &Url, b: &Url) -> bool {
    if matches!(a.scheme(), "http" | "https") {
        a.scheme() == b.scheme()
            && a.host() == b.host()
            && a.port_or_known_default() == b.port_or_known_default()
    } else {
        a.origin() == b.origin()
    }
}

/// Asserts `url` keeps `base`'s origin and path prefix and carries no user info or fragment.
pub fn within(base: &Url, url: &Url) -> Result<(), UrlRefused> {
    let base_path = base.path().trim_end_matches('/');
    let path = url.path();
    let under = path == base_path
        || (path.starts_with(base_path) && path[base_path.len()..].starts_with('/'));
    if !same_origin(url, base)
        || !under
        || !url.username().is_empty()
        || url.password().is_some()
        || url.fragment().is_some()
    {
        return Err(UrlRefused::LeftBase);
    }
    Ok(())
}

/// The path and query of an absolute `url` relative to `base` (the in-process client gets whole
/// URLs): refused unless it lies under `base`.
pub fn relative<'a>(base: &Url, url: &'a Url) -> Result<(String, Option<&'a str>), UrlRefused> {
    within(base, url)?;
    let base_path = base.path().trim_end_matches('/');
    let rest = &url.path()[base_path.len()..];
    let rest = if rest.is_empty() { "/" } else { rest };
    Ok((rest.to_string(), url.query()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://adsapi.snapchat.com/v1").unwrap()
    }

    #[test]
    fn ordinary_paths_pass() {
        let u = build(&base(), "/me", None).unwrap();
        assert_eq!(u.as_str(), "https://adsapi.snapchat.com/v1/me");
        let u = build(
            &base(),
            "/adaccounts/a%20b/campaigns",
            Some("limit=5&x=%C3%A9"),
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "https://adsapi.snapchat.com/v1/adaccounts/a%20b/campaigns?limit=5&x=%C3%A9"
        );
    }

    #[test]
    fn escapes_are_refused() {
        let cases = [
            ("https://evil.example/x", UrlRefused::Absolute),
            ("//evil.example/x", UrlRefused::NotRelative),
            ("evil.example/x", UrlRefused::NotRelative),
            ("/../admin", UrlRefused::DotSegment),
            ("/a/..", UrlRefused::DotSegment),
            ("/./a", UrlRefused::DotSegment),
            ("/%2e%2e/admin", UrlRefused::EncodedEscape),
            ("/%2E%2E/admin", UrlRefused::EncodedEscape),
            ("/.%2e/admin", UrlRefused::EncodedEscape),
            ("/%252e%252e/admin", UrlRefused::EncodedEscape),
            ("/a%2f..%2fb", UrlRefused::EncodedEscape),
            ("/a%5c..%5cb", UrlRefused::EncodedEscape),
            ("/a\\..\\b", UrlRefused::BadCharacter),
            ("/a%0d%0aHost:x", UrlRefused::EncodedEscape),
            ("/a%00", UrlRefused::EncodedEscape),
            ("/a%zz", UrlRefused::BadEscape),
            ("/a%2", UrlRefused::BadEscape),
            ("/a#frag", UrlRefused::BadCharacter),
        ];
        for (path, want) in cases {
            assert_eq!(build(&base(), path, None), Err(want), "{path}");
        }
    }

    /// Tomcat, Jetty and Spring strip `;parameters` from a segment before they resolve dot
    /// segments, so `/..;/admin` and `/..;x=y/admin` climb out of the API base on such a server
    /// (the "path parameter" traversal). Refused like `..`, with the `;` raw or encoded.
    #[test]
    fn dot_segments_with_path_parameters_are_refused() {
        for path in [
            "/..;/admin",
            "/a/..;",
            "/a/..;/b",
            "/..;x=y/admin",
            "/..;jsessionid=abc/admin",
            "/a/..;x;y/b",
            "/.;/admin",
            "/.;x=1/a",
            "/..%3b/admin",
            "/..%3B/admin",
            "/..%3bx=y/admin",
            "/.%3b/admin",
            "/v2/..;/..;/admin",
        ] {
            assert_eq!(
                build(&base(), path, None),
                Err(UrlRefused::DotSegment),
                "{path}"
            );
        }
        // A `;` elsewhere in a segment is an ordinary character (Meta's field lists use it).
        for path in [
            "/a;b/c",
            "/..a;x/b",
            "/x..;/b",
            "/a/b;..",
            "/a/%3b../b",
            "/...;/b",
        ] {
            assert!(build(&base(), path, None).is_ok(), "{path}");
        }
    }

    #[test]
    fn at_signs_and_colons_stay_in_the_path() {
        // `@` and `:` after the first `/` are ordinary path characters; the origin cannot change.
        let u = build(&base(), "/@evil.example/x:80", None).unwrap();
        assert_eq!(u.host_str(), Some("adsapi.snapchat.com"));
        assert!(u.path().starts_with("/v1/"));
        assert_eq!(
            build(&base(), "/http://evil.example/", None),
            Err(UrlRefused::Absolute)
        );
        for url_like in [
            "/HTTPS://evil.example/",
            "/http:evil.example/x",
            "/javascript:alert(1)",
            "/file:/etc/passwd",
            "/gopher:",
            "/x-custom:",
        ] {
            assert_eq!(
                build(&base(), url_like, None),
                Err(UrlRefused::Absolute),
                "{url_like}"
            );
        }
        // Google's `resource:verb` custom methods are paths, first segment included.
        for method in [
            "/customers:listAccessibleCustomers",
            "/customers/1234567890/googleAds:searchStream",
            "/customers/1234567890/campaigns:mutate",
        ] {
            let u = build(&base(), method, None).unwrap();
            assert_eq!(u.host_str(), Some("adsapi.snapchat.com"));
            assert!(u.path().ends_with(method), "{u}");
        }
        // `//` further in stays a path; the host is still the platform's.
        let u = build(&base(), "/a//evil.example/", None).unwrap();
        assert_eq!(u.host_str(), Some("adsapi.snapchat.com"));
    }

    #[test]
    fn caller_access_token_parameters_are_dropped() {
        let u = build(
            &base(),
            "/me",
            Some("fields=id&access_token=theirs&ACCESS_TOKEN=x"),
        )
        .unwrap();
        assert_eq!(u.query(), Some("fields=id"));
        let u = build(&base(), "/me", Some("access_token=theirs")).unwrap();
        assert_eq!(u.query(), None);
    }

    /// Found while writing the proxy_target fuzz target's invariant: the name was compared as
    /// sent, so a percent-encoded spelling reached the platform, which decodes it to
    /// `access_token`.
    #[test]
    fn encoded_access_token_parameters_are_dropped_too() {
        for q in [
            "access%5Ftoken=theirs",
            "%61ccess_token=theirs",
            "ACCESS%5fTOKEN=theirs",
            "%61%63%63%65%73%73%5F%74%6F%6B%65%6E=theirs",
        ] {
            let u = build(&base(), "/me", Some(&format!("fields=id&{q}"))).unwrap();
            assert_eq!(u.query(), Some("fields=id"), "{q}");
        }
        // Other names that merely contain it are kept.
        let u = build(&base(), "/me", Some("my_access_token_hint=1")).unwrap();
        assert_eq!(u.query(), Some("my_access_token_hint=1"));
    }

    #[test]
    fn relative_requires_the_base() {
        let b = base();
        let ok = Url::parse("https://adsapi.snapchat.com/v1/me?x=1").unwrap();
        assert_eq!(relative(&b, &ok).unwrap(), ("/me".to_string(), Some("x=1")));
        for bad in [
            "https://evil.example/v1/me",
            "http://adsapi.snapchat.com/v1/me",
            "https://adsapi.snapchat.com/v10/me",
            "https://adsapi.snapchat.com/admin",
            "https://user:pw@adsapi.snapchat.com/v1/me",
        ] {
            let u = Url::parse(bad).unwrap();
            assert_eq!(relative(&b, &u), Err(UrlRefused::LeftBase), "{bad}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A segment built from characters a platform path may hold, escapes included.
        fn segment() -> impl Strategy<Value = String> {
            "[a-zA-Z0-9._~;=%-]{0,10}"
        }

        /// `.` or `..`, a raw or encoded `;`, and any parameters after it.
        fn dot_with_parameters() -> impl Strategy<Value = String> {
            (
                prop_oneof![Just("."), Just("..")],
                prop_oneof![Just(";"), Just("%3b"), Just("%3B")],
                "[a-zA-Z0-9=;,]{0,8}",
            )
                .prop_map(|(d, sep, rest)| format!("{d}{sep}{rest}"))
        }

        proptest! {
            /// Wherever a `..;`-style segment sits, whatever follows the `;`, it is refused.
            #[test]
            fn dot_segments_with_parameters_are_refused_anywhere(
                before in proptest::collection::vec("[a-z0-9]{1,6}", 0..4),
                dot in dot_with_parameters(),
                after in proptest::collection::vec("[a-z0-9]{1,6}", 0..4),
            ) {
                let mut segs = before;
                segs.push(dot);
                segs.extend(after);
                let path = format!("/{}", segs.join("/"));
                prop_assert_eq!(build(&base(), &path, None), Err(UrlRefused::DotSegment), "{}", path);
            }

            /// The URL is the one parsing the base's text with the path and query appended
            /// made (how it was built before issue 19), for every base shape and any path or
            /// query the checks let through, non-ASCII and escapes included.
            #[test]
            fn the_url_is_the_one_parsing_the_whole_text_makes(
                base_text in prop_oneof![
                    Just("https://adsapi.snapchat.com/v1"),
                    Just("https://adsapi.snapchat.com/v1/"),
                    Just("https://graph.facebook.com"),
                    Just("http://127.0.0.1:8080/tiktok/open_api/v1.3"),
                    Just("https://BÜCHER.example/Api/"),
                ],
                segs in proptest::collection::vec("[a-zA-Z0-9._~;=%:@!$&'()*+,é -]{0,8}", 1..5),
                query in proptest::option::of("[a-zA-Z0-9=&%_.é+-]{0,12}"),
            ) {
                let base = Url::parse(base_text).unwrap();
                let path = format!("/{}", segs.join("/"));
                if let Ok(u) = build(&base, &path, query.as_deref()) {
                    let prefix = base.as_str().trim_end_matches('/').to_string();
                    let mut text = format!("{prefix}{path}");
                    let q = query.as_deref().map(strip_credentials).unwrap_or_default();
                    if !q.is_empty() {
                        text.push('?');
                        text.push_str(&q);
                    }
                    let parsed = Url::parse(&text).unwrap();
                    prop_assert_eq!(u.as_str(), parsed.as_str());
                }
            }

            /// Whatever is accepted lands under the base exactly as sent: nothing was resolved,
            /// decoded or dropped on the way, so no server sees a path the check did not.
            #[test]
            fn accepted_paths_land_under_the_base_unchanged(
                segs in proptest::collection::vec(segment(), 1..6),
            ) {
                let path = format!("/{}", segs.join("/"));
                if let Ok(u) = build(&base(), &path, None) {
                    prop_assert_eq!(u.host_str(), Some("adsapi.snapchat.com"));
                    prop_assert_eq!(u.path(), format!("/v1{path}"));
                    prop_assert!(!path.split('/').any(is_dot_segment), "{}", path);
                }
            }
        }
    }

    /// Microsoft Advertising's services on their own hosts (`[[api.services]]`): a path goes to
    /// the host that serves it, in the connection's environment, and everything else to the
    /// connection's own base; the same holds once the definition is pointed at the local sandbox.
    #[test]
    fn a_path_goes_to_the_host_of_the_service_that_serves_it() {
        let reg = tokenwarden_core::provider::Registry::builtin().unwrap();
        let p = reg.get("microsoft-ads").unwrap();
        let prod = p.spec.api.base_url.clone();
        let sbx = p.spec.api.sandbox_base_url.clone().unwrap();
        let host = |base: &Url, path: &str| base_for(p, base, path).host_str().unwrap().to_string();
        for (path, want, want_sbx) in [
            (
                "/CustomerManagement/v13/User/Query",
                "clientcenter.api.bingads.microsoft.com",
                "clientcenter.api.sandbox.bingads.microsoft.com",
            ),
            (
                "/CampaignManagement/v13/Campaigns/QueryByAccountId",
                "campaign.api.bingads.microsoft.com",
                "campaign.api.sandbox.bingads.microsoft.com",
            ),
            (
                "/campaignmanagement/v13/Campaigns",
                "campaign.api.bingads.microsoft.com",
                "campaign.api.sandbox.bingads.microsoft.com",
            ),
            (
                "/Api/Advertiser/CampaignManagement/v13/BulkService.svc",
                "bulk.api.bingads.microsoft.com",
                "bulk.api.sandbox.bingads.microsoft.com",
            ),
            (
                "/Reporting/v13/GenerateReport/Poll",
                "reporting.api.bingads.microsoft.com",
                "reporting.api.sandbox.bingads.microsoft.com",
            ),
            (
                "/AdInsight/v13/KeywordIdeas/Query",
                "adinsight.api.bingads.microsoft.com",
                "adinsight.api.sandbox.bingads.microsoft.com",
            ),
            // A prefix is not a word: /CampaignManagementX is not the service.
            (
                "/CampaignManagementX/v13",
                "clientcenter.api.bingads.microsoft.com",
                "clientcenter.api.sandbox.bingads.microsoft.com",
            ),
        ] {
            assert_eq!(host(&prod, path), want, "{path}");
            assert_eq!(host(&sbx, path), want_sbx, "{path}");
            let url = build(&base_for(p, &prod, path), path, None).unwrap();
            assert_eq!(url.host_str(), Some(want), "{path}");
        }
        // Whole URLs (the reqwest middleware) are taken on any of the environment's hosts only.
        let names = |base: &Url| {
            bases(p, base)
                .iter()
                .map(|u| u.host_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&prod).len(), 5);
        assert!(names(&prod).iter().all(|h| !h.contains(".sandbox.")));
        assert!(names(&sbx).iter().all(|h| h.contains(".sandbox.")));
        // Pointed at the local sandbox: every service under the origin, the sandbox's under
        // /sandbox, like the connection's own bases.
        let local = p.with_origin(&Url::parse("http://127.0.0.1:9/microsoft-ads").unwrap());
        let lp = local.spec.api.base_url.clone();
        let ls = local.spec.api.sandbox_base_url.clone().unwrap();
        let trimmed = |u: Url| u.as_str().trim_end_matches('/').to_string();
        assert_eq!(
            trimmed(base_for(&local, &lp, "/CampaignManagement/v13")),
            "http://127.0.0.1:9/microsoft-ads"
        );
        assert_eq!(
            trimmed(base_for(&local, &ls, "/CampaignManagement/v13")),
            "http://127.0.0.1:9/microsoft-ads/sandbox"
        );
        // A platform without services: always the connection's base.
        let snap = reg.get("snapchat").unwrap();
        assert_eq!(base_for(snap, &base(), "/CampaignManagement/x"), base());
    }
}
