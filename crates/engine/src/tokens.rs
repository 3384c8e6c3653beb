//! The token service: fresh tokens on demand, exactly one refresh per connection at a time.
//!
//! Exactly once, in two layers (DESIGN "Refresh, exactly once"): an in-process single-flight (one
//! `tokio::sync::Mutex` per connection, so a replica makes at most one store attempt per
//! connection) in front of the store's lease, which fences other replicas by the token version.
//! A caller that saw a token rejected asks to replace *that* token: if the stored one is already
//! newer it gets that one, so a burst of 401s causes one refresh. The refreshed set is committed
//! (compare-and-swap on the lease's version) before anyone is handed the new token, so a rotated
//! refresh token is never lost (hardening rule 4).
//!
//! Where refresh tokens rotate without a reuse grace, a third layer: the holder marks its refresh
//! sent on the token row before spending the token (`Store::mark_refresh_sent`), and a replica
//! that takes a lapsed lease and finds another holder's mark unsettled waits for that answer (a
//! paused process may hold the platform's only one) up to `with_sent_patience` before sending the
//! same token again. The OAuth client reads an answer that arrived while its process was stopped
//! rather than timing it out (`tokenwarden_oauth`'s call deadline does not count a stop).
//!
//! During an outage of a platform's token endpoint, a circuit breaker per platform, kept in the
//! store so replicas share it ([`tokenwarden_core::breaker`]), holds refreshes back after a few
//! failures in a row: one trial call at a time once its wait is over, the wait doubling up to a
//! cap, where each connection used to retry on its own every 16–32 s. A held-back connection
//! keeps its state and its still-valid token, and is rescheduled after the wait.

use chrono::TimeDelta;
use dashmap::DashMap;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokenwarden_core::breaker::{self, Admission, BreakerPolicy, CallOutcome};
use tokenwarden_core::classify::{Classification, Kind};
use tokenwarden_core::clock::Clock;
use tokenwarden_core::connection::{Connection, ConnectionState, Problem, ProblemCode};
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::policy;
use tokenwarden_core::provider::{Provider, Registry};
use tokenwarden_core::secret::Secret;
use tokenwarden_core::state::{self, settle};
use tokenwarden_oauth::{AppCredentials, OAuthClient, TokenError};
use tokenwarden_store::{Lease, NewEvent, Store, StoreError, StoredTokens};

use crate::cache::CachedStore;
use crate::state::{States, log_change};

/// The refresh counter, by `provider` and `outcome` (`ok`, `refused`, `app_refused`,
/// `transient`); the server renders it on `/metrics`.
pub const REFRESHES: &str = "tokenwarden_refreshes_total";

/// Refreshed token sets the database refused to store (full or read-only), by `code`
/// (`store_full`, `store_read_only`, `store_unavailable`); the server renders it on `/metrics`.
pub const STORE_REFUSALS: &str = "tokenwarden_refresh_store_refusals_total";
/// How many refreshed token sets are held in memory, waiting for the database to take them.
pub const HELD_IN_MEMORY: &str = "tokenwarden_refreshed_tokens_held_in_memory";

/// A refreshed token set the platform handed over that the store could not take yet. Its refresh
/// token may be the only valid one (rotation): it is served and committed later, never dropped,
/// and the spent one is never sent again (hardening rules 4 and 13).
#[derive(Debug, Clone)]
struct Held {
    set: tokenwarden_core::token::TokenSet,
    /// The version it replaces.
    replaces: i64,
    next_refresh: Option<chrono::DateTime<chrono::Utc>>,
}

/// A token handed out.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The token set (redacted in `Debug`).
    pub tokens: tokenwarden_core::token::TokenSet,
    /// Its version in the store.
    pub version: i64,
    /// Whether this call refreshed it.
    pub refreshed: bool,
}

