//! Limits per client address, against guessing and flooding from the internet (issue 13):
//!
//! - [`ClientAddr`]: who is asking, from the `ConnectInfo<SocketAddr>` that
//!   `tokenwarden_http::serve` puts on every request. `X-Forwarded-For` is believed only from the
//!   configured [`TrustedProxies`] (none by default: anyone can send it). Behind a reverse proxy
//!   that is not configured, every client has the proxy's address, so the limits then apply to
//!   all clients together.
//! - [`FailureWindow`]: failed attempts (sign-ins, refused API keys) in a sliding window; past the
//!   limit the key is refused until the oldest counted failure ages out.
//! - [`TokenBuckets`]: a request rate with a burst (the connect flow's pages).
//! - [`ClientLimits`]: the daemon's tables, and [`connect_rate`], the layer that applies the
//!   bucket to every path under `/connect/` and `/callback/`. Platform callbacks
//!   (`/callbacks/…`, [`crate::deauthorize`]) have a bucket of their own.
//!
//! Time is the daemon's injected clock, so tests move it instead of sleeping. Every table is
//! capped: when full, entries that no longer limit anything go first, then the least recently
//! seen, so memory stays bounded under a flood of addresses.

use crate::ServerState;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The address a request came from, as the listener saw it (`None` when the router is served
/// without one, e.g. in a test that calls it directly: those share one "unknown" key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    /// The address in a request's extensions.
    pub fn of(extensions: &Extensions) -> Self {
        ClientAddr(
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| a.ip().to_canonical()),
        )
    }

    /// What limits are keyed by: the IPv4 address, or the IPv6 /64 (one subscriber's usual
    /// allocation, so an attacker cannot get fresh keys by walking its own prefix).
    pub fn key(&self) -> ClientKey {
        ClientKey(self.0.map(|ip| match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
        }))
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str("unknown"),
        }
    }
}

/// The client a request stands for ([`ClientLimits::client`]).
impl FromRequestParts<ServerState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        s: &ServerState,
    ) -> Result<Self, Self::Rejection> {
        Ok(s.limits.client(&parts.headers, &parts.extensions))
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed: addresses or CIDR ranges, none by
/// default. Behind a proxy every connection comes from the proxy, so without this the
/// per-address limits would apply to all clients together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses `"10.0.0.5"`, `"10.0.0.0/8"`, `"2001:db8::/32"`…; the error names the bad entry.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut out = Vec::new();
        for entry in entries {
            let e = entry.trim();
            let (ip, prefix) = match e.split_once('/') {
                Some((ip, p)) => (ip, Some(p)),
                None => (e, None),
            };
            let bad = || {
                format!(
                    "{e:?} is not an IP address or a CIDR range (such as 10.0.0.5 or 10.0.0.0/8)"
                )
            };
            let ip: IpAddr = ip.parse().map_err(|_| bad())?;
            let ip = ip.to_canonical();
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
                None => max,
            };
            out.push((ip, prefix));
        }
        Ok(TrustedProxies(out))
    }

    /// Whether `ip` is one of them.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|(net, prefix)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                u32::from(*n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
                u128::from(*n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }

    /// Whether none is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client a request stands for: the peer, unless the peer is a trusted proxy; then the
    /// nearest address in `X-Forwarded-For` (read from the right) that is not a trusted proxy.
    /// Values to the left of it were written by the client and prove nothing.
    pub fn client(&self, headers: &HeaderMap, peer: ClientAddr) -> ClientAddr {
        let Some(mut client) = peer.0 else {
            return peer;
        };
        if self.is_empty() || !self.contains(client) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip.to_canonical();
            if !self.contains(client) {
                break;
            }
        }
        ClientAddr(Some(client))
    }
}

/// A client address as limits count it (see [`ClientAddr::key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(Option<IpAddr>);

/// Whole seconds to wait, at least one (for `Retry-After`).
pub fn retry_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

fn until(later: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (later - now).to_std().unwrap_or(Duration::ZERO)
}

