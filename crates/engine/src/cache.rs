//! Short-lived caches in front of the store for the two reads every token fetch makes: the API
//! key's check, and the connection with its decrypted token set. Served by the token endpoint, the
//! proxy and the in-process client alike.
//!
//! [`CachedStore`] is the store as this process sees it: a [`Store`] that implements the
//! capabilities it caches ([`Connections`], [`Refreshes`], [`ApiKeys`]) and passes every other one
//! to the store behind it ([`Delegate`]). It answers [`ApiKeys::verify_api_key`] from the key
//! cache, and drops a connection's cached token on every write that can change what a caller
//! should get (initial tokens, a committed refresh, a recorded refresh failure, a state change, a
//! replaced or deleted connection). The token cache itself is only read by the
//! [`TokenService`](crate::TokenService) given it with
//! [`with_cache`](crate::TokenService::with_cache); nothing else reads through it, so the refresh
//! protocol (single-flight, lease, compare-and-swap) always sees the database.
//!
//! What they promise:
//! - **In this process, never stale.** A write through the `CachedStore` drops the entry when the
//!   write returns (or is cancelled). A fill that raced with such a write is refused: each fill
//!   carries a `Ticket` taken before its store reads, and a drop bumps the ticket's epoch, so an
//!   answer read before the write can never land in the cache after it. A revoked API key is
//!   refused at once; a connection marked `reauth_required` or deleted is never served from here.
//! - **Across replicas, stale for at most the TTL** (measured on the daemon's clock, which
//!   `--time-scale` speeds up): another replica's write is seen once this replica's entry ages
//!   out. So is a write made by another program on the same database.
//! - **A token is never handed out past the provider's margin**: each hit checks freshness again,
//!   on the injected clock, and a stale one falls through to the store (and to a refresh).
//! - **Bounded memory**: each cache holds at most its cap, and evicts the oldest entry first.
//! - **No key is cached but a verified, live one**, under a 128-bit keyed hash of what was
//!   presented (two SipHash-2-4 with keys drawn at random when the cache is made, never written
//!   anywhere), never the key. A wrong key is not cached at all, so a flood of random keys costs
//!   what it cost before (one indexed read each) and can neither grow the cache nor evict the
//!   good keys. Without the hash's keys nobody can make a string that files under a cached key
//!   (2^-128 a try), and the lookup's timing says nothing useful about a key. The hash replaced a
//!   SHA-256 of the presented key (issue 19): 5 % of a proxied call's instructions under
//!   valgrind, which cannot use the CPU's SHA instructions; natively a fraction of a percent, so
//!   the gain is small, and nothing is lost. The store's own check, which fills the cache, is
//!   unchanged.
//!
//! Secrets stay in their [`Secret`] wrappers, which zero their
//! memory when an entry is dropped, evicted or replaced; `Debug` shows only sizes.

use crate::Issued;
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokenwarden_core::clock::Clock;
use tokenwarden_core::connection::{Connection, ConnectionState, Problem};
use tokenwarden_core::id::{ConnectionId, ProviderId};
use tokenwarden_core::policy::CrowdPlan;
use tokenwarden_core::secret::Secret;
use tokenwarden_core::token::TokenSet;
use tokenwarden_store::prelude::*;
use tokenwarden_store::{ApiKeyInfo, ApiKeyRole, Delegate, Lease, Store, StoreError, StoredTokens};

/// Cache lookups, by `cache` (`token`, `api_key`) and `outcome` (`hit`, `miss`); the server
/// renders it on `/metrics`. Counted only while the cache is on; a token lookup is a fetch of a
/// fresh token (the proxy's routing read of a cached connection is not counted).
pub const LOOKUPS: &str = "tokenwarden_cache_lookups_total";

/// How long entries live and how many there may be. A TTL of zero turns that cache off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long a connection's token set is served from memory (it must also still be fresh for
    /// the provider's margin). Bounds how long another replica's change goes unseen here.
    pub token_ttl: Duration,
    /// How long a verified API key is trusted without asking the store. Bounds how long a key
    /// revoked on another replica still works here.
    pub api_key_ttl: Duration,
    /// The most connections held; the oldest entry goes first.
    pub max_connections: usize,
    /// The most API keys held (only live, verified keys are ever held).
    pub max_api_keys: usize,
}

impl CacheConfig {
    /// Both caches off: every call reads the store.
    pub const OFF: CacheConfig = CacheConfig {
        token_ttl: Duration::ZERO,
        api_key_ttl: Duration::ZERO,
        max_connections: 0,
        max_api_keys: 0,
    };
}

impl Default for CacheConfig {
    /// One second for tokens, five for API keys, 10,000 connections (a few KiB each), 1,000 keys.
    fn default() -> Self {
        CacheConfig {
            token_ttl: Duration::from_secs(1),
            api_key_ttl: Duration::from_secs(5),
            max_connections: 10_000,
            max_api_keys: 1_000,
        }
    }
}

/// Invalidation epochs are kept per stripe of keys, so a drop refuses only the fills of keys that
/// share its stripe, not every fill in flight.
const STRIPES: usize = 64;

/// Taken before the store is read; a fill with a ticket that an invalidation has passed since is
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    stripe: usize,
    epoch: u64,
}

struct Slot<V> {
    value: Arc<V>,
    at: DateTime<Utc>,
    stamp: u64,
}

struct Rack<K, V, S> {
    map: HashMap<K, Slot<V>, S>,
    /// Insertion order for eviction; entries whose stamp no longer matches the map are skipped.
    order: VecDeque<(K, u64)>,
    stamp: u64,
    epochs: [u64; STRIPES],
}

impl<K: Hash + Eq, V, S: BuildHasher> Rack<K, V, S> {
    fn stripe(&self, key: &K) -> usize {
        (self.map.hasher().hash_one(key) % STRIPES as u64) as usize
    }
}

