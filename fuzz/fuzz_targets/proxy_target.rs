//! The proxy's URL check over every provider's API bases (hardening rules 9 and 10): whatever
//! path and query a caller sends, an accepted URL stays on the definition's API origin and under
//! its base path, holds no `.`/`..` segment in any encoding, no user info or fragment, and carries
//! no caller `access_token` in any spelling the platform would decode to one.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use tokenwarden_fuzz::provider;
use tokenwarden_engine::target::{build, check_path, relative};
use url::Url;

/// A segment as a server that decodes it and drops `;parameters` (Tomcat, Jetty, Spring) sees it.
fn climbs(raw_segment: &str) -> bool {
    let decoded = percent_decode(raw_segment);
    let cut = decoded.split(';').next().unwrap_or("");
    matches!(cut, "." | "..") || decoded.contains('/') || decoded.contains('\\')
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(v) if b[i] == b'%' => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(selector), Ok(sandbox)) = (u.arbitrary::<u8>(), u.arbitrary::<bool>()) else {
        return;
    };
    let api = &provider(selector).spec.api;
    let base: &Url = if sandbox {
        api.sandbox_base_url.as_ref().unwrap_or(&api.base_url)
    } else {
        &api.base_url
    };
    let text = String::from_utf8_lossy(u.take_rest());
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text.as_ref(), None),
    };
    let checked = check_path(path);
    let Ok(url) = build(base, path, query) else {
        return;
    };
    assert!(checked.is_ok(), "build accepted a path check_path refuses: {path:?}");
    assert_eq!(url.origin(), base.origin(), "{url} left {base}");
    assert_eq!(url.scheme(), base.scheme());
    assert_eq!(url.host_str(), base.host_str());
    assert_eq!(url.port_or_known_default(), base.port_or_known_default());
    assert!(url.username().is_empty() && url.password().is_none());
    assert!(url.fragment().is_none());
    let base_path = base.path().trim_end_matches('/');
    let rest = url
        .path()
        .strip_prefix(base_path)
        .unwrap_or_else(|| panic!("{url} is not under {base}"));
    assert!(rest.starts_with('/'), "{url} is not under {base}");
    for seg in rest.split('/') {
        assert!(!climbs(seg), "{url}: segment {seg:?} climbs out of {base}");
    }
    // The caller's credential parameter never reaches the platform, however it is spelled.
    for (name, _) in url.query_pairs() {
        assert!(
            !name.eq_ignore_ascii_case("access_token"),
            "{url}: a caller's access_token goes through"
        );
        if let Some(p) = api.credential_param.as_deref() {
            assert!(!name.eq_ignore_ascii_case(p), "{url}: a caller's {p} goes through");
        }
    }
    // The URL is what it says: parsing it again changes nothing, and it maps back under the base.
    assert_eq!(Url::parse(url.as_str()).ok().as_ref(), Some(&url));
    let (back, _) = relative(base, &url).expect("an accepted URL lies under its base");
    assert_eq!(back, rest);
});