/// Failures per key in a sliding window: a key with `max` failures in the last `window` is
/// refused until the oldest of them ages out.
#[derive(Debug)]
pub struct FailureWindow<K> {
    max: usize,
    window: TimeDelta,
    cap: usize,
    seen: Mutex<HashMap<K, VecDeque<DateTime<Utc>>>>,
}

impl<K: Hash + Eq + Clone> FailureWindow<K> {
    /// At most `max` failures per `window`, for at most `cap` keys at once.
    pub fn new(max: usize, window: Duration, cap: usize) -> Self {
        FailureWindow {
            max: max.max(1),
            window: TimeDelta::from_std(window).unwrap_or(TimeDelta::MAX),
            cap: cap.max(1),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// How long `key` must wait at `now`, or `None` when it may try.
    pub fn locked(&self, key: &K, now: DateTime<Utc>) -> Option<Duration> {
        let seen = self.seen.lock();
        let failures = seen.get(key)?;
        let oldest = *failures.front()?;
        (failures.len() >= self.max && now - oldest < self.window)
            .then(|| until(oldest + self.window, now).max(Duration::from_secs(1)))
    }

    /// Counts a failure of `key` at `now`.
    pub fn record(&self, key: K, now: DateTime<Utc>) {
        let mut seen = self.seen.lock();
        if !seen.contains_key(&key) && seen.len() >= self.cap {
            let window = self.window;
            seen.retain(|_, f| f.back().is_some_and(|t| now - *t < window));
            if seen.len() >= self.cap
                && let Some(stalest) = seen
                    .iter()
                    .min_by_key(|(_, f)| f.back().copied())
                    .map(|(k, _)| k.clone())
            {
                seen.remove(&stalest);
            }
        }
        let failures = seen.entry(key).or_default();
        failures.push_back(now);
        // Only the newest `max` decide a lockout.
        while failures.len() > self.max {
            failures.pop_front();
        }
    }

    /// Forgets `key`'s failures (after it succeeded).
    pub fn clear(&self, key: &K) {
        self.seen.lock().remove(key);
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.seen.lock().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests allowed per minute, on average.
    pub per_minute: u32,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
}

/// A token bucket per key: each holds up to `burst` tokens and gains `per_minute` a minute; a
/// request takes one.
#[derive(Debug)]
pub struct TokenBuckets<K> {
    cap: usize,
    inner: Mutex<Buckets<K>>,
}

#[derive(Debug)]
struct Buckets<K> {
    rate: Rate,
    held: HashMap<K, (f64, DateTime<Utc>)>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn level(&self, (tokens, at): (f64, DateTime<Utc>), now: DateTime<Utc>) -> f64 {
        let per_sec = f64::from(self.rate.per_minute) / 60.0;
        let elapsed = until(now, at).as_secs_f64();
        (tokens + elapsed * per_sec).min(f64::from(self.rate.burst))
    }
}

impl<K: Hash + Eq + Clone> TokenBuckets<K> {
    /// Buckets with `rate`, for at most `cap` keys at once.
    pub fn new(rate: Rate, cap: usize) -> Self {
        TokenBuckets {
            cap: cap.max(1),
            inner: Mutex::new(Buckets {
                rate,
                held: HashMap::new(),
            }),
        }
    }

    /// Changes the rate (buckets already held keep their level).
    pub fn set_rate(&self, rate: Rate) {
        self.inner.lock().rate = rate;
    }

    /// The rate.
    pub fn rate(&self) -> Rate {
        self.inner.lock().rate
    }

    /// Takes a token for `key` at `now`; when there is none, how long until there is.
    pub fn take(&self, key: &K, now: DateTime<Utc>) -> Result<(), Duration> {
        let mut b = self.inner.lock();
        let burst = f64::from(b.rate.burst);
        if !b.held.contains_key(key) && b.held.len() >= self.cap {
            // A full bucket limits nothing: it is the same as no bucket.
            let full: Vec<K> = b
                .held
                .iter()
                .filter(|(_, v)| b.level(**v, now) >= burst)
                .map(|(k, _)| k.clone())
                .collect();
            for k in full {
                b.held.remove(&k);
            }
            if b.held.len() >= self.cap
                && let Some(stalest) = b
                    .held
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
            {
                b.held.remove(&stalest);
            }
        }
        let (level, at) = match b.held.get(key) {
            // A clock that steps back keeps the later reading, so it refills nothing twice.
            Some(v) => (b.level(*v, now), v.1.max(now)),
            None => (burst, now),
        };
        if level >= 1.0 {
            b.held.insert(key.clone(), (level - 1.0, at));
            return Ok(());
        }
        b.held.insert(key.clone(), (level, at));
        let per_sec = f64::from(b.rate.per_minute) / 60.0;
        if per_sec <= 0.0 {
            return Err(Duration::from_secs(60));
        }
        Err(Duration::from_secs_f64((1.0 - level) / per_sec))
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.inner.lock().held.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Refused API keys allowed per address per [`FAILURE_WINDOW`] before the address waits.
pub const API_KEY_FAILURES: usize = 20;
/// The window failures are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// The most addresses (or key ids) a table holds.
pub const MAX_CLIENTS: usize = 10_000;
/// The connect flow's default rate per address: 30 a minute, 30 at once (a person connects a
/// few accounts; a script that starts hundreds of authorizations is refused).
pub const CONNECT_RATE: Rate = Rate {
    per_minute: 30,
    burst: 30,
};

/// Platform callbacks' default rate per address (`/callbacks/…`): a platform sends from a few
/// addresses, and a wave of users removing an app at once must get through, so it is generous;
/// it only keeps one address from making the daemon verify signatures without end.
pub const CALLBACK_RATE: Rate = Rate {
    per_minute: 600,
    burst: 300,
};

/// The daemon's per-address tables (the dashboard's sign-in failures live with its sessions).
#[derive(Debug)]
pub struct ClientLimits {
    /// Refused API keys (`/v1/*`, `/proxy/*`, `/metrics`), per address.
    pub api_key_failures: FailureWindow<ClientKey>,
    /// Requests under `/connect/` and `/callback/`, per address.
    pub connect: TokenBuckets<ClientKey>,
    /// Platform callbacks (`/callbacks/…`), per address.
    pub callbacks: TokenBuckets<ClientKey>,
    trusted: parking_lot::RwLock<TrustedProxies>,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            api_key_failures: FailureWindow::new(API_KEY_FAILURES, FAILURE_WINDOW, MAX_CLIENTS),
            connect: TokenBuckets::new(CONNECT_RATE, MAX_CLIENTS),
            callbacks: TokenBuckets::new(CALLBACK_RATE, MAX_CLIENTS),
            trusted: parking_lot::RwLock::default(),
        }
    }
}

impl ClientLimits {
    /// Believes `X-Forwarded-For` from these proxies (none by default).
    pub fn set_trusted_proxies(&self, proxies: TrustedProxies) {
        *self.trusted.write() = proxies;
    }

    /// The client a request stands for (see [`TrustedProxies::client`]).
    pub fn client(&self, headers: &HeaderMap, extensions: &Extensions) -> ClientAddr {
        self.trusted
            .read()
            .client(headers, ClientAddr::of(extensions))
    }

    /// [`Limits::client`] for a request from `peer` (a shortcut's, which carries no `ConnectInfo`).
    pub fn client_at(&self, headers: &HeaderMap, peer: SocketAddr) -> ClientAddr {
        self.trusted
            .read()
            .client(headers, ClientAddr(Some(peer.ip().to_canonical())))
    }
}

/// The paths [`connect_rate`] limits: the connect flow, including routes added under it later.
const CONNECT_PREFIXES: [&str; 2] = ["/connect/", "/callback/"];

/// Limits requests under `/connect/` and `/callback/` per client address: a `429` page with
/// `Retry-After` once the address's bucket is empty.
pub async fn connect_rate(State(s): State<ServerState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !CONNECT_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return next.run(req).await;
    }
    let client = s.limits.client(req.headers(), req.extensions());
    match s.limits.connect.take(&client.key(), s.clock.now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            tracing::warn!(%client, "connect flow: too many requests from one address");
            let secs = retry_secs(wait);
            let mut r = crate::page::render(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                &[format!(
                    "Too many authorization requests came from your address. Wait {secs} seconds and try again."
                )],
                None,
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_failure_window_locks_at_the_limit_and_opens_when_the_oldest_ages_out() {
        let w = FailureWindow::new(3, Duration::from_secs(60), 100);
        for s in [0, 10, 20] {
            assert_eq!(w.locked(&"a", t(s)), None);
            w.record("a", t(s));
        }
        assert_eq!(w.locked(&"a", t(20)), Some(Duration::from_secs(40)));
        assert_eq!(w.locked(&"b", t(20)), None, "another key is not locked");
        assert_eq!(w.locked(&"a", t(59)), Some(Duration::from_secs(1)));
        assert_eq!(w.locked(&"a", t(60)), None, "the failure at 0 aged out");
        w.record("a", t(61));
        assert_eq!(
            w.locked(&"a", t(61)),
            Some(Duration::from_secs(9)),
            "until the one at 10 ages out"
        );
        w.clear(&"a");
        assert_eq!(w.locked(&"a", t(61)), None);
    }

    #[test]
    fn a_failure_window_stays_bounded_and_evicts_the_stalest_first() {
        let w = FailureWindow::new(2, Duration::from_secs(60), 3);
        w.record(1, t(0));
        w.record(1, t(0));
        w.record(2, t(1));
        w.record(3, t(2));
        assert_eq!(w.len(), 3);
        // A fourth key: nothing has aged out, so the least recently failing key (1) goes.
        w.record(4, t(3));
        assert_eq!(w.len(), 3);
        assert_eq!(w.locked(&1, t(3)), None);
        // Later, expired entries go before live ones.
        w.record(4, t(100));
        w.record(4, t(100));
        w.record(5, t(100));
        assert_eq!(w.len(), 2, "2 and 3 had aged out");
        assert!(w.locked(&4, t(100)).is_some(), "a live lockout survives");
        for k in 0..10_000 {
            w.record(k, t(200));
        }
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let b = TokenBuckets::new(
            Rate {
                per_minute: 30,
                burst: 5,
            },
            100,
        );
        for _ in 0..5 {
            assert_eq!(b.take(&"a", t(0)), Ok(()));
        }
        assert_eq!(b.take(&"a", t(0)), Err(Duration::from_secs(2)));
        assert_eq!(b.take(&"b", t(0)), Ok(()), "another key has its own bucket");
        assert_eq!(b.take(&"a", t(1)), Err(Duration::from_secs(1)));
        assert_eq!(b.take(&"a", t(2)), Ok(()), "one token every 2 s");
        assert!(b.take(&"a", t(2)).is_err());
        // A quiet spell refills to the burst, not beyond.
        for _ in 0..5 {
            assert_eq!(b.take(&"a", t(3600)), Ok(()));
        }
        assert!(b.take(&"a", t(3600)).is_err());
        // A clock that steps back refills nothing and breaks nothing.
        assert!(b.take(&"a", t(0)).is_err());
    }

    #[test]
    fn buckets_stay_bounded_and_forget_full_ones_first() {
        let rate = Rate {
            per_minute: 60,
            burst: 2,
        };
        let b = TokenBuckets::new(rate, 3);
        for k in 0..1000 {
            let _ = b.take(&k, t(0));
        }
        assert_eq!(b.len(), 3);
        let b = TokenBuckets::new(rate, 3);
        b.take(&"a", t(0)).unwrap();
        b.take(&"b", t(0)).unwrap();
        b.take(&"c", t(0)).unwrap();
        b.take(&"c", t(0)).unwrap();
        assert!(b.take(&"c", t(0)).is_err());
        // One second on, a and b are full again (as good as unknown); c has one token.
        b.take(&"d", t(1)).unwrap();
        assert_eq!(b.len(), 2, "a and b were forgotten");
        b.take(&"c", t(1)).unwrap();
        assert!(b.take(&"c", t(1)).is_err(), "c kept its level");
    }

    #[test]
    fn clients_are_keyed_by_ipv4_address_or_ipv6_prefix() {
        let of = |a: &str| {
            let mut e = Extensions::new();
            e.insert(ConnectInfo(a.parse::<SocketAddr>().unwrap()));
            ClientAddr::of(&e)
        };
        assert_eq!(
            of("10.0.0.1:5").key(),
            of("10.0.0.1:6").key(),
            "not the port"
        );
        assert_ne!(of("10.0.0.1:5").key(), of("10.0.0.2:5").key());
        assert_eq!(
            of("[2001:db8:1:2::1]:5").key(),
            of("[2001:db8:1:2:ffff::9]:5").key()
        );
        assert_ne!(
            of("[2001:db8:1:2::1]:5").key(),
            of("[2001:db8:1:3::1]:5").key()
        );
        assert_eq!(
            of("[::ffff:10.0.0.1]:5"),
            of("10.0.0.1:5"),
            "v4-mapped is v4"
        );
        assert_eq!(of("[2001:db8::1]:5").to_string(), "2001:db8::1");
        let none = ClientAddr::of(&Extensions::new());
        assert_eq!(none.to_string(), "unknown");
        assert_eq!(none.key(), ClientAddr(None).key());
    }

    #[test]
    fn x_forwarded_for_is_read_only_from_trusted_proxies_and_from_the_right() {
        let peer = |a: &str| ClientAddr(Some(a.parse().unwrap()));
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            h
        };
        let none = TrustedProxies::default();
        let xff = headers(&["203.0.113.7"]);
        assert_eq!(none.client(&xff, peer("10.0.0.5")), peer("10.0.0.5"));
        let t = TrustedProxies::parse(["10.0.0.0/8", "2001:db8::1"]).unwrap();
        assert_eq!(t.client(&xff, peer("10.0.0.5")), peer("203.0.113.7"));
        assert_eq!(
            t.client(&xff, peer("192.0.2.9")),
            peer("192.0.2.9"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(t.client(&headers(&[]), peer("10.0.0.5")), peer("10.0.0.5"));
        // The client's own values sit to the left; chained proxies to the right.
        for (values, want) in [
            (&["1.2.3.4, 203.0.113.7"][..], "203.0.113.7"),
            (&["203.0.113.7, 10.1.1.1"][..], "203.0.113.7"),
            (&["1.2.3.4", "203.0.113.7, 10.9.9.9"][..], "203.0.113.7"),
            (&["garbage, 203.0.113.7"][..], "203.0.113.7"),
            (&["203.0.113.7, garbage"][..], "10.0.0.5"),
            (&["10.2.2.2"][..], "10.2.2.2"),
            (&["::ffff:198.51.100.1"][..], "198.51.100.1"),
        ] {
            assert_eq!(
                t.client(&headers(values), peer("10.0.0.5")),
                peer(want),
                "{values:?}"
            );
        }
        assert_eq!(
            t.client(&xff, peer("2001:db8::1")),
            peer("203.0.113.7"),
            "an IPv6 proxy"
        );
        assert_eq!(t.client(&xff, ClientAddr(None)), ClientAddr(None));
    }

    #[test]
    fn trusted_proxies_parse_addresses_and_ranges_and_name_bad_ones() {
        let t = TrustedProxies::parse(["127.0.0.1", " 10.0.0.0/8 ", "2001:db8::/32", "0.0.0.0/0"])
            .unwrap();
        assert!(t.contains("127.0.0.1".parse().unwrap()));
        assert!(t.contains("10.255.0.1".parse().unwrap()));
        assert!(t.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!t.contains("2001:db9::1".parse().unwrap()));
        let t = TrustedProxies::parse(["192.168.1.0/24"]).unwrap();
        assert!(t.contains("192.168.1.77".parse().unwrap()));
        assert!(!t.contains("192.168.2.1".parse().unwrap()));
        assert!(t.contains("::ffff:192.168.1.1".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "localhost",
            "10.0.0.1/",
            "2001:db8::/129",
            "",
        ] {
            let e = TrustedProxies::parse([bad]).unwrap_err();
            assert!(e.contains(&format!("{:?}", bad.trim())), "{e}");
        }
        assert!(TrustedProxies::parse([]).unwrap().is_empty());
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_secs(Duration::from_millis(2001)), 3);
    }
}