/// A bounded map whose entries live `ttl` on the clock. `S` hashes its keys: SipHash unless the
/// keys are already random (the key cache's digests), which no one can aim at one bucket.
struct Shelf<K, V, S = std::hash::RandomState> {
    ttl: TimeDelta,
    cap: usize,
    rack: Mutex<Rack<K, V, S>>,
}

impl<K, V, S> std::fmt::Debug for Shelf<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shelf")
            .field("ttl", &self.ttl)
            .field("cap", &self.cap)
            .field("len", &self.rack.lock().map.len())
            .finish()
    }
}

impl<K: Hash + Eq + Clone, V, S: BuildHasher + Default> Shelf<K, V, S> {
    fn new(ttl: Duration, cap: usize) -> Self {
        Shelf {
            ttl: TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX),
            cap,
            rack: Mutex::new(Rack {
                map: HashMap::default(),
                order: VecDeque::new(),
                stamp: 0,
                epochs: [0; STRIPES],
            }),
        }
    }

    fn enabled(&self) -> bool {
        self.ttl > TimeDelta::zero() && self.cap > 0
    }

    /// The entry, if it was stored less than the TTL ago (a clock that went back counts as
    /// expired). An expired entry is dropped on the way.
    fn get(&self, key: &K, now: DateTime<Utc>) -> Option<Arc<V>> {
        let mut rack = self.rack.lock();
        let slot = rack.map.get(key)?;
        if now >= slot.at && now - slot.at < self.ttl {
            return Some(slot.value.clone());
        }
        rack.map.remove(key);
        None
    }

    fn ticket(&self, key: &K) -> Ticket {
        let rack = self.rack.lock();
        let stripe = rack.stripe(key);
        Ticket {
            stripe,
            epoch: rack.epochs[stripe],
        }
    }

    /// Stores `value` unless the cache is off or `key` was invalidated since `ticket` was taken;
    /// whether it was stored.
    fn put(&self, ticket: Ticket, key: K, value: V, now: DateTime<Utc>) -> bool {
        if !self.enabled() {
            return false;
        }
        let mut rack = self.rack.lock();
        let rack = &mut *rack;
        if rack.epochs[ticket.stripe] != ticket.epoch || rack.stripe(&key) != ticket.stripe {
            return false;
        }
        // Entries age out in insertion order: drop the expired ones at the front, so decrypted
        // tokens do not outlive their TTL in memory for as long as fills keep coming.
        while let Some((old, s)) = rack.order.front() {
            let stale = rack
                .map
                .get(old)
                .is_none_or(|slot| slot.stamp != *s || now - slot.at >= self.ttl);
            if !stale {
                break;
            }
            if let Some((old, s)) = rack.order.pop_front()
                && rack.map.get(&old).is_some_and(|slot| slot.stamp == s)
            {
                rack.map.remove(&old);
            }
        }
        rack.stamp += 1;
        let stamp = rack.stamp;
        rack.order.push_back((key.clone(), stamp));
        rack.map.insert(
            key,
            Slot {
                value: Arc::new(value),
                at: now,
                stamp,
            },
        );
        while rack.map.len() > self.cap {
            let Some((old, s)) = rack.order.pop_front() else {
                break;
            };
            if rack.map.get(&old).is_some_and(|slot| slot.stamp == s) {
                rack.map.remove(&old);
            }
        }
        // Re-inserted and dropped keys leave stale positions behind; sweep them now and then so
        // the order stays proportional to the cap.
        if rack.order.len() > 2 * self.cap + 64 {
            let map = &rack.map;
            rack.order
                .retain(|(k, s)| map.get(k).is_some_and(|slot| slot.stamp == *s));
        }
        true
    }

    fn forget(&self, key: &K) {
        let mut rack = self.rack.lock();
        let stripe = rack.stripe(key);
        rack.epochs[stripe] = rack.epochs[stripe].wrapping_add(1);
        rack.map.remove(key);
    }

    fn forget_where(&self, doomed: impl Fn(&V) -> bool) {
        let mut rack = self.rack.lock();
        for e in rack.epochs.iter_mut() {
            *e = e.wrapping_add(1);
        }
        rack.map.retain(|_, slot| !doomed(&slot.value));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.rack.lock().map.len()
    }

    #[cfg(test)]
    fn order_len(&self) -> usize {
        self.rack.lock().order.len()
    }
}

/// What a token fetch needs, as read together from the store.
struct TokenEntry {
    connection: Connection,
    tokens: StoredTokens,
    /// The provider's refresh margin: a hit must still be fresh for it.
    margin: TimeDelta,
    /// The token API's answer for this entry, written by its first fetch from memory
    /// ([`CachedStore::token_answer_from_memory`]) and kept as long as the entry.
    answer: std::sync::OnceLock<bytes::Bytes>,
}

/// A fresh token cache entry lent to a call ([`CachedStore::lend`]): the connection and token
/// set it holds, read in place.
#[derive(Clone)]
pub(crate) struct Lent(Arc<TokenEntry>);

impl Lent {
    pub(crate) fn connection(&self) -> &Connection {
        &self.0.connection
    }

    pub(crate) fn tokens(&self) -> &tokenwarden_core::token::TokenSet {
        &self.0.tokens.set
    }
}

/// The lookup counters' handles ([`bind_metrics`]): token hit, token miss, key hit, key miss.
static COUNTERS: std::sync::OnceLock<[metrics::Counter; 4]> = std::sync::OnceLock::new();

/// Takes the caches' counters from the metrics recorder now installed, so that counting a
/// lookup is an increment rather than a search of the recorder's registry by name and labels
/// (issue 19); from then on the engine keeps handles to its proxied-call counters too. Call it after installing the recorder; until then lookups are counted the slow
/// way, which is also right.
pub fn bind_metrics() {
    let counter = |cache: &'static str, outcome: &'static str| metrics::counter!(LOOKUPS, "cache" => cache, "outcome" => outcome);
    COUNTERS.get_or_init(|| {
        [
            counter("token", "hit"),
            counter("token", "miss"),
            counter("api_key", "hit"),
            counter("api_key", "miss"),
        ]
    });
}

