//! Webhooks the Standard Webhooks way (<https://www.standardwebhooks.com/>): what a state change
//! says, how it is signed, and which URLs may receive it. Pure: the sending lives in the server.
//!
//! - The body is `{"type": "connection.state_changed", "timestamp": …, "data": {…}}`, never a
//!   secret: ids, states, problems with their fixes.
//! - The signature is `v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>`,
//!   where the key is the base64 part of the endpoint's `whsec_…` secret.
//! - A URL must be `https` (or `http` when private networks are allowed, for tests and local
//!   receivers), carry no user-info, and, unless allowed, not name a private, loopback or
//!   link-local address. Names are checked again after resolution by the sender.

use crate::connection::{ConnectionState, Problem};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

/// The prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The event type of a state change.
pub const STATE_CHANGED: &str = "connection.state_changed";

/// The body of a state-change webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// `connection.state_changed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened (RFC 3339, UTC).
    pub timestamp: String,
    /// What happened.
    pub data: StateChanged,
}

/// A connection moved from one state to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChanged {
    /// The connection.
    pub connection_id: String,
    /// Its platform.
    pub provider: String,
    /// Where it was.
    pub from: String,
    /// Where it is.
    pub to: String,
    /// What is wrong now and how to fix it (empty when healthy).
    pub problems: Vec<ProblemView>,
    /// Where a person re-authorizes, when that is the fix (added by the sender, which knows the
    /// public URL; the same on every retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reauthorize_url: Option<String>,
}

/// A problem as a webhook shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemView {
    /// Stable code.
    pub code: String,
    /// One line for a person.
    pub title: String,
    /// What to do.
    pub fix: String,
}

impl Envelope {
    /// The body for a change of `connection` from `from` to `to` at `at`.
    pub fn state_changed(
        connection_id: &str,
        provider: &str,
        from: ConnectionState,
        to: ConnectionState,
        problems: &[Problem],
        at: DateTime<Utc>,
    ) -> Self {
        Envelope {
            kind: STATE_CHANGED.to_owned(),
            timestamp: at.to_rfc3339_opts(SecondsFormat::Millis, true),
            data: StateChanged {
                connection_id: connection_id.to_owned(),
                provider: provider.to_owned(),
                from: from.as_str().to_owned(),
                to: to.as_str().to_owned(),
                problems: problems
                    .iter()
                    .map(|p| ProblemView {
                        code: p.code.as_str().to_owned(),
                        title: p.title.clone(),
                        fix: p.fix.clone(),
                    })
                    .collect(),
                reauthorize_url: None,
            },
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// A signing secret that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook signing secret is `whsec_` followed by base64 of 24 to 64 bytes")]
pub struct BadSecret;

/// The key bytes of a `whsec_…` secret.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let b = secret.strip_prefix(SECRET_PREFIX).ok_or(BadSecret)?;
    let key = B64.decode(b).map_err(|_| BadSecret)?;
    if !(24..=64).contains(&key.len()) {
        return Err(BadSecret);
    }
    Ok(key)
}

/// A `whsec_…` secret from random bytes the caller drew.
pub fn secret_from_bytes(bytes: &[u8; 32]) -> String {
    format!("{SECRET_PREFIX}{}", B64.encode(bytes))
}

/// The `webhook-signature` value for one message.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &str) -> String {
    format!("v1,{}", B64.encode(mac(key, msg_id, timestamp, body)))
}

fn mac(key: &[u8], msg_id: &str, timestamp: i64, body: &str) -> Vec<u8> {
    // HMAC accepts a key of any length.
    let mut m = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(msg_id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// Whether a `webhook-signature` header (space-separated `v1,…` entries) holds a valid signature,
/// compared in constant time. What a receiver does; the tests use it too.
pub fn verify(key: &[u8], msg_id: &str, timestamp: i64, body: &str, header: &str) -> bool {
    let want = mac(key, msg_id, timestamp, body);
    header.split(' ').any(|entry| {
        entry
            .strip_prefix("v1,")
            .and_then(|b| B64.decode(b).ok())
            .is_some_and(|got| subtle::ConstantTimeEq::ct_eq(&got[..], &want[..]).into())
    })
}

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    /// Not a URL.
    #[error("not a URL")]
    Unparsable,
    /// Not https (or http where private networks are allowed).
    #[error("the scheme must be https")]
    Scheme,
    /// `user:password@` in the URL.
    #[error("credentials in the URL are not allowed; sign-in is by the webhook signature")]
    UserInfo,
    /// No host.
    #[error("the URL has no host")]
    NoHost,
    /// A private, loopback, link-local or otherwise internal address.
    #[error("the address {0} is internal; webhooks go to public addresses only")]
    Internal(String),
    /// A fragment.
    #[error("a URL with a #fragment is not allowed")]
    Fragment,
}

/// Checks a webhook URL before it is stored and again before each delivery.
pub fn check_url(raw: &str, allow_private: bool) -> Result<Url, UrlRefusal> {
    let url = Url::parse(raw).map_err(|_| UrlRefusal::Unparsable)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(UrlRefusal::Scheme),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefusal::UserInfo);
    }
    if url.fragment().is_some() {
        return Err(UrlRefusal::Fragment);
    }
    let ip = match url.host() {
        None => return Err(UrlRefusal::NoHost),
        Some(Host::Ipv4(a)) => Some(IpAddr::V4(a)),
        Some(Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if !allow_private && (d == "localhost" || d.ends_with(".localhost")) {
                return Err(UrlRefusal::Internal(d));
            }
            None
        }
    };
    if let Some(ip) = ip
        && !allow_private
        && !is_public(ip)
    {
        return Err(UrlRefusal::Internal(ip.to_string()));
    }
    Ok(url)
}

