//! OAuth 1.0a request signing (RFC 5849), pure: the signature base string (§3.4.1), HMAC-SHA1
//! (§3.4.2) keyed by `consumer_secret&token_secret`, the `Authorization: OAuth …` header (§3.5.1),
//! and the server side of the same (reading the header and checking a signature), which the
//! sandbox uses to verify requests the way the X Ads API does.
//!
//! Nonces and timestamps are the caller's: this module does no IO and reads no clock.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use url::Url;

/// The one signature method tokenwarden signs with (X accepts only this one).
pub const HMAC_SHA1: &str = "HMAC-SHA1";

/// RFC 5849 §3.6: percent-encode everything but the unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`), over the UTF-8 bytes, with upper-case hex digits.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (the inverse of [`percent_encode`]: OAuth header values, the proxy's
/// path segments). `None` when an escape is malformed (two hex digits, nothing else: `%+1` is
/// refused) or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// RFC 5849 §3.4.1.2: the base string URI: scheme and host in lower case, the port only when it
/// is not the scheme's default, the path, and no query or fragment.
pub fn base_string_uri(url: &Url) -> String {
    let scheme = url.scheme().to_ascii_lowercase();
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    // The url crate already drops a scheme's default port (`:80` on http, `:443` on https).
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let path = if url.path().is_empty() {
        "/"
    } else {
        url.path()
    };
    format!("{scheme}://{host}{port}{path}")
}

/// The request's own parameters that are signed (RFC 5849 §3.4.1.3.1): the query's pairs, and a
/// form body's (`application/x-www-form-urlencoded` only; pass `None` for any other body), both
/// decoded as forms (`+` is a space).
pub fn request_params(url: &Url, form_body: Option<&[u8]>) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some(body) = form_body {
        params.extend(
            url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    params
}

/// Whether a body with this `Content-Type` is signed: only `application/x-www-form-urlencoded`
/// (RFC 5849 §3.4.1.3.1); JSON and other bodies are not part of the signature.
pub fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| {
        c.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    })
}

/// A nonce from 16 random bytes the caller drew: 32 hex digits (RFC 5849 §3.3 leaves the form
/// to the client; X's examples use letters and digits only).
pub fn nonce_from(random: u128) -> String {
    format!("{random:032x}")
}

/// RFC 5849 §3.4.1.3.2: every name and value percent-encoded, sorted by name then value, joined
/// as `name=value` with `&`. `oauth_signature` (and `realm`, which travels only in the header) are
/// never part of it.
pub fn normalized_params(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "oauth_signature" && k != "realm")
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 5849 §3.4.1.1: `METHOD&encoded(base URI)&encoded(normalized parameters)`. `params` holds
/// the request's parameters and the `oauth_*` protocol parameters together.
pub fn signature_base_string(method: &str, url: &Url, params: &[(String, String)]) -> String {
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent_encode(&base_string_uri(url)),
        percent_encode(&normalized_params(params))
    )
}

/// RFC 5849 §3.4.2: base64 of HMAC-SHA1 over the base string, keyed by the encoded consumer
/// secret and token secret joined by `&` (the token secret empty before there is a token).
pub fn hmac_sha1(consumer_secret: &str, token_secret: &str, base_string: &str) -> String {
    let key = format!(
        "{}&{}",
        percent_encode(consumer_secret),
        percent_encode(token_secret)
    );
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(base_string.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The secrets and identifiers a signature is made with. `Debug` shows neither secret.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The app's consumer key (API key): public, sent as `oauth_consumer_key`.
    pub consumer_key: &'a str,
    /// The app's consumer secret: signs, never sent.
    pub consumer_secret: &'a str,
    /// The token (request token or access token), sent as `oauth_token`; `None` for the
    /// request-token call.
    pub token: Option<&'a str>,
    /// The token's secret: signs, never sent. Empty with no token.
    pub token_secret: &'a str,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("consumer_key", &self.consumer_key)
            .field("token", &self.token.map(|_| "[set]"))
            .finish_non_exhaustive()
    }
}

/// One request to sign.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// The full URL, with its query (the query's parameters are signed).
    pub url: &'a Url,
    /// A form-urlencoded body's bytes, signed too; `None` for other bodies (JSON is not signed).
    pub form_body: Option<&'a [u8]>,
}