/// Whether [`bind_metrics`] has run: the recorder is installed, so a handle taken now counts.
pub(crate) fn metrics_bound() -> bool {
    COUNTERS.get().is_some()
}

impl TokenEntry {
    /// What a fetch served from this entry answers.
    fn issued(&self) -> Issued {
        Issued {
            tokens: self.tokens.set.clone(),
            version: self.tokens.version,
            refreshed: false,
        }
    }
}

fn count(cache: &'static str, hit: bool) {
    if let Some(counters) = COUNTERS.get() {
        let i = match (cache, hit) {
            ("token", true) => Some(0),
            ("token", false) => Some(1),
            ("api_key", true) => Some(2),
            ("api_key", false) => Some(3),
            _ => None,
        };
        if let Some(i) = i {
            counters[i].increment(1);
            return;
        }
    }
    metrics::counter!(LOOKUPS, "cache" => cache, "outcome" => if hit { "hit" } else { "miss" })
        .increment(1);
}

/// The store with the caches in front (see the module's documentation). Hand the same
/// `Arc<CachedStore>` to everything in the process that writes (as `Arc<dyn Store>`) and to the
/// token service ([`TokenService::with_cache`](crate::TokenService::with_cache)): a write that
/// goes around it is seen only when the entry ages out, like another replica's.
pub struct CachedStore {
    inner: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    tokens: Shelf<ConnectionId, TokenEntry>,
    /// Keyed by keyed digests, random to whoever does not hold the digester's keys: hashed
    /// with foldhash (issue 19).
    keys: Shelf<KeyDigest, ApiKeyInfo, crate::FastHash>,
    digester: KeyDigester,
}

impl std::fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("tokens", &self.tokens)
            .field("keys", &self.keys)
            .finish()
    }
}

/// Drops a connection's entry when the write it guards returns or is cancelled.
struct ForgetOnDrop<'a> {
    shelf: &'a Shelf<ConnectionId, TokenEntry>,
    id: ConnectionId,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.shelf.forget(&self.id);
    }
}

impl CachedStore {
    /// Caches in front of `inner`, timed on `clock`.
    pub fn new(inner: Arc<dyn Store>, clock: Arc<dyn Clock>, config: CacheConfig) -> Arc<Self> {
        Arc::new(CachedStore {
            inner,
            clock,
            tokens: Shelf::new(config.token_ttl, config.max_connections),
            keys: Shelf::new(config.api_key_ttl, config.max_api_keys),
            digester: KeyDigester::random(),
        })
    }

    fn forget_on_drop(&self, id: &ConnectionId) -> ForgetOnDrop<'_> {
        ForgetOnDrop {
            shelf: &self.tokens,
            id: id.clone(),
        }
    }

    pub(crate) fn tokens_enabled(&self) -> bool {
        self.tokens.enabled()
    }

    /// The cached token of `id`, if the entry is within its TTL and the token is still fresh for
    /// the provider's margin at `now`.
    pub(crate) fn cached_token(&self, id: &ConnectionId, now: DateTime<Utc>) -> Option<Issued> {
        let hit = self.lookup_token(id, now);
        count("token", hit.is_some());
        hit
    }

    fn lookup_token(&self, id: &ConnectionId, now: DateTime<Utc>) -> Option<Issued> {
        self.fresh_entry(id, now).map(|hit| hit.issued())
    }

    /// `id`'s entry, if within its TTL and its token still fresh for the margin.
    fn fresh_entry(&self, id: &ConnectionId, now: DateTime<Utc>) -> Option<Arc<TokenEntry>> {
        self.tokens.get(id, now).filter(|e| {
            matches!(
                e.connection.state,
                ConnectionState::Active | ConnectionState::Degraded
            ) && e.tokens.set.fresh_for(now, e.margin)
        })
    }

    /// `id`'s fresh entry lent as it is (no copy of its connection or token set), for a proxied
    /// call that reads both (issue 19). A hit counts as a token hit; a miss is not counted here,
    /// because the caller then asks [`CachedStore::cached_token`], which counts it.
    pub(crate) fn lend(&self, id: &ConnectionId, now: DateTime<Utc>) -> Option<Lent> {
        let hit = self.fresh_entry(id, now)?;
        count("token", true);
        Some(Lent(hit))
    }

    /// Whether the API key `presented` is in the key cache, verified within its TTL: what
    /// [`ApiKeys::verify_api_key`] would find without asking the store. A hit is counted, as
    /// that counts it; a miss is not, because the caller then goes the long way, which counts.
    pub fn api_key_in_memory(&self, presented: &str) -> bool {
        let hit = self.key_held(presented, self.clock.now());
        if hit {
            count("api_key", true);
        }
        hit
    }

    /// Whether the key cache holds `presented` verified at `now` (nothing counted).
    fn key_held(&self, presented: &str, now: DateTime<Utc>) -> bool {
        self.keys.enabled()
            && self
                .keys
                .get(&self.digester.digest(presented), now)
                .is_some()
    }

    /// What a token fetch by the holder of the API key `presented` answers when memory alone can
    /// answer it (the key found verified in the key cache and a fresh token for `id` in the token
    /// cache), as the bytes `render` makes of it. Both hits are counted, as the long way
    /// ([`ApiKeys::verify_api_key`], then [`CachedStore::cached_token`]) counts them; when either
    /// misses nothing is counted, because the caller then goes the long way, which counts. The
    /// bytes are made once per cache entry and kept with it, so each later fetch from memory
    /// hands out the same bytes instead of copying the token set and writing the answer again
    /// (issue 19). They go with the entry: every write that changes the token or the connection
    /// drops it. `render` must depend on nothing but what it is given.
    pub(crate) fn token_answer_from_memory(
        &self,
        presented: &str,
        id: &ConnectionId,
        now: DateTime<Utc>,
        render: impl FnOnce(&Issued) -> bytes::Bytes,
    ) -> Option<bytes::Bytes> {
        if !self.key_held(presented, now) {
            return None;
        }
        let entry = self.fresh_entry(id, now)?;
        count("api_key", true);
        count("token", true);
        Some(entry.answer.get_or_init(|| render(&entry.issued())).clone())
    }

    /// The cached connection of `id`, if the entry is within its TTL (whatever its token's age).
    pub(crate) fn cached_connection(
        &self,
        id: &ConnectionId,
        now: DateTime<Utc>,
    ) -> Option<Connection> {
        self.tokens.get(id, now).map(|e| e.connection.clone())
    }

    /// Take before reading what [`CachedStore::keep_token`] will store.
    pub(crate) fn token_ticket(&self, id: &ConnectionId) -> Ticket {
        self.tokens.ticket(id)
    }

    /// Keeps what was just read for `id`, if nothing invalidated it since `ticket`. Only a usable
    /// connection's token that is fresh for `margin` is kept.
    pub(crate) fn keep_token(
        &self,
        ticket: Ticket,
        connection: &Connection,
        tokens: &StoredTokens,
        margin: TimeDelta,
        now: DateTime<Utc>,
    ) {
        let usable = matches!(
            connection.state,
            ConnectionState::Active | ConnectionState::Degraded
        ) && tokens.set.fresh_for(now, margin);
        if usable {
            self.tokens.put(
                ticket,
                connection.id.clone(),
                TokenEntry {
                    connection: connection.clone(),
                    tokens: tokens.clone(),
                    margin,
                    answer: std::sync::OnceLock::new(),
                },
                now,
            );
        }
    }

    /// Drops `id`'s entry (a caller saw its token refused, or asked for a refresh).
    pub(crate) fn forget_token(&self, id: &ConnectionId) {
        self.tokens.forget(id);
    }
}