/// Whether an address is reachable on the public internet (not private, loopback, link-local,
/// unspecified, multicast, documentation, shared or benchmarking space, nor an IPv6 form of one).
///
/// IPv6 forms that carry an IPv4 address reach that address (through a 6to4 or Teredo relay, a
/// NAT64 gateway, or the host's own stack), so they are public only when every IPv4 address they
/// embed is: IPv4-mapped `::ffff:a.b.c.d` and -translated `::ffff:0:a.b.c.d` (RFC 6052 §2.1,
/// RFC 2765), NAT64 `64:ff9b::/96` (RFC 6052), 6to4 `2002::/16` with the address in bits 16..48
/// (RFC 3056), and Teredo `2001::/32` with the server in bits 32..64 and the client in the last
/// 32 bits inverted (RFC 4380 §4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => is_public_v4(a),
        IpAddr::V6(a) => is_public_v6(a),
    }
}

fn is_public_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    !(a.is_private()
        || a.is_loopback()
        || a.is_link_local()
        || a.is_unspecified()
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10 shared
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15 benchmarking
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24 protocol assignments
        || o[0] >= 240)
}

/// The IPv4 address in two 16-bit segments.
fn v4(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

fn is_public_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    match s {
        // IPv4-mapped and IPv4-translated.
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0xffff, 0, hi, lo] => {
            return is_public_v4(v4(hi, lo));
        }
        // NAT64 well-known prefix.
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => return is_public_v4(v4(hi, lo)),
        // 6to4.
        [0x2002, hi, lo, ..] => return is_public_v4(v4(hi, lo)),
        // Teredo: both ends must be public.
        [0x2001, 0, shi, slo, _, _, chi, clo] => {
            return is_public_v4(v4(shi, slo)) && is_public_v4(v4(!chi, !clo));
        }
        _ => {}
    }
    !(a.is_loopback()
        || a.is_unspecified()
        || a.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated, RFC 3879)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x3fff && (s[1] & 0xf000) == 0) // documentation (RFC 9637, 3fff::/20)
        || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments 2001::/23: benchmarking, ORCHID, …
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 beyond the /96: local-use (RFC 8215)
        || s[..6] == [0, 0, 0, 0, 0, 0]) // v4-compatible (deprecated), never a real host
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example from the Standard Webhooks specification's reference libraries.
    #[test]
    fn signature_matches_the_standard_webhooks_test_vector() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            &format!("v1,bm9wZQ== {sig}")
        ));
        assert!(!verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265331,
            body,
            &sig
        ));
        assert!(!verify(&key, "msg_other", 1614265330, body, &sig));
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert_eq!(
            secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(BadSecret)
        );
        assert_eq!(secret_key("whsec_!!!"), Err(BadSecret));
        assert_eq!(secret_key("whsec_AAAA"), Err(BadSecret));
        let s = secret_from_bytes(&[7; 32]);
        assert_eq!(secret_key(&s).unwrap(), vec![7; 32]);
    }

    #[test]
    fn urls_follow_the_ssrf_rules() {
        let ok = |u: &str| check_url(u, false).is_ok();
        assert!(ok("https://hooks.example.com/tw"));
        assert!(ok("https://93.184.216.34/x"));
        for bad in [
            "http://hooks.example.com/",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://localhost/",
            "https://a.localhost./",
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://192.168.0.1/",
            "https://172.16.5.5/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://2130706433/",
            "https://0x7f.1/",
            "https://example.com/#frag",
            "not a url",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad} was allowed");
        }
        assert!(check_url("http://127.0.0.1:9/", true).is_ok());
    }

    /// IPv6 forms that carry an IPv4 address inside them reach that IPv4 address (through a
    /// 6to4 relay, a Teredo relay, a NAT64 gateway or the host's own stack): they are public
    /// only when every IPv4 address they embed is. Each row: the address, whether it is public,
    /// and what it embeds.
    #[test]
    fn ipv6_forms_are_judged_by_the_ipv4_address_they_embed() {
        let table: &[(&str, bool, &str)] = &[
            // 6to4, 2002::/16: the IPv4 address is bits 16..48.
            ("2002:7f00:1::", false, "6to4 of 127.0.0.1"),
            (
                "2002:7f00:0001:ffff::1",
                false,
                "6to4 of 127.0.0.1, any subnet",
            ),
            ("2002:a00:1::1", false, "6to4 of 10.0.0.1"),
            ("2002:c0a8:101::", false, "6to4 of 192.168.1.1"),
            ("2002:ac10:505::", false, "6to4 of 172.16.5.5"),
            (
                "2002:a9fe:a9fe::",
                false,
                "6to4 of 169.254.169.254 (cloud metadata)",
            ),
            ("2002:6440:1::", false, "6to4 of 100.64.0.1"),
            ("2002::", false, "6to4 of 0.0.0.0"),
            ("2002:5db8:d822::1", true, "6to4 of 93.184.216.34"),
            // Teredo, 2001::/32: the server is bits 32..64, the client the last 32 bits
            // inverted.
            (
                "2001:0:4136:e378:8000:63bf:f5ff:fffe",
                false,
                "Teredo client 10.0.0.1",
            ),
            (
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                false,
                "Teredo client 127.0.0.1",
            ),
            (
                "2001:0:4136:e378:8000:63bf:5601:5601",
                false,
                "Teredo client 169.254.169.254",
            ),
            (
                "2001:0:4136:e378:8000:63bf:3f57:fefe",
                false,
                "Teredo client 192.168.1.1",
            ),
            (
                "2001:0:a00:1:8000:63bf:a247:27dd",
                false,
                "Teredo server 10.0.0.1",
            ),
            (
                "2001:0:7f00:1:8000:63bf:a247:27dd",
                false,
                "Teredo server 127.0.0.1",
            ),
            (
                "2001:0:4136:e378:8000:63bf:a247:27dd",
                true,
                "Teredo 65.54.227.120 / 93.184.216.34",
            ),
            // NAT64, 64:ff9b::/96: the IPv4 address is the last 32 bits.
            ("64:ff9b::7f00:1", false, "NAT64 of 127.0.0.1"),
            ("64:ff9b::a00:1", false, "NAT64 of 10.0.0.1"),
            ("64:ff9b::a9fe:a9fe", false, "NAT64 of 169.254.169.254"),
            ("64:ff9b::5db8:d822", true, "NAT64 of 93.184.216.34"),
            (
                "64:ff9b:1::5db8:d822",
                false,
                "local-use NAT64 (RFC 8215): the network's own",
            ),
            ("64:ff9b:0:0:1::5db8:d822", false, "outside the /96"),
            // IPv4-mapped, -translated (SIIT) and -compatible.
            ("::ffff:127.0.0.1", false, "mapped 127.0.0.1"),
            ("::ffff:10.1.2.3", false, "mapped 10.1.2.3"),
            ("::ffff:93.184.216.34", true, "mapped 93.184.216.34"),
            ("::ffff:0:127.0.0.1", false, "translated 127.0.0.1"),
            (
                "::ffff:0:169.254.169.254",
                false,
                "translated 169.254.169.254",
            ),
            ("::ffff:0:93.184.216.34", true, "translated 93.184.216.34"),
            ("::127.0.0.1", false, "compatible (deprecated) 127.0.0.1"),
            (
                "::93.184.216.34",
                false,
                "compatible (deprecated): never a real host",
            ),
            // Other special-purpose IPv6 space (RFC 6890 registry).
            ("100::1", false, "discard-only"),
            ("2001:2::1", false, "benchmarking"),
            ("2001:10::1", false, "ORCHID"),
            ("2001:20::1", false, "ORCHIDv2"),
            ("3fff::1", false, "documentation (RFC 9637)"),
            ("fec0::1", false, "site-local (deprecated)"),
            ("2606:2800:220:1::1", true, "an ordinary global address"),
        ];
        for (text, public, what) in table {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(is_public(ip), *public, "{text}: {what}");
            let url = format!("https://[{ip}]/hook");
            assert_eq!(check_url(&url, false).is_ok(), *public, "{url}: {what}");
            assert!(
                check_url(&format!("http://[{ip}]/"), true).is_ok(),
                "{what}"
            );
        }
    }

    #[test]
    fn the_body_carries_no_more_than_ids_states_and_fixes() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let p = Problem {
            code: crate::state::ProblemCode::Revoked,
            title: "Access was revoked".into(),
            fix: "Reconnect".into(),
            since: at,
        };
        let e = Envelope::state_changed(
            "c1",
            "snapchat",
            ConnectionState::Active,
            ConnectionState::ReauthRequired,
            &[p],
            at,
        );
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["type"], "connection.state_changed");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["data"]["from"], "active");
        assert_eq!(v["data"]["to"], "reauth_required");
        assert_eq!(v["data"]["problems"][0]["fix"], "Reconnect");
        assert!(v["data"].get("reauthorize_url").is_none());
    }
}