/// Why no usable token could be handed out. `Display` carries no secret and no upstream text
/// beyond the classifier's scrubbed titles.
#[derive(Debug, thiserror::Error)]
pub enum TokenFailure {
    /// No such connection.
    #[error("there is no connection {0}")]
    NotFound(ConnectionId),
    /// Authorization has not completed.
    #[error("connection {0} is not authorized yet: complete the connect flow first")]
    Pending(ConnectionId),
    /// The platform refused the grant; a person must re-authorize.
    #[error("connection {connection} needs re-authorization: {title}")]
    ReauthRequired {
        /// The connection.
        connection: ConnectionId,
        /// What happened.
        title: String,
        /// What to do.
        fix: String,
    },
    /// The platform refused the app (wrong or rotated client secret): an app-level problem.
    #[error("the app of connection {connection} was refused by the platform: {title}")]
    AppMisconfigured {
        /// The connection whose refresh found it.
        connection: ConnectionId,
        /// What happened.
        title: String,
        /// What to do.
        fix: String,
    },
    /// The token is no longer usable and renewing it failed for a reason that may pass.
    #[error("connection {connection} has no usable token right now: {reason}")]
    Unavailable {
        /// The connection.
        connection: ConnectionId,
        /// Our words.
        reason: String,
        /// When to try again, if known.
        retry_after: Option<Duration>,
    },
    /// The connection's provider is not loaded.
    #[error("provider {0} is not configured")]
    UnknownProvider(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the caller needs.
#[derive(Debug)]
enum Need {
    /// Valid for at least the provider's margin.
    Fresh,
    /// Anything but this token (the caller saw it rejected).
    Replace(Secret),
    /// A refresh past this version, now.
    Force(i64),
}

/// Hands out tokens and refreshes them.
#[derive(Debug)]
pub struct TokenService {
    store: Arc<dyn Store>,
    oauth: OAuthClient,
    providers: Arc<Registry>,
    clock: Arc<dyn Clock>,
    owner: String,
    lease_ttl: Duration,
    wait_for_other: Duration,
    sent_patience: Duration,
    inflight: DashMap<ConnectionId, Arc<tokio::sync::Mutex<()>>>,
    cache: Option<Arc<CachedStore>>,
    held: DashMap<ConnectionId, Held>,
    breaker_policy: BreakerPolicy,
}

impl TokenService {
    /// A service for one replica. `owner` must be unique per replica (it names lease holders);
    /// `providers` already points where the platforms live (production or the sandbox).
    pub fn new(
        store: Arc<dyn Store>,
        oauth: OAuthClient,
        providers: Arc<Registry>,
        clock: Arc<dyn Clock>,
        owner: impl Into<String>,
    ) -> Self {
        TokenService {
            store,
            oauth,
            providers,
            clock,
            owner: owner.into(),
            // Longer than the client's 20 s request timeout, so a live holder never loses it.
            lease_ttl: Duration::from_secs(45),
            wait_for_other: Duration::from_secs(50),
            sent_patience: Duration::from_secs(180),
            inflight: DashMap::new(),
            cache: None,
            held: DashMap::new(),
            breaker_policy: BreakerPolicy::default(),
        }
    }

    /// When the per-platform circuit breaker opens and for how long (default
    /// [`BreakerPolicy::default`]: 3 failures in a row, 5 s doubling up to 5 minutes).
    pub fn with_breaker_policy(mut self, policy: BreakerPolicy) -> Self {
        self.breaker_policy = policy;
        self
    }

    /// How long this replica's refresh lease holds (default 45 s, longer than the client's
    /// request timeout so a live holder never loses it); tests shorten it to stand for a replica
    /// that stalled past its lease.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Serves fresh tokens from `cached`'s token cache, and reads and writes through it (so this
    /// service's own writes invalidate it). Everything else in the process that writes must use
    /// the same `CachedStore` (see [`crate::cache`]).
    pub fn with_cache(mut self, cached: Arc<CachedStore>) -> Self {
        self.store = cached.clone();
        self.cache = Some(cached).filter(|c| c.tokens_enabled());
        self
    }

    /// How long a replica that finds another holder's refresh sent but not settled waits for
    /// that holder's answer before spending the same rotating refresh token itself (default
    /// 3 min: four lease times, so a process paused with the platform's answer in its socket for
    /// twice its lease still stores it first). Only for platforms that rotate refresh tokens
    /// without a reuse grace long enough to cover the wait.
    pub fn with_sent_patience(mut self, patience: Duration) -> Self {
        self.sent_patience = patience;
        self
    }

    /// The name this replica goes by in leases (unique per replica).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The one writer of connections' states, over the same store as this service (so its
    /// writes invalidate the same cache).
    pub fn states(&self) -> States {
        States::new(self.store.clone())
    }

    /// The connection, from the token cache while its entry lives (another replica's change is
    /// seen within the cache's TTL), otherwise from the store. For routing a call (the proxy);
    /// whether a token may be handed out is decided by [`TokenService::token`].
    pub async fn connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        if let Some(c) = &self.cache
            && let Some(conn) = c.cached_connection(id, self.clock.now())
        {
            return Ok(Some(conn));
        }
        self.store.get_connection(id).await
    }

    /// The connection and a token fresh for the provider's margin, from the cache without a
    /// copy of either, when the cache holds them; otherwise `None` (then ask
    /// [`TokenService::connection`] and [`TokenService::token`]).
    pub(crate) fn lend(&self, id: &ConnectionId) -> Option<crate::cache::Lent> {
        self.cache.as_deref()?.lend(id, self.clock.now())
    }

    /// A token valid for at least the provider's margin, refreshing first if needed.
    pub async fn token(&self, id: &ConnectionId) -> Result<Issued, TokenFailure> {
        // A cached hit is answered without building the refresh path's future: that one is
        // several KiB (single-flight, lease, the platform call, the commit), and creating and
        // moving it cost a cached fetch more than everything else it does. So it goes on the heap,
        // and only when the cache cannot answer.
        if let Some(c) = self.cache.as_deref()
            && let Some(hit) = c.cached_token(id, self.clock.now())
        {
            return Ok(hit);
        }
        Box::pin(self.fetch(id, Need::Fresh)).await
    }

    /// [`TokenService::token`] for the holder of the API key `presented`, when memory alone can
    /// answer (the key in the key cache, verified within its TTL, and a fresh token for `id` in
    /// the token cache), as the bytes `render` makes of it, once per cache entry (see
    /// `CachedStore::token_answer_from_memory`). `None` otherwise, and then the caller must go
    /// the long way (verify the key, then [`TokenService::token`]), which is where a miss is
    /// counted.
    pub fn token_answer_from_memory(
        &self,
        presented: &str,
        id: &ConnectionId,
        render: impl FnOnce(&Issued) -> bytes::Bytes,
    ) -> Option<bytes::Bytes> {
        self.cache
            .as_deref()?
            .token_answer_from_memory(presented, id, self.clock.now(), render)
    }

    /// The caches in front of the store, when the token cache is on.
    pub fn cache(&self) -> Option<&Arc<CachedStore>> {
        self.cache.as_ref()
    }

    /// A token other than `rejected` (which the caller just saw refused): refreshes only if
    /// `rejected` is still the stored token, otherwise returns the newer one.
    pub async fn replace(&self, id: &ConnectionId, rejected: &str) -> Result<Issued, TokenFailure> {
        self.obtain(id, Need::Replace(Secret::new(rejected))).await
    }

    /// Refreshes the token at `version`, which the scheduler claimed as due: if it has been
    /// replaced since (a caller of the token API got there first), the newer one stands and the
    /// platform is not called.
    pub async fn refresh_claimed(
        &self,
        id: &ConnectionId,
        version: i64,
    ) -> Result<Issued, TokenFailure> {
        self.obtain(id, Need::Force(version)).await
    }

    /// Refreshes now, whatever the token's age (the "refresh now" button).
    pub async fn refresh_now(&self, id: &ConnectionId) -> Result<Issued, TokenFailure> {
        let version = self
            .store
            .get_tokens(id)
            .await?
            .map(|s| s.version)
            .unwrap_or(0);
        self.obtain(id, Need::Force(version)).await
    }

    fn provider(&self, conn: &Connection) -> Result<&Arc<Provider>, TokenFailure> {
        self.providers
            .get(conn.provider.as_str())
            .ok_or_else(|| TokenFailure::UnknownProvider(conn.provider.to_string()))
    }

    fn satisfied(&self, need: &Need, stored: &StoredTokens, provider: &Provider) -> bool {
        let now = self.clock.now();
        match need {
            Need::Fresh => stored.set.fresh_for(now, margin(provider, stored)),
            Need::Replace(rejected) => !stored.set.access_token.ct_eq(rejected.expose()),
            Need::Force(v) => stored.version > *v,
        }
    }

    async fn current(&self, id: &ConnectionId) -> Result<StoredTokens, TokenFailure> {
        self.store
            .get_tokens(id)
            .await?
            .ok_or_else(|| TokenFailure::Pending(id.clone()))
    }

    async fn obtain(&self, id: &ConnectionId, need: Need) -> Result<Issued, TokenFailure> {
        let cache = self.cache.as_deref();
        if let Some(c) = cache {
            if matches!(need, Need::Fresh) {
                if let Some(hit) = c.cached_token(id, self.clock.now()) {
                    return Ok(hit);
                }
            } else {
                // The caller saw the token refused or wants a new one: whatever is cached for this
                // connection is not what it should get next.
                c.forget_token(id);
            }
        }
        self.fetch(id, need).await
    }

    /// [`TokenService::obtain`] once the cache has not answered: the store, and a refresh if
    /// `need` asks for one.
    async fn fetch(&self, id: &ConnectionId, need: Need) -> Result<Issued, TokenFailure> {
        let cache = self.cache.as_deref();
        let ticket = cache.map(|c| c.token_ticket(id));
        let conn = self
            .store
            .get_connection(id)
            .await?
            .ok_or_else(|| TokenFailure::NotFound(id.clone()))?;
        match conn.state {
            ConnectionState::ReauthRequired => return Err(reauth_failure(&conn)),
            ConnectionState::Pending => return Err(TokenFailure::Pending(id.clone())),
            ConnectionState::Active | ConnectionState::Degraded => {}
        }
        let provider = self.provider(&conn)?.clone();
        if self.held.contains_key(id) {
            let gate = self.inflight.entry(id.clone()).or_default().clone();
            let _one_at_a_time = gate.lock().await;
            if let Some(issued) = self.settle_held(&conn, &provider, &need).await? {
                return Ok(issued);
            }
        }
        let stored = self.current(id).await?;
        if self.satisfied(&need, &stored, &provider) {
            if let (Some(c), Some(ticket), Need::Fresh) = (cache, ticket, &need) {
                let margin = margin(&provider, &stored);
                c.keep_token(ticket, &conn, &stored, margin, self.clock.now());
            }
            return Ok(Issued {
                tokens: stored.set,
                version: stored.version,
                refreshed: false,
            });
        }

        let gate = self.inflight.entry(id.clone()).or_default().clone();
        let _one_at_a_time = gate.lock().await;
        let mut stored = self.current(id).await?;
        if self.satisfied(&need, &stored, &provider) {
            return Ok(Issued {
                tokens: stored.set,
                version: stored.version,
                refreshed: false,
            });
        }
        let now = self.clock.now();
        // A refresh failed for a reason that may pass and the scheduler retries it at the pace
        // the platform asked for; while the token still works, callers get it without another
        // call each (a throttled platform would otherwise be asked once per read).
        if matches!(need, Need::Fresh)
            && conn.state == ConnectionState::Degraded
            && !stored.set.is_expired(now)
        {
            return Ok(Issued {
                tokens: stored.set,
                version: stored.version,
                refreshed: false,
            });
        }
        let spec = &provider.spec.refresh;
        // Decided per token set: a TikTok Business answer with a refresh token is renewed, a
        // long-term token without one is not.
        if !spec.renews(&stored.set) {
            return self.unrenewable(&conn, stored).await;
        }
        if let Some(min_age) = spec.min_age
            && stored.set.age(now) < TimeDelta::from_std(min_age).unwrap_or(TimeDelta::MAX)
            && !stored.set.is_expired(now)
        {
            // Threads refreshes a token only once it is 24 h old; until then the current one serves.
            return Ok(Issued {
                tokens: stored.set,
                version: stored.version,
                refreshed: false,
            });
        }

        if let Some(refused) = self.writes_refused(id).await {
            // The database refuses writes: a refresh now could not be stored, and with rotating
            // refresh tokens the one in hand would be spent. Serve what still works.
            return self
                .still_usable(&conn, stored, &need)
                .ok_or(TokenFailure::Unavailable {
                    connection: id.clone(),
                    reason: refused,
                    retry_after: Some(Duration::from_secs(5)),
                });
        }
        let started = tokio::time::Instant::now();
        loop {
            let asked = tokio::time::Instant::now();
            let Some(lease) = self
                .store
                .acquire_refresh_lease(id, &self.owner, self.lease_ttl)
                .await?
            else {
                // Another replica holds the lease: wait for its result rather than refresh twice.
                if started.elapsed() > self.wait_for_other {
                    return Err(TokenFailure::Unavailable {
                        connection: id.clone(),
                        reason: "another replica has been refreshing this connection for too long"
                            .into(),
                        retry_after: Some(Duration::from_secs(5)),
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                let now_stored = self.current(id).await?;
                if self.satisfied(&need, &now_stored, &provider) {
                    return Ok(Issued {
                        tokens: now_stored.set,
                        version: now_stored.version,
                        refreshed: false,
                    });
                }
                stored = now_stored;
                continue;
            };
            if lease.version != stored.version {
                // Someone committed between our read and the lease.
                let latest = self.current(id).await?;
                if self.satisfied(&need, &latest, &provider) {
                    self.store.release_lease(&lease).await?;
                    return Ok(Issued {
                        tokens: latest.set,
                        version: latest.version,
                        refreshed: false,
                    });
                }
                stored = latest;
            }
            return self
                .refresh_with(&conn, &provider, stored, lease, asked, &need)
                .await;
        }
    }

    async fn refresh_with(
        &self,
        conn: &Connection,
        provider: &Provider,
        stored: StoredTokens,
        lease: Lease,
        asked: tokio::time::Instant,
        need: &Need,
    ) -> Result<Issued, TokenFailure> {
        let app = match self.store.get_app(&conn.provider, &conn.app).await {
            Ok(Some(app)) => app,
            Ok(None) => {
                self.store.release_lease(&lease).await?;
                return Err(TokenFailure::AppMisconfigured {
                    connection: conn.id.clone(),
                    title: format!("the app {} of {} is not configured", conn.app, conn.provider),
                    fix: "Register the app (client id, secret, redirect URI) in tokenwarden's configuration.".into(),
                });
            }
            Err(e) => {
                let _ = self.store.release_lease(&lease).await;
                return Err(e.into());
            }
        };
        // The token host of the connection's region (its app's, for one recorded before
        // regions), the scope names of its environment (sent on refresh by some platforms), and
        // the app's own refresh-token end, which a refresh must not move.
        // The app's identity: its tokens refresh at that issuer (Google for a Microsoft
        // Advertising account signed in with Google), with its rotation and its refusals' words.
        let regional = provider.for_app(
            conn.region.as_deref().or(app.region.as_deref()),
            app.identity.as_deref(),
            conn.environment,
            app.refresh_token_ends_after,
        );
        let provider: &Provider = &regional;
        let creds = AppCredentials {
            client_id: app.client_id,
            client_secret: app.client_secret,
            redirect_uri: app.redirect_uri,
            user_agent: app.user_agent.clone(),
        };
        // The lease may have lapsed while this process was paused (SIGSTOP, a frozen VM, a long
        // GC-like stall) between taking it and here; another replica may then have spent the
        // refresh token. Sending it again would be a reuse the platform punishes (rotation with
        // no grace revokes the grant). The monotonic clock counts the pause: give the call up
        // unless at least half the lease is left.
        if asked.elapsed() >= self.lease_ttl / 2 {
            tracing::warn!(connection = %conn.id, "the refresh lease ran low before the platform was called (was this process paused?); not calling");
            let _ = self.store.release_lease(&lease).await;
            return match self.current(&conn.id).await {
                Ok(latest) if latest.version > lease.version => Ok(Issued {
                    tokens: latest.set,
                    version: latest.version,
                    refreshed: false,
                }),
                _ => Err(TokenFailure::Unavailable {
                    connection: conn.id.clone(),
                    reason: "the refresh was not sent: this process paused while holding the refresh lease; it is tried again".into(),
                    retry_after: Some(Duration::from_secs(1)),
                }),
            };
        }
        // During an outage of the platform's token endpoint one trial refresh at a time goes, for
        // every replica; the others are told when to come back (issue 14 item 4).
        let (admission, clean) = self.admit_refresh(conn.provider.as_str()).await;
        if let Admission::Wait(wait) = admission {
            return self.held_back(conn, stored, lease, need, wait).await;
        }
        if provider.spec.refresh.rotates {
            if let Some(wait) = self.sender_may_answer(provider, &lease) {
                return self.await_sender(conn, stored, lease, need, wait).await;
            }
            // Written before the rotating refresh token is spent, so whoever takes this lease
            // after us, should we stop before storing the answer, knows the answer may exist.
            match self.store.mark_refresh_sent(&lease).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(connection = %conn.id, "the refresh lease was lost before the platform was called; not calling");
                    let _ = self.store.release_lease(&lease).await;
                    return match self.current(&conn.id).await {
                        Ok(latest) if latest.version > lease.version => Ok(Issued {
                            tokens: latest.set,
                            version: latest.version,
                            refreshed: false,
                        }),
                        _ => self.still_usable(conn, stored, need).ok_or_else(|| {
                            TokenFailure::Unavailable {
                                connection: conn.id.clone(),
                                reason: "the refresh was not sent: another replica took the refresh lease over; it is tried again".into(),
                                retry_after: Some(Duration::from_secs(1)),
                            }
                        }),
                    };
                }
                Err(e) => {
                    let _ = self.store.release_lease(&lease).await;
                    return self
                        .still_usable(conn, stored, need)
                        .ok_or_else(|| e.into());
                }
            }
        }
        let trial = admission == Admission::Trial;
        let answer = self.oauth.refresh(provider, &creds, &stored.set).await;
        let outcome = match &answer {
            Err(e) if platform_down(e) => CallOutcome::Down,
            _ => CallOutcome::Answered,
        };
        if !(clean && outcome == CallOutcome::Answered) {
            self.settle_refresh(conn.provider.as_str(), outcome, trial)
                .await;
        }
        match answer {
            Ok(grant) => {
                metrics::counter!(REFRESHES, "provider" => conn.provider.to_string(), "outcome" => "ok")
                    .increment(1);
                let due = policy::refresh_due_at(
                    &provider.spec.refresh,
                    &grant.tokens,
                    rand::rng().random::<f64>(),
                );
                let committed = match self.commit(&lease, &grant.tokens, due).await {
                    Ok(c) => c,
                    Err(e) if e.is_transient() => {
                        // The answer is in hand and the old refresh token may be spent: keep it,
                        // serve it, store it as soon as the database takes writes.
                        self.hold(&conn.id, &lease, grant.tokens.clone(), due, &e);
                        return Ok(Issued {
                            tokens: grant.tokens,
                            version: lease.version + 1,
                            refreshed: true,
                        });
                    }
                    Err(StoreError::Fenced { .. }) => {
                        // A newer token was stored meanwhile (possible only where the platform
                        // answered twice, i.e. it does not rotate or allows reuse): it stands.
                        let latest = self.current(&conn.id).await?;
                        return Ok(Issued {
                            tokens: latest.set,
                            version: latest.version,
                            refreshed: false,
                        });
                    }
                    Err(e) => return Err(e.into()),
                };
                self.after_success(conn, provider, &committed).await;
                Ok(Issued {
                    tokens: committed.set,
                    version: committed.version,
                    refreshed: true,
                })
            }
            Err(e) => self.after_failure(conn, stored, lease, e, need).await,
        }
    }

    /// How much longer to wait for another holder's refresh of this token version, sent and not
    /// settled (its process may be paused with the platform's only answer), before spending the
    /// same refresh token: `None` when there is none, it is ours (this process serializes its own
    /// refreshes, so an unsettled one of ours is from before a restart), the platform's reuse
    /// grace still covers it, or the patience is spent.
    fn sender_may_answer(&self, provider: &Provider, lease: &Lease) -> Option<Duration> {
        let sent = lease.unresolved.as_ref()?;
        if sent.by == self.owner {
            return None;
        }
        let age = (lease.taken_at - sent.at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        if provider
            .spec
            .refresh
            .reuse_grace
            .is_some_and(|grace| age < grace)
        {
            return None;
        }
        self.sent_patience
            .checked_sub(age)
            .filter(|left| !left.is_zero())
    }

    /// Leaves the refresh to the holder that sent one and has not settled it: the lease goes back,
    /// the next attempt is due when the patience ends, and callers get the token while it lasts.
    async fn await_sender(
        &self,
        conn: &Connection,
        stored: StoredTokens,
        lease: Lease,
        need: &Need,
        wait: Duration,
    ) -> Result<Issued, TokenFailure> {
        let by = lease
            .unresolved
            .as_ref()
            .map_or_else(String::new, |s| s.by.clone());
        tracing::warn!(
            connection = %conn.id,
            provider = %conn.provider,
            sender = %by,
            wait_ms = wait.as_millis() as u64,
            "another replica sent a refresh and has not stored its answer (stopped or paused?); waiting for it before spending the refresh token again"
        );
        let next = self
            .clock
            .now()
            .checked_add_signed(TimeDelta::from_std(wait).unwrap_or(TimeDelta::seconds(60)));
        // The deadline first, then the lease (as in `held_back`).
        if let Err(e) = self.store.set_next_refresh(&conn.id, next).await {
            tracing::warn!(connection = %conn.id, error = %e, "could not move the next refresh deadline");
        }
        if let Err(e) = self.store.release_lease(&lease).await {
            tracing::warn!(connection = %conn.id, error = %e, "could not release the refresh lease; it lapses on its own");
        }
        if let Ok(latest) = self.current(&conn.id).await
            && latest.version > lease.version
        {
            // The sender stored its answer meanwhile.
            return Ok(Issued {
                tokens: latest.set,
                version: latest.version,
                refreshed: false,
            });
        }
        self.still_usable(conn, stored, need)
            .ok_or(TokenFailure::Unavailable {
                connection: conn.id.clone(),
                reason: format!(
                    "another replica ({by}) sent this connection's refresh and has not stored the answer yet; it is waited for up to {} s more before the refresh is sent again",
                    wait.as_secs()
                ),
                // The scheduler reads a wait as the platform's throttle: only callers get one.
                retry_after: (!matches!(need, Need::Force(_)))
                    .then(|| wait.min(Duration::from_secs(5))),
            })
    }

    /// Asks the platform's breaker whether a refresh may call now; also whether it was closed at
    /// rest (then an answer needs no write).
    async fn admit_refresh(&self, provider: &str) -> (Admission, bool) {
        let name = breaker_name(provider);
        for _ in 0..4 {
            let (rec, now) = match self.store.breaker(&name).await {
                Ok(r) => r,
                Err(e) => {
                    // The breaker only saves the platform some calls: without it, call.
                    tracing::warn!(provider, error = %e, "cannot read the circuit breaker; refreshing anyway");
                    return (Admission::Call, false);
                }
            };
            let clean = rec.state == breaker::BreakerState::default();
            let (admission, next) = breaker::admit(&rec.state, now, &self.breaker_policy);
            let Some(next) = next else {
                return (admission, clean);
            };
            match self.store.put_breaker(&name, rec.version, &next).await {
                Ok(true) => {
                    tracing::info!(
                        provider,
                        "the platform's token endpoint has been failing: this refresh is the one trial"
                    );
                    return (admission, false);
                }
                // Another caller took the trial (or changed the breaker) first: decide again.
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(provider, error = %e, "cannot take the circuit breaker's trial; refreshing anyway");
                    return (Admission::Call, false);
                }
            }
        }
        (Admission::Wait(Duration::from_secs(1)), false)
    }

    /// Records how a refresh call went in the platform's breaker.
    async fn settle_refresh(&self, provider: &str, outcome: CallOutcome, trial: bool) {
        let name = breaker_name(provider);
        for _ in 0..4 {
            let (rec, now) = match self.store.breaker(&name).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(provider, error = %e, "cannot update the circuit breaker");
                    return;
                }
            };
            let Some(next) = breaker::settle(&rec.state, outcome, trial, now, &self.breaker_policy)
            else {
                return;
            };
            match self.store.put_breaker(&name, rec.version, &next).await {
                Ok(true) => {
                    match (rec.state.open_until, next.open_until) {
                        (_, Some(until)) if next.open_until != rec.state.open_until => {
                            let secs = (until - now).num_seconds();
                            tracing::warn!(
                                provider,
                                wait_s = secs,
                                failures = next.failures,
                                "the platform's token endpoint is failing: refreshes wait, then one trial at a time"
                            );
                        }
                        (Some(_), None) => {
                            tracing::info!(
                                provider,
                                "the platform's token endpoint answers again: refreshes resume"
                            );
                        }
                        _ => {}
                    }
                    return;
                }
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(provider, error = %e, "cannot update the circuit breaker");
                    return;
                }
            }
        }
    }

    /// A refresh the open breaker holds back: nothing is sent, the connection's state is left
    /// as it is, and its next refresh comes after the breaker's wait (spread a little, so those
    /// held back do not all come due at once). The token still serves while it is valid.
    async fn held_back(
        &self,
        conn: &Connection,
        stored: StoredTokens,
        lease: Lease,
        need: &Need,
        wait: Duration,
    ) -> Result<Issued, TokenFailure> {
        metrics::counter!(REFRESHES, "provider" => conn.provider.to_string(), "outcome" => "held_back")
            .increment(1);
        let spread = wait.mul_f64(0.1 * rand::rng().random::<f64>());
        let retry_at = self
            .clock
            .now()
            .checked_add_signed(TimeDelta::from_std(wait + spread).unwrap_or(TimeDelta::MAX));
        // The deadline first, then the lease: were the lease given up first, the passed deadline
        // could be claimed in between.
        self.best_effort(
            self.store.set_next_refresh(&conn.id, retry_at).await,
            "reschedule a refresh held back by the circuit breaker",
        );
        if let Err(e) = self.store.release_lease(&lease).await {
            tracing::warn!(connection = %conn.id, error = %e, "could not release the refresh lease; it lapses on its own");
        }
        self.still_usable(conn, stored, need)
            .ok_or(TokenFailure::Unavailable {
                connection: conn.id.clone(),
                reason: format!(
                    "{}'s token endpoint is failing: tokenwarden sends one trial refresh at a time until it answers; try again in about {} s",
                    conn.provider,
                    wait.as_secs().max(1)
                ),
                retry_after: Some(wait),
            })
    }

    /// Commits the refreshed set, retrying a little while the store is unavailable (a busy
    /// database). A database that refuses writes (full, read-only) is not waited for: the caller
    /// holds the set in memory instead (see [`TokenService::hold`]).
    async fn commit(
        &self,
        lease: &Lease,
        set: &tokenwarden_core::token::TokenSet,
        next_refresh: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<StoredTokens, StoreError> {
        let mut attempt = 0u32;
        loop {
            match self.store.commit_refresh(lease, set, next_refresh).await {
                Ok(s) => return Ok(s),
                Err(e) if e.is_transient() && !e.refuses_writes() && attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(connection = %lease.connection, attempt, error = %e, "could not store the refreshed token set; retrying");
                    let wait = policy::backoff(
                        attempt,
                        Duration::from_millis(100),
                        Duration::from_secs(1),
                        1.0,
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Keeps a refreshed set the database would not take (hardening rule 13).
    fn hold(
        &self,
        id: &ConnectionId,
        lease: &Lease,
        set: tokenwarden_core::token::TokenSet,
        next_refresh: Option<chrono::DateTime<chrono::Utc>>,
        e: &StoreError,
    ) {
        tracing::error!(connection = %id, code = e.code(), error = %e, "the database refused the refreshed token set: holding it in memory, serving it, and storing it as soon as writes succeed");
        metrics::counter!(STORE_REFUSALS, "code" => e.code()).increment(1);
        self.held.insert(
            id.clone(),
            Held {
                set,
                replaces: lease.version,
                next_refresh,
            },
        );
        metrics::gauge!(HELD_IN_MEMORY).set(self.held.len() as f64);
    }

    /// Stores `id`'s held set if the database takes it now. `Ok` when nothing is held any more
    /// (stored, or superseded by another replica's commit).
    async fn commit_held(&self, conn: &Connection, provider: &Provider) -> Result<(), StoreError> {
        let Some(held) = self.held.get(&conn.id).map(|h| h.clone()) else {
            return Ok(());
        };
        let Some(lease) = self
            .store
            .acquire_refresh_lease(&conn.id, &self.owner, self.lease_ttl)
            .await?
        else {
            return Err(StoreError::Unavailable(
                "another replica holds the refresh lease".into(),
            ));
        };
        if lease.version != held.replaces {
            // Another replica stored a newer set meanwhile (it can only have refreshed with the
            // same refresh token): ours can no longer be stored.
            tracing::error!(connection = %conn.id, "a refreshed token set held in memory was superseded by another replica's; dropping it");
            self.held.remove(&conn.id);
            metrics::gauge!(HELD_IN_MEMORY).set(self.held.len() as f64);
            let _ = self.store.release_lease(&lease).await;
            return Ok(());
        }
        let committed = self
            .store
            .commit_refresh(&lease, &held.set, held.next_refresh)
            .await?;
        self.held.remove(&conn.id);
        metrics::gauge!(HELD_IN_MEMORY).set(self.held.len() as f64);
        tracing::info!(connection = %conn.id, version = committed.version, "stored the refreshed token set held in memory");
        self.after_success(conn, provider, &committed).await;
        Ok(())
    }

    /// With `id`'s set held: store it if the database takes it now (`None`: go on as usual), or
    /// serve it when it suits the caller. Never refreshes with the spent refresh token.
    async fn settle_held(
        &self,
        conn: &Connection,
        provider: &Provider,
        need: &Need,
    ) -> Result<Option<Issued>, TokenFailure> {
        let Err(e) = self.commit_held(conn, provider).await else {
            return Ok(None);
        };
        let Some(held) = self.held.get(&conn.id).map(|h| h.clone()) else {
            return Ok(None);
        };
        let now = self.clock.now();
        let suits = match need {
            Need::Fresh => !held.set.is_expired(now),
            Need::Replace(rejected) => !held.set.access_token.ct_eq(rejected.expose()),
            Need::Force(v) => held.replaces >= *v,
        };
        if suits {
            return Ok(Some(Issued {
                tokens: held.set,
                version: held.replaces + 1,
                refreshed: false,
            }));
        }
        Err(TokenFailure::Unavailable {
            connection: conn.id.clone(),
            reason: e.to_string(),
            retry_after: Some(Duration::from_secs(5)),
        })
    }

    /// Gives back the lease the scheduler claimed for `id` (with this service's owner) when the
    /// refresh it started did not consume it. Taken under the connection's in-process gate: a
    /// refresh of this process that holds the same lease right now (a caller's, between taking
    /// the lease and committing) releases or commits it itself, and must not find it given
    /// back underneath it (its sent mark and its commit are fenced by that lease).
    pub async fn release_claim(&self, id: &ConnectionId) {
        let gate = self.inflight.entry(id.clone()).or_default().clone();
        let _one_at_a_time = gate.lock().await;
        if let Ok(Some(lease)) = self
            .store
            .acquire_refresh_lease(id, &self.owner, Duration::from_secs(1))
            .await
        {
            let _ = self.store.release_lease(&lease).await;
        }
    }

    /// Stores every held set the database takes now; the scheduler calls this on each pass so a
    /// held set is stored as soon as writes succeed. Connections busy elsewhere are skipped.
    pub async fn commit_held_sets(&self) {
        let ids: Vec<ConnectionId> = self.held.iter().map(|e| e.key().clone()).collect();
        for id in ids {
            let gate = self.inflight.entry(id.clone()).or_default().clone();
            let Ok(_one_at_a_time) = gate.try_lock() else {
                continue;
            };
            let conn = match self.store.get_connection(&id).await {
                Ok(Some(c)) => c,
                Ok(None) => {
                    self.held.remove(&id);
                    continue;
                }
                Err(_) => return,
            };
            let Ok(provider) = self.provider(&conn).cloned() else {
                continue;
            };
            if let Err(e) = self.commit_held(&conn, &provider).await {
                tracing::debug!(connection = %id, error = %e, "the held token set cannot be stored yet");
                if e.refuses_writes() {
                    return;
                }
            }
        }
    }

    /// Why no refresh may start now: the database refused to store a refreshed set that is still
    /// held (for another connection) and still refuses. `None`: go on.
    /// How many refreshed token sets are held in memory because the database refused them; more
    /// than none means the database refuses writes (a full disk, a read-only server).
    pub fn held_in_memory(&self) -> usize {
        self.held.len()
    }

    async fn writes_refused(&self, id: &ConnectionId) -> Option<String> {
        if self.held.iter().all(|e| e.key() == id) {
            return None;
        }
        self.commit_held_sets().await;
        if self.held.iter().all(|e| e.key() == id) {
            return None;
        }
        Some(
            "the database refused to store a refreshed token set and has not taken it yet: refreshes wait so no refresh token is spent before its successor can be stored (see the store_full / store_read_only log lines)"
                .into(),
        )
    }

    async fn after_success(
        &self,
        conn: &Connection,
        provider: &Provider,
        committed: &StoredTokens,
    ) {
        let now = self.clock.now();
        // Read afresh: another replica may have recorded a refusal of the same refresh token
        // meanwhile (it was refused because this refresh had spent it); the stored answer shows
        // the grant alive.
        let fresh = match self.store.get_connection(&conn.id).await {
            Ok(Some(c)) => c,
            _ => conn.clone(),
        };
        self.best_effort(self.states().refreshed(&fresh, now).await, "set state");
        // The platform took the app's credentials: an app refusal recorded earlier (a wrong or
        // rotated secret, since fixed) is over.
        self.best_effort(
            self.store
                .clear_app_problem(&conn.provider, &conn.app, ProblemCode::AppRefused.as_str())
                .await
                .map(|_| ()),
            "clear the app problem",
        );
        let mut event = NewEvent::new(
            Some(conn.id.clone()),
            now,
            "refreshed",
            format!("Refreshed the {} token", provider.spec.name),
        )
        .with("provider", conn.provider.as_str())
        .with("version", committed.version);
        if let Some(at) = committed.set.expires_at {
            event = event.with("expires_at", at.to_rfc3339());
        }
        let expires_at = committed
            .set
            .expires_at
            .map_or_else(|| "unknown".to_string(), |at| at.to_rfc3339());
        tracing::info!(
            connection = %conn.id,
            provider = %conn.provider,
            kind = "refreshed",
            version = committed.version,
            %expires_at,
            "token refreshed"
        );
        self.best_effort(
            self.store.append_event(&event).await.map(|_| ()),
            "record the refresh",
        );
    }

    async fn after_failure(
        &self,
        conn: &Connection,
        stored: StoredTokens,
        lease: Lease,
        e: TokenError,
        need: &Need,
    ) -> Result<Issued, TokenFailure> {
        let now = self.clock.now();
        let verdict: Option<&Classification> = e.classification();
        let title = verdict
            .map(|c| c.title.clone())
            .unwrap_or_else(|| e.to_string());
        let fix = verdict.map(|c| c.fix.clone()).unwrap_or_default();
        let outcome = match &e {
            TokenError::Refused { .. } => "refused",
            TokenError::Misconfigured { .. } => "app_refused",
            TokenError::Transient { .. } | TokenError::Malformed { .. } => "transient",
        };
        metrics::counter!(REFRESHES, "provider" => conn.provider.to_string(), "outcome" => outcome)
            .increment(1);
        match &e {
            TokenError::Refused { .. } => {
                let problems = vec![Problem {
                    code: ProblemCode::GrantRefused,
                    title: title.clone(),
                    fix: fix.clone(),
                    since: now,
                }];
                let next = settle(conn.state, &problems);
                let recorded = self
                    .store
                    .record_refresh_failure(&lease, next, &problems, None, now)
                    .await;
                if let Some(newer) = self.superseded(conn, recorded, lease.version).await? {
                    return Ok(newer);
                }
                log_change(conn, next);
                tracing::warn!(
                    connection = %conn.id,
                    provider = %conn.provider,
                    kind = "reauth_required",
                    verdict = verdict.map_or("refused", |c| c.kind.as_str()),
                    reason = %title,
                    "refresh refused by the platform: a person must re-authorize"
                );
                let mut event = NewEvent::new(
                    Some(conn.id.clone()),
                    now,
                    "reauth_required",
                    format!("The platform refused the grant: {title}"),
                );
                if let Some(c) = verdict {
                    event = event
                        .with("kind", c.kind.as_str())
                        .with("platform_code", c.platform_code.clone().unwrap_or_default());
                }
                self.best_effort(
                    self.store.append_event(&event).await.map(|_| ()),
                    "record the refusal",
                );
                Err(TokenFailure::ReauthRequired {
                    connection: conn.id.clone(),
                    title,
                    fix,
                })
            }
            TokenError::Misconfigured { .. } => {
                if let Err(release) = self.store.release_lease(&lease).await {
                    tracing::warn!(connection = %conn.id, error = %release, "could not release the refresh lease; it lapses on its own");
                }
                let problem = Problem {
                    code: ProblemCode::AppRefused,
                    title: title.clone(),
                    fix: fix.clone(),
                    since: now,
                };
                tracing::warn!(
                    connection = %conn.id,
                    provider = %conn.provider,
                    app = %conn.app,
                    kind = "app_refused",
                    reason = %title,
                    "refresh failed: the platform refused the app's credentials"
                );
                self.best_effort(
                    self.store
                        .raise_app_problem(&conn.provider, &conn.app, &problem)
                        .await,
                    "raise the app problem",
                );
                self.record(
                    NewEvent::new(
                        Some(conn.id.clone()),
                        now,
                        "app_refused",
                        format!("The platform refused the app: {title}"),
                    ),
                    "record the app problem",
                )
                .await;
                self.still_usable(conn, stored, need)
                    .ok_or(TokenFailure::AppMisconfigured {
                        connection: conn.id.clone(),
                        title,
                        fix,
                    })
            }
            TokenError::Transient { .. } | TokenError::Malformed { .. } => {
                let retry_after = verdict.and_then(|c| c.retry_after);
                let problem = Problem {
                    code: ProblemCode::RefreshFailing,
                    title: format!("Refreshing is failing for now: {title}"),
                    fix: "Nothing to do: tokenwarden retries with backoff. The connection stays usable while its token lasts.".into(),
                    since: conn.problems.iter().find(|p| p.code == ProblemCode::RefreshFailing).map_or(now, |p| p.since),
                };
                let mut problems = state::without(&conn.problems, ProblemCode::RefreshFailing);
                problems.push(problem);
                let next = settle(conn.state, &problems);
                let wait = retry_after.unwrap_or_else(|| {
                    policy::backoff(
                        4,
                        Duration::from_secs(2),
                        Duration::from_secs(60),
                        0.5 + rand::rng().random::<f64>() / 2.0,
                    )
                });
                let retry_at = now.checked_add_signed(
                    TimeDelta::from_std(wait).unwrap_or(TimeDelta::seconds(30)),
                );
                let recorded = self
                    .store
                    .record_refresh_failure(&lease, next, &problems, retry_at, now)
                    .await;
                if let Some(newer) = self.superseded(conn, recorded, lease.version).await? {
                    return Ok(newer);
                }
                log_change(conn, next);
                tracing::warn!(
                    connection = %conn.id,
                    provider = %conn.provider,
                    kind = "refresh_failed",
                    verdict = verdict.map_or("transient", |c| c.kind.as_str()),
                    reason = %title,
                    retry_in_s = wait.as_secs(),
                    "refresh failed for a reason that may pass; will retry"
                );
                let mut event = NewEvent::new(
                    Some(conn.id.clone()),
                    now,
                    "refresh_failed",
                    format!("Refresh failed for a reason that may pass: {title}"),
                )
                .with("provider", conn.provider.as_str());
                if let Some(c) = verdict {
                    // The dashboard charts throttling (kind rate_limited) apart from other failures.
                    event = event.with("kind", c.kind.as_str());
                }
                self.record(event, "record the failure").await;
                self.still_usable(conn, stored, need)
                    .ok_or(TokenFailure::Unavailable {
                        connection: conn.id.clone(),
                        reason: title,
                        retry_after,
                    })
            }
        }
    }

    /// After [`Store::record_refresh_failure`]: `Some` newer token when the failure was stale (the
    /// token it tried to replace had been replaced meanwhile, so the failure is not recorded and
    /// the newer token is the answer, if it suits the caller); `None` when the failure was
    /// recorded, or could not be (logged: the lease lapses on its own), and stands. `tried` is the
    /// version the refresh tried to replace.
    async fn superseded(
        &self,
        conn: &Connection,
        recorded: Result<bool, StoreError>,
        tried: i64,
    ) -> Result<Option<Issued>, TokenFailure> {
        match recorded {
            Ok(true) => Ok(None),
            Ok(false) => {
                let latest = self.current(&conn.id).await?;
                if latest.version > tried {
                    tracing::info!(connection = %conn.id, "a refresh failed after another one had succeeded; the newer token stands");
                    return Ok(Some(Issued {
                        tokens: latest.set,
                        version: latest.version,
                        refreshed: false,
                    }));
                }
                // Another replica took the lease over (ours lapsed) and is refreshing now.
                Err(TokenFailure::Unavailable {
                    connection: conn.id.clone(),
                    reason: "another replica is refreshing this connection".into(),
                    retry_after: Some(Duration::from_secs(1)),
                })
            }
            Err(e) => {
                tracing::warn!(connection = %conn.id, error = %e, "could not record the failed refresh");
                Ok(None)
            }
        }
    }

    /// The current token, when the caller can still use it (it has not expired and the caller did
    /// not just see it rejected).
    fn still_usable(
        &self,
        _conn: &Connection,
        stored: StoredTokens,
        need: &Need,
    ) -> Option<Issued> {
        let usable = matches!(need, Need::Fresh) && !stored.set.is_expired(self.clock.now());
        usable.then(|| Issued {
            tokens: stored.set,
            version: stored.version,
            refreshed: false,
        })
    }

    /// Tokens the platform will not renew (TikTok Business, Meta): serve until expiry, then the
    /// person must authorize again.
    async fn unrenewable(
        &self,
        conn: &Connection,
        stored: StoredTokens,
    ) -> Result<Issued, TokenFailure> {
        let now = self.clock.now();
        if !stored.set.is_expired(now) {
            return Ok(Issued {
                tokens: stored.set,
                version: stored.version,
                refreshed: false,
            });
        }
        let title = "The token has expired and this platform does not renew tokens".to_string();
        let fix = "Re-authorize the connection with the connect link.".to_string();
        let problem = Problem {
            code: ProblemCode::Expired,
            title: title.clone(),
            fix: fix.clone(),
            since: now,
        };
        self.best_effort(
            self.states()
                .set_problems(conn, state::replace(&conn.problems, problem), now)
                .await,
            "set state",
        );
        tracing::warn!(
            connection = %conn.id,
            provider = %conn.provider,
            kind = "reauth_required",
            reason = %title,
            "the token expired and the platform does not renew it: a person must re-authorize"
        );
        let event = NewEvent::new(Some(conn.id.clone()), now, "reauth_required", title.clone());
        self.best_effort(
            self.store.append_event(&event).await.map(|_| ()),
            "record the expiry",
        );
        Err(TokenFailure::ReauthRequired {
            connection: conn.id.clone(),
            title,
            fix,
        })
    }

    /// Appends an event; bookkeeping never fails the caller.
    async fn record(&self, event: NewEvent, what: &str) {
        self.best_effort(self.store.append_event(&event).await.map(|_| ()), what);
    }

    /// Bookkeeping after a refresh must not turn a good token into an error; log and go on.
    fn best_effort<T>(&self, r: Result<T, StoreError>, what: &str) {
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not {what}");
        }
    }
}

/// The breaker of a platform's token endpoint.
fn breaker_name(provider: &str) -> String {
    format!("token_endpoint/{provider}")
}

/// Whether a failed refresh says the platform is down (no answer, or a 5xx), rather than that it
/// answered (a refusal, a throttle, a malformed body: it is up).
fn platform_down(e: &TokenError) -> bool {
    match e {
        TokenError::Transient { .. } => e
            .classification()
            .is_none_or(|c| c.kind == Kind::ServiceUnavailable),
        _ => false,
    }
}

/// How long a token must still be valid for the provider to call it fresh: the provider's margin,
/// scaled down for a token that lives less than twice its margin and jitter (see
/// [`policy::lead`]), so such a token is not renewed on every request.
fn margin(provider: &Provider, stored: &StoredTokens) -> TimeDelta {
    policy::fresh_margin(&provider.spec.refresh, &stored.set)
}

fn reauth_failure(conn: &Connection) -> TokenFailure {
    let p = conn
        .problems
        .iter()
        .find(|p| p.code.needs_person())
        .or(conn.problems.first());
    TokenFailure::ReauthRequired {
        connection: conn.id.clone(),
        title: p.map_or_else(
            || "the platform refused the grant".to_string(),
            |p| p.title.clone(),
        ),
        fix: p.map_or_else(
            || "Re-authorize the connection.".to_string(),
            |p| p.fix.clone(),
        ),
    }
}