/// What the key cache files a verified key under.
type KeyDigest = [u64; 2];

/// The key cache's hash: SipHash-2-4 (a keyed pseudo-random function) under two independent
/// random keys, 128 bits in all. Its keys live only in this value (in memory, never logged:
/// `Debug` does not show them).
struct KeyDigester([(u64, u64); 2]);

impl std::fmt::Debug for KeyDigester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyDigester")
    }
}

impl KeyDigester {
    fn random() -> Self {
        KeyDigester([rand::random(), rand::random()])
    }

    fn digest(&self, presented: &str) -> KeyDigest {
        self.0.map(|(k0, k1)| {
            // `SipHasher` is deprecated only in favour of the standard hash maps' hasher, whose
            // keys cannot be chosen; SipHash-2-4 itself is what this needs.
            #[allow(deprecated)]
            let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
            h.write(presented.as_bytes());
            h.finish()
        })
    }
}

// What the cache leaves alone goes straight to the store behind it. The state replicas share
// (rate lanes, job leases, alert claims, breakers) is never cached: its point is to be seen by
// every replica.
macro_rules! pass_through {
    ($($capability:ident),*) => {$(
        impl Delegate<dyn $capability> for CachedStore {
            fn delegate(&self) -> &(dyn $capability + 'static) {
                &*self.inner
            }
        }
    )*};
}
pass_through!(
    Apps,
    Authorizations,
    Events,
    Webhooks,
    DashboardSessions,
    Encryption,
    Coordination,
    Retention
);

#[async_trait]
impl Connections for CachedStore {
    async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        let _forget = self.forget_on_drop(&conn.id);
        self.inner.put_connection(conn).await
    }

    async fn get_connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        self.inner.get_connection(id).await
    }

    async fn list_connections(&self) -> Result<Vec<Connection>, StoreError> {
        self.inner.list_connections().await
    }

    async fn set_state(
        &self,
        id: &ConnectionId,
        state: ConnectionState,
        problems: &[Problem],
        now: DateTime<Utc>,
    ) -> Result<Option<ConnectionState>, StoreError> {
        let _forget = self.forget_on_drop(id);
        self.inner.set_state(id, state, problems, now).await
    }

    async fn delete_connection(&self, id: &ConnectionId) -> Result<bool, StoreError> {
        let _forget = self.forget_on_drop(id);
        self.inner.delete_connection(id).await
    }

    async fn set_next_probe(
        &self,
        id: &ConnectionId,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.inner.set_next_probe(id, at).await
    }

    async fn due_probes(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        self.inner.due_probes(now, limit).await
    }

    async fn set_account(
        &self,
        id: &ConnectionId,
        account: &tokenwarden_core::connection::Account,
    ) -> Result<(), StoreError> {
        self.inner.set_account(id, account).await
    }

    async fn get_tokens(&self, conn: &ConnectionId) -> Result<Option<StoredTokens>, StoreError> {
        self.inner.get_tokens(conn).await
    }

    async fn token_expiries(
        &self,
    ) -> Result<Vec<(ConnectionId, Option<DateTime<Utc>>)>, StoreError> {
        self.inner.token_expiries().await
    }

    async fn put_initial_tokens(
        &self,
        conn: &ConnectionId,
        set: &TokenSet,
    ) -> Result<StoredTokens, StoreError> {
        let _forget = self.forget_on_drop(conn);
        self.inner.put_initial_tokens(conn, set).await
    }
}

#[async_trait]
impl Refreshes for CachedStore {
    async fn set_next_refresh(
        &self,
        id: &ConnectionId,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.inner.set_next_refresh(id, at).await
    }