/// The per-request protocol values: the caller's nonce (random, unique per timestamp) and the
/// Unix time, plus extra `oauth_*` parameters of the flow (`oauth_callback`, `oauth_verifier`).
#[derive(Debug, Clone)]
pub struct Stamp<'a> {
    /// `oauth_nonce`.
    pub nonce: &'a str,
    /// `oauth_timestamp`, Unix seconds.
    pub timestamp: i64,
    /// Further protocol parameters (name, value), e.g. `("oauth_callback", "https://…")`.
    pub extra: &'a [(&'a str, &'a str)],
}

/// The `oauth_*` parameters of a signed request, `oauth_signature` included, in header order.
pub fn sign(
    req: &Request<'_>,
    creds: &Credentials<'_>,
    stamp: &Stamp<'_>,
) -> Vec<(String, String)> {
    let mut oauth: Vec<(String, String)> = vec![
        ("oauth_consumer_key".into(), creds.consumer_key.into()),
        ("oauth_nonce".into(), stamp.nonce.into()),
        ("oauth_signature_method".into(), HMAC_SHA1.into()),
        ("oauth_timestamp".into(), stamp.timestamp.to_string()),
    ];
    if let Some(t) = creds.token {
        oauth.push(("oauth_token".into(), t.into()));
    }
    oauth.push(("oauth_version".into(), "1.0".into()));
    for (k, v) in stamp.extra {
        oauth.push(((*k).into(), (*v).into()));
    }
    let mut all = request_params(req.url, req.form_body);
    all.extend(oauth.iter().cloned());
    let base = signature_base_string(req.method, req.url, &all);
    let signature = hmac_sha1(creds.consumer_secret, creds.token_secret, &base);
    oauth.push(("oauth_signature".into(), signature));
    oauth.sort();
    oauth
}

/// RFC 5849 §3.5.1: `OAuth name="value", …`, names and values percent-encoded.
pub fn header_value(oauth: &[(String, String)]) -> String {
    let parts: Vec<String> = oauth
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", percent_encode(k), percent_encode(v)))
        .collect();
    format!("OAuth {}", parts.join(", "))
}

/// Signs `req` and returns the `Authorization` header value.
pub fn authorization(req: &Request<'_>, creds: &Credentials<'_>, stamp: &Stamp<'_>) -> String {
    header_value(&sign(req, creds, stamp))
}

/// Reads an `Authorization: OAuth …` header into its parameters (decoded). `None` when it is not
/// an OAuth header or is malformed. At most 32 parameters of 1 KiB are read.
pub fn parse_authorization(value: &str) -> Option<Vec<(String, String)>> {
    let rest = value.trim();
    let (scheme, rest) = rest.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("OAuth") || rest.len() > 32 * 1024 {
        return None;
    }
    let mut out = Vec::new();
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=')?;
        let v = v.trim().strip_prefix('"')?.strip_suffix('"')?;
        out.push((percent_decode(k.trim())?, percent_decode(v)?));
        if out.len() > 32 {
            return None;
        }
    }
    Some(out)
}

/// Why a signed request was refused by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// A required protocol parameter is missing (its name).
    Missing(&'static str),
    /// A signature method other than HMAC-SHA1.
    Method(String),
    /// The signature does not match.
    BadSignature,
}