    async fn next_refresh_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.next_refresh_deadline().await
    }

    async fn acquire_refresh_lease(
        &self,
        conn: &ConnectionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        self.inner.acquire_refresh_lease(conn, owner, ttl).await
    }

    async fn commit_refresh(
        &self,
        lease: &Lease,
        new: &TokenSet,
        next_refresh: Option<DateTime<Utc>>,
    ) -> Result<StoredTokens, StoreError> {
        let _forget = self.forget_on_drop(&lease.connection);
        self.inner.commit_refresh(lease, new, next_refresh).await
    }

    async fn record_refresh_failure(
        &self,
        lease: &Lease,
        state: ConnectionState,
        problems: &[Problem],
        next_refresh: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _forget = self.forget_on_drop(&lease.connection);
        self.inner
            .record_refresh_failure(lease, state, problems, next_refresh, now)
            .await
    }

    async fn mark_refresh_sent(&self, lease: &Lease) -> Result<bool, StoreError> {
        self.inner.mark_refresh_sent(lease).await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.inner.release_lease(lease).await
    }

    async fn claim_due_refreshes(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<(ConnectionId, i64)>, StoreError> {
        self.inner.claim_due_refreshes(now, limit, owner, ttl).await
    }

    async fn refresh_deadlines(
        &self,
        provider: &ProviderId,
        limit: i64,
    ) -> Result<Vec<DateTime<Utc>>, StoreError> {
        self.inner.refresh_deadlines(provider, limit).await
    }

    async fn crowd_plan(
        &self,
        provider: &ProviderId,
        every: Duration,
        limit: i64,
    ) -> Result<Option<CrowdPlan>, StoreError> {
        self.inner.crowd_plan(provider, every, limit).await
    }

    async fn claim_earliest_refreshes(
        &self,
        provider: &ProviderId,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: i64,
        owner: &str,
        ttl: Duration,
    ) -> Result<Vec<(ConnectionId, i64)>, StoreError> {
        self.inner
            .claim_earliest_refreshes(provider, until, now, limit, owner, ttl)
            .await
    }
}

#[async_trait]
impl ApiKeys for CachedStore {
    async fn create_api_key(
        &self,
        role: ApiKeyRole,
        label: &str,
        now: DateTime<Utc>,
    ) -> Result<(ApiKeyInfo, Secret), StoreError> {
        self.inner.create_api_key(role, label, now).await
    }

    async fn verify_api_key(&self, presented: &str) -> Result<Option<ApiKeyInfo>, StoreError> {
        if !self.keys.enabled() {
            return self.inner.verify_api_key(presented).await;
        }
        let digest = self.digester.digest(presented);
        let now = self.clock.now();
        let hit = self.keys.get(&digest, now);
        count("api_key", hit.is_some());
        if let Some(info) = hit {
            return Ok(Some((*info).clone()));
        }
        let ticket = self.keys.ticket(&digest);
        let verified = self.inner.verify_api_key(presented).await?;
        if let Some(info) = &verified
            && info.revoked_at.is_none()
        {
            self.keys.put(ticket, digest, info.clone(), now);
        }
        Ok(verified)
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        self.inner.list_api_keys().await
    }

    async fn revoke_api_key(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        struct ForgetKey<'a>(&'a Shelf<KeyDigest, ApiKeyInfo, crate::FastHash>, &'a str);
        impl Drop for ForgetKey<'_> {
            fn drop(&mut self) {
                self.0.forget_where(|info| info.id == self.1);
            }
        }
        let _forget = ForgetKey(&self.keys, id);
        self.inner.revoke_api_key(id, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenwarden_core::clock::FakeClock;
    use tokenwarden_core::connection::Environment;
    use tokenwarden_core::id::AppId;
    use tokenwarden_store::Keyring;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn ms(n: i64) -> TimeDelta {
        TimeDelta::milliseconds(n)
    }

    #[test]
    fn an_entry_lives_its_ttl_on_the_clock_and_not_a_moment_longer() {
        let shelf: Shelf<&str, u32> = Shelf::new(Duration::from_secs(1), 10);
        assert!(shelf.put(shelf.ticket(&"a"), "a", 1, t0()));
        for (at, hit) in [
            (t0(), true),
            (t0() + ms(999), true),
            (t0() + ms(1000), false),
            // A clock that went back does not extend an entry's life.
            (t0() - ms(1), false),
        ] {
            if !hit {
                assert!(shelf.put(shelf.ticket(&"a"), "a", 1, t0()));
            }
            assert_eq!(shelf.get(&"a", at).is_some(), hit, "at {at}");
        }
        assert_eq!(shelf.len(), 0, "an expired entry is dropped when found");
    }

    #[test]
    fn a_ttl_of_zero_or_no_room_is_off() {
        for (ttl, cap) in [(Duration::ZERO, 10), (Duration::from_secs(1), 0)] {
            let shelf: Shelf<&str, u32> = Shelf::new(ttl, cap);
            assert!(!shelf.enabled());
            assert!(!shelf.put(shelf.ticket(&"a"), "a", 1, t0()));
            assert!(shelf.get(&"a", t0()).is_none());
        }
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_refused() {
        let shelf: Shelf<String, u32> = Shelf::new(Duration::from_secs(60), 10);
        let key = "conn".to_string();
        // A reader takes its ticket, reads the store, and is overtaken by a write.
        let before_write = shelf.ticket(&key);
        shelf.forget(&key);
        assert!(!shelf.put(before_write, key.clone(), 1, t0()));
        assert!(shelf.get(&key, t0()).is_none());
        // A reader that started after the write fills as usual.
        assert!(shelf.put(shelf.ticket(&key), key.clone(), 2, t0()));
        assert_eq!(*shelf.get(&key, t0()).unwrap(), 2);
        // An entry filled before the write is dropped by it.
        shelf.forget(&key);
        assert!(shelf.get(&key, t0()).is_none());
        // Dropping everything refuses every fill in flight.
        let in_flight = shelf.ticket(&"other".to_string());
        shelf.forget_where(|_| true);
        assert!(!shelf.put(in_flight, "other".into(), 3, t0()));
    }

    #[test]
    fn the_cap_holds_and_the_oldest_goes_first() {
        let shelf: Shelf<u32, u32> = Shelf::new(Duration::from_secs(60), 3);
        for k in 0..10 {
            assert!(shelf.put(shelf.ticket(&k), k, k, t0()));
            assert!(shelf.len() <= 3);
        }
        let held: Vec<u32> = (0..10).filter(|k| shelf.get(k, t0()).is_some()).collect();
        assert_eq!(held, [7, 8, 9]);
        // Refilling one key over and over neither evicts the others nor grows the order.
        for v in 0..1_000 {
            assert!(shelf.put(shelf.ticket(&8), 8, v, t0()));
        }
        assert_eq!(shelf.len(), 3);
        assert!(shelf.order_len() <= 2 * 3 + 64 + 1, "{}", shelf.order_len());
        assert_eq!(*shelf.get(&8, t0()).unwrap(), 999);
        // A refilled key counts as new: newcomers evict the others first, oldest first.
        let held = |shelf: &Shelf<u32, u32>| -> Vec<u32> {
            (0..20).filter(|k| shelf.get(k, t0()).is_some()).collect()
        };
        assert!(shelf.put(shelf.ticket(&10), 10, 10, t0()));
        assert_eq!(held(&shelf), [8, 9, 10]);
        assert!(shelf.put(shelf.ticket(&11), 11, 11, t0()));
        assert_eq!(held(&shelf), [8, 10, 11]);
    }

    #[test]
    fn expired_entries_are_dropped_as_new_ones_come_in() {
        let shelf: Shelf<u32, u32> = Shelf::new(Duration::from_secs(1), 100);
        for k in 0..10 {
            assert!(shelf.put(shelf.ticket(&k), k, k, t0()));
        }
        assert_eq!(shelf.len(), 10);
        // A fill a second later finds them expired and drops them, never looked up again.
        assert!(shelf.put(shelf.ticket(&10), 10, 10, t0() + ms(1000)));
        assert_eq!(shelf.len(), 1);
        assert_eq!(shelf.order_len(), 1);
    }

    #[test]
    fn a_hundred_thousand_connections_do_not_grow_it_past_its_cap() {
        let shelf: Shelf<String, [u8; 64]> = Shelf::new(Duration::from_secs(60), 1_000);
        for i in 0..100_000 {
            let k = format!("conn-{i}");
            shelf.put(shelf.ticket(&k), k, [0; 64], t0());
        }
        assert_eq!(shelf.len(), 1_000);
        assert!(shelf.order_len() <= 2 * 1_000 + 64 + 1);
    }

    // ---- the cached store, over a real SQLite store ----

    struct Fixture {
        clock: FakeClock,
        raw: Arc<dyn Store>,
        cached: Arc<CachedStore>,
        url: String,
        keys: Keyring,
        _dir: tempfile::TempDir,
    }

    async fn fixture(config: CacheConfig) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        let keys = Keyring::generate("k1").unwrap();
        let raw = tokenwarden_store::open(&url, keys.clone()).await.unwrap();
        let clock = FakeClock::new(t0());
        let cached = CachedStore::new(raw.clone(), Arc::new(clock.clone()), config);
        Fixture {
            clock,
            raw,
            cached,
            url,
            keys,
            _dir: dir,
        }
    }

    fn long() -> CacheConfig {
        CacheConfig {
            token_ttl: Duration::from_secs(3600),
            ..CacheConfig::default()
        }
    }

    fn conn(id: &str, state: ConnectionState) -> Connection {
        Connection {
            id: ConnectionId::parse(id).unwrap(),
            provider: ProviderId::parse("snapchat").unwrap(),
            app: AppId::parse("main").unwrap(),
            state,
            environment: Environment::Production,
            region: None,
            api_base: "https://adsapi.snapchat.com/v1".into(),
            account_ids: vec![],
            account: None,
            end_user: None,
            scopes: vec![],
            problems: vec![],
            created_at: t0(),
            updated_at: t0(),
        }
    }

    fn set(token: &str, lifetime: TimeDelta) -> TokenSet {
        TokenSet {
            access_token: Secret::new(token),
            refresh_token: Some(Secret::new(format!("{token}-refresh"))),
            token_type: Some("Bearer".into()),
            scopes: vec![],
            issued_at: t0(),
            expires_at: Some(t0() + lifetime),
            refresh_expires_at: None,
            token_secret: None,
        }
    }

    impl Fixture {
        /// Stores a connection with a one-hour token and reads it into the cache, as a fetch
        /// would.
        async fn seeded(&self, id: &str, token: &str) -> Connection {
            let c = conn(id, ConnectionState::Active);
            self.cached.put_connection(&c).await.unwrap();
            self.cached
                .put_initial_tokens(&c.id, &set(token, TimeDelta::hours(1)))
                .await
                .unwrap();
            self.fetch(&c.id).await;
            c
        }

        /// The token service's miss path: ticket, reads, keep.
        async fn fetch(&self, id: &ConnectionId) {
            let ticket = self.cached.token_ticket(id);
            let c = self.cached.get_connection(id).await.unwrap().unwrap();
            let t = self.cached.get_tokens(id).await.unwrap().unwrap();
            self.cached
                .keep_token(ticket, &c, &t, TimeDelta::minutes(5), self.clock.now());
        }

        /// The cached token, as a token fetch finds it; every test through here also holds
        /// what a proxied call is lent ([`CachedStore::lend`]) to the same answer.
        fn token(&self, id: &ConnectionId) -> Option<String> {
            let now = self.clock.now();
            let issued = self
                .cached
                .cached_token(id, now)
                .map(|i| i.tokens.access_token.expose().to_string());
            let lent = self.cached.lend(id, now);
            assert_eq!(
                lent.as_ref()
                    .map(|l| l.tokens().access_token.expose().to_string()),
                issued,
                "a proxied call is lent what a token fetch is handed"
            );
            if let Some(l) = &lent {
                assert_eq!(&l.connection().id, id);
            }
            issued
        }
    }

    #[tokio::test]
    async fn a_hit_must_still_be_fresh_for_the_margin() {
        let f = fixture(long()).await;
        let c = f.seeded("margin", "tok-1").await;
        assert_eq!(f.token(&c.id).as_deref(), Some("tok-1"));
        // 54 minutes in, the one-hour token has 6 left: fresh for the 5-minute margin.
        f.clock.advance(TimeDelta::minutes(54));
        assert_eq!(f.token(&c.id).as_deref(), Some("tok-1"));
        // 56 minutes in it is not, so the caller goes to the store (and to a refresh).
        f.clock.advance(TimeDelta::minutes(2));
        assert_eq!(f.token(&c.id), None);
        // Nor is a token already inside its margin kept in the first place.
        f.fetch(&c.id).await;
        assert_eq!(f.cached.tokens.len(), 1, "the entry is still there…");
        assert_eq!(f.token(&c.id), None, "…but never handed out");
        f.cached.forget_token(&c.id);
        f.fetch(&c.id).await;
        assert_eq!(f.cached.tokens.len(), 0);
    }

    #[tokio::test]
    async fn only_a_usable_connection_is_kept() {
        let f = fixture(long()).await;
        for (i, state) in [ConnectionState::Pending, ConnectionState::ReauthRequired]
            .into_iter()
            .enumerate()
        {
            let c = conn(&format!("unusable-{i}"), state);
            f.cached.put_connection(&c).await.unwrap();
            f.cached
                .put_initial_tokens(&c.id, &set("tok", TimeDelta::hours(1)))
                .await
                .unwrap();
            f.fetch(&c.id).await;
            assert_eq!(f.token(&c.id), None, "{state:?}");
        }
        assert_eq!(f.cached.tokens.len(), 0);
        let c = f.seeded("degraded", "tok-d").await;
        f.cached
            .set_state(&c.id, ConnectionState::Degraded, &[], t0())
            .await
            .unwrap();
        f.fetch(&c.id).await;
        assert_eq!(
            f.token(&c.id).as_deref(),
            Some("tok-d"),
            "a degraded connection's token still serves"
        );
    }

    #[tokio::test]
    async fn every_write_through_it_drops_the_entry_at_once() {
        let f = fixture(long()).await;
        // A state change (the refusal that makes it reauth_required).
        let c = f.seeded("w-state", "tok").await;
        assert!(f.token(&c.id).is_some());
        f.cached
            .set_state(&c.id, ConnectionState::ReauthRequired, &[], t0())
            .await
            .unwrap();
        assert_eq!(f.token(&c.id), None);
        assert!(f.cached.cached_connection(&c.id, t0()).is_none());
        f.fetch(&c.id).await;
        assert_eq!(f.token(&c.id), None, "and it is not read back in");

        // A deletion.
        let c = f.seeded("w-delete", "tok").await;
        assert!(f.cached.delete_connection(&c.id).await.unwrap());
        assert_eq!(f.token(&c.id), None);

        // New tokens from an authorization.
        let c = f.seeded("w-initial", "old").await;
        f.cached
            .put_initial_tokens(&c.id, &set("new", TimeDelta::hours(1)))
            .await
            .unwrap();
        assert_eq!(f.token(&c.id), None);
        f.fetch(&c.id).await;
        assert_eq!(f.token(&c.id).as_deref(), Some("new"));

        // A committed refresh.
        let c = f.seeded("w-commit", "old").await;
        let lease = f
            .cached
            .acquire_refresh_lease(&c.id, "me", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        assert!(f.token(&c.id).is_some(), "taking the lease changes nothing");
        f.cached
            .commit_refresh(&lease, &set("refreshed", TimeDelta::hours(1)), None)
            .await
            .unwrap();
        assert_eq!(f.token(&c.id), None);
        f.fetch(&c.id).await;
        assert_eq!(f.token(&c.id).as_deref(), Some("refreshed"));

        // A replaced connection (re-authorization).
        let c = f.seeded("w-replace", "tok").await;
        f.cached.put_connection(&c).await.unwrap();
        assert_eq!(f.token(&c.id), None);

        // Other connections keep their entries.
        let kept = f.seeded("w-bystander", "tok-b").await;
        f.cached
            .set_state(&c.id, ConnectionState::Degraded, &[], t0())
            .await
            .unwrap();
        assert_eq!(f.token(&kept.id).as_deref(), Some("tok-b"));
    }

    #[test]
    fn the_key_hash_is_keyed_per_cache_and_tells_keys_apart() {
        let a = KeyDigester::random();
        let b = KeyDigester::random();
        let key = "twk_0123456789abcdef0123456789abcdef";
        assert_eq!(a.digest(key), a.digest(key));
        // Another cache files the same key elsewhere: its hash keys are its own.
        assert_ne!(a.digest(key), b.digest(key));
        // One byte more, less or different is another entry, in both halves.
        for other in [
            "twk_0123456789abcdef0123456789abcdeg",
            "twk_0123456789abcdef0123456789abcde",
            "twk_0123456789abcdef0123456789abcdef ",
            "",
        ] {
            let (x, y) = (a.digest(key), a.digest(other));
            assert!(x[0] != y[0] && x[1] != y[1], "{other:?}");
        }
        assert_eq!(format!("{a:?}"), "KeyDigester");
    }

    #[tokio::test]
    async fn the_answer_is_written_once_per_entry_and_goes_with_it() {
        let f = fixture(long()).await;
        let (_, key) = f
            .cached
            .create_api_key(ApiKeyRole::TokenReader, "etl", t0())
            .await
            .unwrap();
        let c = f.seeded("memo", "tok-1").await;
        let renders = std::sync::atomic::AtomicUsize::new(0);
        let answer = |presented: &str| {
            f.cached
                .token_answer_from_memory(presented, &c.id, f.clock.now(), |issued| {
                    renders.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    bytes::Bytes::from(issued.tokens.access_token.expose().to_string())
                })
        };
        // The key is not in memory until it has been verified once.
        assert_eq!(answer(key.expose()), None);
        assert!(
            f.cached
                .verify_api_key(key.expose())
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(answer("tw_not-this-one"), None);
        assert_eq!(answer(key.expose()).as_deref(), Some(&b"tok-1"[..]));
        assert_eq!(answer(key.expose()).as_deref(), Some(&b"tok-1"[..]));
        assert_eq!(renders.load(std::sync::atomic::Ordering::Relaxed), 1);
        // A write drops the entry and its answer; the next fill writes a new one.
        f.cached
            .put_initial_tokens(&c.id, &set("tok-2", TimeDelta::hours(1)))
            .await
            .unwrap();
        assert_eq!(answer(key.expose()), None);
        f.fetch(&c.id).await;
        assert_eq!(answer(key.expose()).as_deref(), Some(&b"tok-2"[..]));
        assert_eq!(renders.load(std::sync::atomic::Ordering::Relaxed), 2);
        // Not inside the margin either: 56 minutes into the one-hour token (the key verified
        // again, its own entry having aged out), nothing.
        f.clock.advance(TimeDelta::minutes(56));
        assert!(
            f.cached
                .verify_api_key(key.expose())
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(answer(key.expose()), None);
    }

    #[tokio::test]
    async fn a_read_overtaken_by_a_write_is_not_kept() {
        let f = fixture(long()).await;
        let c = conn("race", ConnectionState::Active);
        f.cached.put_connection(&c).await.unwrap();
        f.cached
            .put_initial_tokens(&c.id, &set("tok", TimeDelta::hours(1)))
            .await
            .unwrap();
        let ticket = f.cached.token_ticket(&c.id);
        let read_conn = f.cached.get_connection(&c.id).await.unwrap().unwrap();
        let read_tokens = f.cached.get_tokens(&c.id).await.unwrap().unwrap();
        // The refusal lands between the reads and the keep.
        f.cached
            .set_state(&c.id, ConnectionState::ReauthRequired, &[], t0())
            .await
            .unwrap();
        f.cached.keep_token(
            ticket,
            &read_conn,
            &read_tokens,
            TimeDelta::minutes(5),
            t0(),
        );
        assert_eq!(f.token(&c.id), None);
    }

    #[tokio::test]
    async fn another_writer_is_seen_within_the_ttl() {
        let f = fixture(CacheConfig::default()).await;
        let c = f.seeded("replica", "mine").await;
        // Another replica (here: the store underneath) replaces the token.
        f.raw
            .put_initial_tokens(&c.id, &set("theirs", TimeDelta::hours(1)))
            .await
            .unwrap();
        assert_eq!(f.token(&c.id).as_deref(), Some("mine"), "within the TTL");
        f.clock.advance(ms(999));
        assert_eq!(f.token(&c.id).as_deref(), Some("mine"));
        f.clock.advance(ms(1));
        assert_eq!(f.token(&c.id), None, "the entry aged out");
        f.fetch(&c.id).await;
        assert_eq!(f.token(&c.id).as_deref(), Some("theirs"));
    }

    #[tokio::test]
    async fn api_keys_a_good_one_is_cached_a_revoked_one_refused_at_once() {
        let f = fixture(CacheConfig::default()).await;
        let (info, key) = f
            .cached
            .create_api_key(ApiKeyRole::TokenReader, "etl", t0())
            .await
            .unwrap();
        let verify = |k: String| {
            let cached = f.cached.clone();
            async move { cached.verify_api_key(&k).await.unwrap().map(|i| i.id) }
        };
        assert_eq!(verify(key.expose().into()).await, Some(info.id.clone()));
        assert_eq!(f.cached.keys.len(), 1);
        // Held under the hash of the key, never the key.
        let shown = format!("{:?}", f.cached);
        assert!(!shown.contains(key.expose()), "{shown}");

        // Revoked through this process: refused on the very next call.
        assert!(f.cached.revoke_api_key(&info.id, t0()).await.unwrap());
        assert_eq!(verify(key.expose().into()).await, None);
        assert_eq!(f.cached.keys.len(), 0);

        // Revoked by another replica: refused once the entry ages out (5 s).
        let (info, key) = f
            .cached
            .create_api_key(ApiKeyRole::Admin, "ops", t0())
            .await
            .unwrap();
        assert!(verify(key.expose().into()).await.is_some());
        let elsewhere = tokenwarden_store::open(&f.url, f.keys.clone())
            .await
            .unwrap();
        assert!(elsewhere.revoke_api_key(&info.id, t0()).await.unwrap());
        f.clock.advance(ms(4_999));
        assert!(
            verify(key.expose().into()).await.is_some(),
            "within the TTL"
        );
        f.clock.advance(ms(1));
        assert_eq!(verify(key.expose().into()).await, None);
    }

    #[tokio::test]
    async fn a_flood_of_wrong_keys_caches_nothing() {
        let f = fixture(CacheConfig::default()).await;
        let (info, good) = f
            .cached
            .create_api_key(ApiKeyRole::TokenReader, "etl", t0())
            .await
            .unwrap();
        assert!(
            f.cached
                .verify_api_key(good.expose())
                .await
                .unwrap()
                .is_some()
        );
        // Near misses of the good key (same id prefix) and random ones.
        let near = format!("{}x", good.expose());
        let mut wrong = vec![near, format!("tw_{}_guess", info.id), String::new()];
        wrong.extend((0..2_000).map(|i| format!("tw_{i:08x}_{}", rand::random::<u64>())));
        for k in &wrong {
            assert!(f.cached.verify_api_key(k).await.unwrap().is_none(), "{k}");
        }
        assert_eq!(f.cached.keys.len(), 1, "only the verified key is held");
        assert!(
            f.cached
                .verify_api_key(good.expose())
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn off_means_every_call_reads_the_store() {
        let f = fixture(CacheConfig::OFF).await;
        let (info, key) = f
            .cached
            .create_api_key(ApiKeyRole::TokenReader, "etl", t0())
            .await
            .unwrap();
        assert!(
            f.cached
                .verify_api_key(key.expose())
                .await
                .unwrap()
                .is_some()
        );
        f.raw.revoke_api_key(&info.id, t0()).await.unwrap();
        assert!(
            f.cached
                .verify_api_key(key.expose())
                .await
                .unwrap()
                .is_none()
        );
        let c = f.seeded("off", "tok").await;
        assert_eq!(f.token(&c.id), None);
        assert!(!f.cached.tokens_enabled());
    }
}