/// The server side: recomputes the signature of a request whose protocol parameters are
/// `oauth` (read from its header) with the secrets the server holds, and compares in constant
/// time. Nonce and timestamp policies are the caller's.
pub fn verify(
    req: &Request<'_>,
    oauth: &[(String, String)],
    consumer_secret: &str,
    token_secret: &str,
) -> Result<(), VerifyError> {
    let get = |name: &'static str| {
        oauth
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or(VerifyError::Missing(name))
    };
    let given = get("oauth_signature")?;
    let method = get("oauth_signature_method")?;
    if method != HMAC_SHA1 {
        return Err(VerifyError::Method(method.to_string()));
    }
    get("oauth_consumer_key")?;
    get("oauth_nonce")?;
    get("oauth_timestamp")?;
    let mut all = request_params(req.url, req.form_body);
    all.extend(oauth.iter().filter(|(k, _)| k != "realm").cloned());
    let base = signature_base_string(req.method, req.url, &all);
    let want = hmac_sha1(consumer_secret, token_secret, &base);
    use subtle::ConstantTimeEq;
    if bool::from(want.as_bytes().ct_eq(given.as_bytes())) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // RFC 5849 §3.4.1.1: the request
    //   POST /request?b5=%3D%253D&a3=a&c%40=&a2=r%20b  Host: example.com
    //   body c2&a3=2+q, with the protocol parameters of its Authorization header,
    // has this base string (quoted verbatim from the RFC, line breaks removed).
    #[test]
    fn rfc5849_3_4_1_1_base_string() {
        let url = u("http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b");
        let mut params = request_params(&url, Some(b"c2&a3=2+q"));
        params.extend(pairs(&[
            ("realm", "Example"),
            ("oauth_consumer_key", "9djdj82h48djs9d2"),
            ("oauth_token", "kkk9d7dh3k39sjv7"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131201"),
            ("oauth_nonce", "7d8f3e4a"),
            ("oauth_signature", "bYT5CMsGcbgUdFHObYMEfcx6bsw="),
        ]));
        assert_eq!(
            signature_base_string("POST", &url, &params),
            "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
        );
        // §3.4.1.3.2's normalized parameters of the same request.
        assert_eq!(
            normalized_params(&params),
            "a2=r%20b&a3=2%20q&a3=a&b5=%3D%253D&c%40=&c2=&oauth_consumer_key=9djdj82h48djs9d2&oauth_nonce=7d8f3e4a&oauth_signature_method=HMAC-SHA1&oauth_timestamp=137131201&oauth_token=kkk9d7dh3k39sjv7"
        );
    }

    // RFC 5849 §3.4.1.2's examples.
    #[test]
    fn rfc5849_3_4_1_2_base_uri() {
        assert_eq!(
            base_string_uri(&u("http://EXAMPLE.COM:80/r%20v/X?id=123")),
            "http://example.com/r%20v/X"
        );
        assert_eq!(
            base_string_uri(&u("https://www.example.net:8080/?q=1")),
            "https://www.example.net:8080/"
        );
    }

    // X's "Creating a signature" worked example (docs.x.com, formerly developer.twitter.com):
    // the parameter string and base string are quoted from the page. The page's URL was
    // https://api.twitter.com/1.1/statuses/update.json (today's text says api.x.com, whose base
    // string differs only in the host).
    const X_CONSUMER_KEY: &str = "xvz1evFS4wEEPTGEFPHBog";
    const X_CONSUMER_SECRET: &str = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw";
    const X_TOKEN: &str = "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb";
    const X_TOKEN_SECRET: &str = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE";
    const X_NONCE: &str = "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg";
    const X_BODY: &[u8] =
        b"status=Hello%20Ladies%20%2b%20Gentlemen%2c%20a%20signed%20OAuth%20request%21";

    fn x_creds() -> Credentials<'static> {
        Credentials {
            consumer_key: X_CONSUMER_KEY,
            consumer_secret: X_CONSUMER_SECRET,
            token: Some(X_TOKEN),
            token_secret: X_TOKEN_SECRET,
        }
    }

    #[test]
    fn x_documented_example() {
        let url = u("https://api.twitter.com/1.1/statuses/update.json?include_entities=true");
        let stamp = Stamp {
            nonce: X_NONCE,
            timestamp: 1318622958,
            extra: &[],
        };
        let req = Request {
            method: "POST",
            url: &url,
            form_body: Some(X_BODY),
        };
        let mut all = request_params(&url, Some(X_BODY));
        all.extend(pairs(&[
            ("oauth_consumer_key", X_CONSUMER_KEY),
            ("oauth_nonce", X_NONCE),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "1318622958"),
            ("oauth_token", X_TOKEN),
            ("oauth_version", "1.0"),
        ]));
        assert_eq!(
            normalized_params(&all),
            "include_entities=true&oauth_consumer_key=xvz1evFS4wEEPTGEFPHBog&oauth_nonce=kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg&oauth_signature_method=HMAC-SHA1&oauth_timestamp=1318622958&oauth_token=370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb&oauth_version=1.0&status=Hello%20Ladies%20%2B%20Gentlemen%2C%20a%20signed%20OAuth%20request%21"
        );
        let base = signature_base_string("POST", &url, &all);
        assert_eq!(
            base,
            "POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521"
        );
        // The page's signing key.
        assert_eq!(
            format!(
                "{}&{}",
                percent_encode(X_CONSUMER_SECRET),
                percent_encode(X_TOKEN_SECRET)
            ),
            "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw&LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"
        );
        // HMAC-SHA1 of that base string under that key, as every conforming implementation
        // computes it (e.g. `openssl dgst -sha1 -hmac`).
        assert_eq!(
            hmac_sha1(X_CONSUMER_SECRET, X_TOKEN_SECRET, &base),
            "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
        );
        // The whole header, with the signature percent-encoded.
        assert_eq!(
            authorization(&req, &x_creds(), &stamp),
            "OAuth oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\", oauth_nonce=\"kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg\", oauth_signature=\"hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D\", oauth_signature_method=\"HMAC-SHA1\", oauth_timestamp=\"1318622958\", oauth_token=\"370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb\", oauth_version=\"1.0\""
        );
    }

    // The signature the page printed, tnnArxj06cWHq44gCs1OSKk/jLY=, is the one of the original
    // version of the example, whose URL was https://api.twitter.com/1/statuses/update.json.
    #[test]
    fn x_documented_signature_of_the_v1_url() {
        let url = u("https://api.twitter.com/1/statuses/update.json?include_entities=true");
        let req = Request {
            method: "POST",
            url: &url,
            form_body: Some(X_BODY),
        };
        let stamp = Stamp {
            nonce: X_NONCE,
            timestamp: 1318622958,
            extra: &[],
        };
        let oauth = sign(&req, &x_creds(), &stamp);
        let sig = &oauth
            .iter()
            .find(|(k, _)| k == "oauth_signature")
            .unwrap()
            .1;
        assert_eq!(sig, "tnnArxj06cWHq44gCs1OSKk/jLY=");
    }

    #[test]
    fn percent_encoding_is_rfc3986() {
        assert_eq!(
            percent_encode("Ladies + Gentlemen, a!b'c(d)e*f~_.-"),
            "Ladies%20%2B%20Gentlemen%2C%20a%21b%27c%28d%29e%2Af~_.-"
        );
        assert_eq!(percent_encode("é☃"), "%C3%A9%E2%98%83");
        assert_eq!(percent_decode("%C3%A9%2B").as_deref(), Some("é+"));
        assert_eq!(percent_decode("%G1"), None);
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn verify_round_trip_and_tampering() {
        let url = u("https://ads-api.x.com/12/accounts?count=5");
        let req = Request {
            method: "GET",
            url: &url,
            form_body: None,
        };
        let stamp = Stamp {
            nonce: "n0nce",
            timestamp: 1_800_000_000,
            extra: &[],
        };
        let header = authorization(&req, &x_creds(), &stamp);
        let oauth = parse_authorization(&header).unwrap();
        assert_eq!(
            verify(&req, &oauth, X_CONSUMER_SECRET, X_TOKEN_SECRET),
            Ok(())
        );
        // Another token secret, another consumer secret, another query, another method.
        assert_eq!(
            verify(&req, &oauth, X_CONSUMER_SECRET, "other"),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(&req, &oauth, "other", X_TOKEN_SECRET),
            Err(VerifyError::BadSignature)
        );
        let tampered = u("https://ads-api.x.com/12/accounts?count=6");
        let req2 = Request {
            url: &tampered,
            ..req
        };
        assert_eq!(
            verify(&req2, &oauth, X_CONSUMER_SECRET, X_TOKEN_SECRET),
            Err(VerifyError::BadSignature)
        );
        let req3 = Request {
            method: "POST",
            ..req
        };
        assert_eq!(
            verify(&req3, &oauth, X_CONSUMER_SECRET, X_TOKEN_SECRET),
            Err(VerifyError::BadSignature)
        );
        let no_sig: Vec<_> = oauth
            .iter()
            .filter(|(k, _)| k != "oauth_signature")
            .cloned()
            .collect();
        assert_eq!(
            verify(&req, &no_sig, X_CONSUMER_SECRET, X_TOKEN_SECRET),
            Err(VerifyError::Missing("oauth_signature"))
        );
    }

    #[test]
    fn parse_refuses_garbage() {
        assert_eq!(parse_authorization("Bearer abc"), None);
        assert_eq!(parse_authorization("OAuth a=b"), None);
        assert_eq!(parse_authorization("OAuth a=\"%zz\""), None);
        assert_eq!(
            parse_authorization("OAuth realm=\"X\", oauth_token=\"a%2Bb\""),
            Some(pairs(&[("realm", "X"), ("oauth_token", "a+b")]))
        );
    }
}
