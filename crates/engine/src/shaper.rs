//! Outgoing-call shaping: each call takes a slot on every lane it belongs to (its token, its
//! account, its app, its endpoint), spaced so that no lane exceeds the platform's published limit
//! (`[[rate_limits]]` of the provider definition, kept at [`HEADROOM`] of it).
//!
//! Slots are handed out in arrival order (a virtual schedule, as in GCRA), so a crowd of callers
//! queues fairly inside tokenwarden instead of being throttled by the platform. A caller whose slot
//! lies beyond its budget takes none and is told how long it would have waited.
//!
//! Adaptive: a throttle signal halves a lane's rate and holds it for the wait the platform asked;
//! every success creeps the rate back up by [`CREEP`] of the published figure; a usage report at or
//! above [`USAGE_SLOWDOWN`] percent (Meta) slows the lane before the platform throttles.
//!
//! Replicas (issue 14 item 4): with [`Shaper::shared`], every lane with a published limit is
//! booked in the database on its clock (`Store::take_rate_slot`), and throttles, usage warnings
//! and recoveries are written there, so N replicas together send what one would. A connection's
//! own lane without a published limit stays in memory (it only carries a throttle's hold), and a
//! lane at its full rate costs no write on success.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokenwarden_core::connection::Connection;
use tokenwarden_core::provider::{Provider, RateScope};
use tokenwarden_store::{RateFeedback, RateLane, RateSlot, Store};
use tokio::time::Instant;

/// Fraction of a published limit the shaper aims for: room for clock skew and network jitter.
pub const HEADROOM: f64 = 0.8;
/// The lowest a lane's rate is cut to, as a fraction of the published one.
pub const MIN_FACTOR: f64 = 1.0 / 64.0;
/// How much of the published rate one success gives back.
pub const CREEP: f64 = 0.05;
/// Usage percentage (Meta's headers) from which a lane slows down before it is throttled.
pub const USAGE_SLOWDOWN: u32 = 90;

/// One lane a call belongs to: a key (never a secret, never sent anywhere) and the spacing its
/// published limit implies, in real time.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    key: String,
    interval: Duration,
    /// The lane of the connection's app as a whole.
    app: bool,
}

#[derive(Debug)]
struct LaneState {
    interval: Duration,
    factor: f64,
    next_free: Instant,
    hold_until: Instant,
}

impl LaneState {
    fn spacing(&self) -> Duration {
        self.interval.div_f64(self.factor.clamp(MIN_FACTOR, 1.0))
    }

    /// Whether the lane is as a new one would be: its next slot come, no hold, its full rate.
    fn idle(&self, now: Instant) -> bool {
        self.next_free <= now && self.hold_until <= now && self.factor >= 1.0
    }
}

/// The lanes of every call in flight: in this process's memory, and, for lanes with a published
/// limit when the daemon shares a database with other replicas, in the database
/// ([`Shaper::shared`]), so that all replicas together keep the platform's limit.
#[derive(Debug)]
pub struct Shaper {
    /// Keyed by text a caller can choose (an endpoint lane's key holds the request's path), so
    /// hashed with the standard SipHash; idle lanes are let go ([`Shaper::prune_idle`]).
    lanes: Mutex<HashMap<String, LaneState>>,
    shared: Option<Arc<dyn Store>>,
    /// Shared lanes last seen running below their full rate: a success tells the database.
    slowed: Mutex<HashSet<String>>,
    /// Until when (milliseconds after `base`, rounded up) some lane may be held by a throttle:
    /// before then every call books its lanes; after it, a call whose lanes have no published
    /// limit has nothing to wait for and books nothing (issue 19).
    held_until: AtomicU64,
    base: Instant,
    /// The lane count at which idle lanes are next let go.
    prune_at: AtomicUsize,
}

/// Idle lanes are let go once there are this many lanes, then each time their number doubles.
pub const PRUNE_FROM: usize = 4096;

/// A caller whose slot would come after its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    /// How long it would have had to wait.
    pub would_wait: Duration,
}

impl Default for Shaper {
    fn default() -> Self {
        Shaper::new()
    }
}

impl Shaper {
    /// No lanes yet; every lane in this process's memory.
    pub fn new() -> Self {
        Shaper {
            lanes: Mutex::new(HashMap::default()),
            shared: None,
            slowed: Mutex::new(HashSet::default()),
            held_until: AtomicU64::new(0),
            base: Instant::now(),
            prune_at: AtomicUsize::new(PRUNE_FROM),
        }
    }

    /// Lanes with a published limit are booked in `store`, on the database's clock, so every
    /// replica on that database takes its slots from one schedule and follows one slow-down
    /// after a throttle. Lanes without a limit (a connection's own lane, which only carries a
    /// throttle's hold) stay in memory: no database round trip for them. Should the database
    /// fail, a call is paced in memory instead (logged), never refused for it.
    pub fn shared(store: Arc<dyn Store>) -> Self {
        Shaper {
            shared: Some(store),
            ..Shaper::new()
        }
    }

    /// The lanes of a call on `conn` to `path` (relative to the API base). `time_scale` turns the
    /// platform's time into real time (the sandbox may run faster).
    pub fn lanes(provider: &Provider, conn: &Connection, path: &str, time_scale: f64) -> Vec<Lane> {
        let id = provider.spec.id.as_str();
        // The account a call is about: a path segment naming one of the connection's accounts
        // (Meta writes ad accounts as `act_<id>`).
        let account = path.split('/').find_map(|seg| {
            let bare = seg.strip_prefix("act_").unwrap_or(seg);
            conn.account_ids.iter().find(|a| a.as_str() == bare)
        });
        // A handful of lanes at most: kept in a vector, a key met again keeps the longer
        // interval (no map to build and hash on every call; issue 19).
        let mut lanes: Vec<Lane> = Vec::with_capacity(provider.spec.rate_limits.len() + 2);
        let mut add = |key: String, interval: Duration, app: bool| match lanes
            .iter_mut()
            .find(|l| l.key == key)
        {
            Some(l) => l.interval = l.interval.max(interval),
            None => lanes.push(Lane { app, key, interval }),
        };
        // Keys joined by hand: `format!` was most of this function's cost (issue 19).
        let key = |parts: &[&str]| parts.concat();
        let app_key = key(&[id, "/app/", conn.app.as_str()]);
        for limit in &provider.spec.rate_limits {
            if limit.requests == 0 || limit.per.is_zero() {
                continue;
            }
            let key = match limit.scope {
                RateScope::App => app_key.clone(),
                RateScope::Token => key(&[id, "/conn/", conn.id.as_str()]),
                RateScope::Account => match account {
                    Some(a) => key(&[id, "/account/", a]),
                    None => continue,
                },
                RateScope::Endpoint => key(&[id, "/app/", conn.app.as_str(), "/endpoint", path]),
            };
            let interval = tokenwarden_core::clock::to_real(
                limit.per.div_f64(f64::from(limit.requests) * HEADROOM),
                time_scale,
            );
            let app = key == app_key;
            add(key, interval, app);
        }
        // Every call belongs to its connection's lane, even where no per-token limit is
        // published, so that a throttle's wait holds the connection's other callers too; and to
        // its app's lane, so that a quota the platform says is the app's (Google Ads' daily
        // developer quota) holds every connection of that app (see `Shaper::held_by`).
        add(
            key(&[id, "/conn/", conn.id.as_str()]),
            Duration::ZERO,
            false,
        );
        add(app_key, Duration::ZERO, true);
        lanes.sort_by(|a, b| a.key.cmp(&b.key));
        lanes
    }

    /// The lanes a throttle of this call holds: all of them when the platform blames the app
    /// (its quota is the app's, every connection of the app waits), otherwise all but an app
    /// lane that has no published limit (one user's throttle does not pause the app's others).
    pub fn held_by(lanes: &[Lane], app_wide: bool) -> Vec<Lane> {
        lanes
            .iter()
            .filter(|l| app_wide || !(l.app && l.interval.is_zero()))
            .cloned()
            .collect()
    }

    fn is_shared(&self, lane: &Lane) -> bool {
        self.shared.is_some() && !lane.interval.is_zero()
    }

    /// Whether `provider` publishes a limit some lane of its calls could have; without one,
    /// every lane of its calls only carries a throttle's hold.
    pub fn has_limits(provider: &Provider) -> bool {
        provider
            .spec
            .rate_limits
            .iter()
            .any(|l| l.requests != 0 && !l.per.is_zero())
    }

    /// Whether no lane has a published limit: such lanes only carry a throttle's hold.
    fn unlimited(lanes: &[Lane]) -> bool {
        lanes.iter().all(|l| l.interval.is_zero())
    }

    fn millis_after_base(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    /// Some lane is held until `until`: calls book their lanes until then.
    fn note_hold(&self, until: Instant) {
        let ms = self.millis_after_base(until).saturating_add(1);
        self.held_until.fetch_max(ms, Ordering::SeqCst);
    }

    /// Whether a throttle's hold may still be in effect at `now`: until then, a call books its
    /// lanes even where none has a published limit.
    pub fn maybe_held(&self, now: Instant) -> bool {
        self.millis_after_base(now) < self.held_until.load(Ordering::SeqCst)
    }

    /// Takes a slot on every lane and waits for it, unless it comes after `deadline`. Returns
    /// how long the call queued.
    pub async fn acquire(&self, lanes: &[Lane], deadline: Instant) -> Result<Duration, OverBudget> {
        if lanes.is_empty() {
            return Ok(Duration::ZERO);
        }
        let now = Instant::now();
        // Lanes without a limit and no hold anywhere: a slot now, and nothing to book (a
        // booking would only move their next slot to now).
        if Shaper::unlimited(lanes) && !self.maybe_held(now) {
            return Ok(Duration::ZERO);
        }
        let (shared, local): (Vec<&Lane>, Vec<&Lane>) =
            lanes.iter().partition(|l| self.is_shared(l));
        let slot = match (&self.shared, shared.is_empty()) {
            (Some(store), false) => {
                // The local lanes' earliest slot first, so the shared booking is no earlier than
                // the call can go; then the local lanes are booked at the shared slot.
                let earliest = self.peek_local(&local, now);
                if earliest > deadline {
                    return Err(OverBudget {
                        would_wait: earliest - now,
                    });
                }
                let wanted: Vec<RateLane> = shared
                    .iter()
                    .map(|l| RateLane {
                        key: l.key.clone(),
                        interval: l.interval,
                    })
                    .collect();
                match store
                    .take_rate_slot(&wanted, earliest - now, deadline - now)
                    .await
                {
                    Ok(RateSlot::Granted { wait, slowed, .. }) => {
                        self.note_slowed(&shared, slowed);
                        // `wait` counts from the database's reading of its clock, which came
                        // after any wait for the lanes' rows: count it from now (a little late,
                        // never early).
                        self.book_local(&local, now, Instant::now() + wait, deadline)?
                    }
                    Ok(RateSlot::Refused { would_wait }) => return Err(OverBudget { would_wait }),
                    Err(e) => {
                        tracing::warn!(error = %e, "the shared rate budget cannot be read; pacing this call in memory");
                        self.book_local(&lanes.iter().collect::<Vec<_>>(), now, now, deadline)?
                    }
                }
            }
            _ => self.book_local(&lanes.iter().collect::<Vec<_>>(), now, now, deadline)?,
        };
        // The timer has millisecond granularity: a slot that is already due is taken at once.
        if slot > Instant::now() {
            tokio::time::sleep_until(slot).await;
        }
        Ok(slot - now)
    }

    /// The earliest slot the in-memory lanes could give now, booking nothing.
    fn peek_local(&self, lanes: &[&Lane], now: Instant) -> Instant {
        let map = self.lanes.lock();
        lanes
            .iter()
            .filter_map(|l| map.get(&l.key))
            .fold(now, |slot, st| slot.max(st.next_free).max(st.hold_until))
    }

    /// Books the in-memory lanes at their earliest common slot no sooner than `not_before`.
    fn book_local(
        &self,
        lanes: &[&Lane],
        now: Instant,
        not_before: Instant,
        deadline: Instant,
    ) -> Result<Instant, OverBudget> {
        let mut map = self.lanes.lock();
        self.prune_idle(&mut map, now);
        let mut slot = not_before.max(now);
        for lane in lanes {
            // Looked up by reference: the key is copied only for a lane met for the first time
            // (`entry` would copy it on every call; issue 19).
            let st = match map.get_mut(lane.key.as_str()) {
                Some(st) => st,
                None => map.entry(lane.key.clone()).or_insert(LaneState {
                    interval: lane.interval,
                    factor: 1.0,
                    next_free: now,
                    hold_until: now,
                }),
            };
            // A provider definition reloaded with other limits takes effect at once.
            st.interval = lane.interval;
            slot = slot.max(st.next_free).max(st.hold_until);
        }
        if slot > deadline {
            return Err(OverBudget {
                would_wait: slot - now,
            });
        }
        for lane in lanes {
            if let Some(st) = map.get_mut(&lane.key) {
                st.next_free = slot + st.spacing();
            }
        }
        Ok(slot)
    }

    /// Lets go of the idle lanes once there are [`PRUNE_FROM`] lanes, then each time their
    /// number has doubled since: a lane as a new one would be carries nothing, and an endpoint
    /// lane is made for every path a caller names, so without this the map would grow with
    /// every new path (issue 19's review).
    fn prune_idle(&self, map: &mut HashMap<String, LaneState>, now: Instant) {
        if map.len() < self.prune_at.load(Ordering::Relaxed) {
            return;
        }
        map.retain(|_, st| !st.idle(now));
        self.prune_at
            .store((2 * map.len()).max(PRUNE_FROM), Ordering::Relaxed);
    }

    fn note_slowed(&self, lanes: &[&Lane], slowed: bool) {
        let mut set = self.slowed.lock();
        for l in lanes {
            if slowed {
                set.insert(l.key.clone());
            } else {
                set.remove(&l.key);
            }
        }
    }

    /// Sends feedback about shared lanes to the database; a failure only costs adaptivity.
    async fn tell_shared(&self, lanes: &[String], feedback: RateFeedback) {
        if let (Some(store), false) = (&self.shared, lanes.is_empty())
            && let Err(e) = store.rate_feedback(lanes, feedback).await
        {
            tracing::warn!(error = %e, "cannot record the platform's answer in the shared rate budget");
        }
    }

    fn shared_keys(&self, lanes: &[Lane]) -> Vec<String> {
        lanes
            .iter()
            .filter(|l| self.is_shared(l))
            .map(|l| l.key.clone())
            .collect()
    }

    /// The platform pushed back: halve each lane's rate and hold it for `wait` (real time), on
    /// every replica for the shared lanes.
    pub async fn throttled(&self, lanes: &[Lane], wait: Duration) {
        let now = Instant::now();
        // Before the lanes: a call that starts once this returns sees the hold.
        self.note_hold(now + wait);
        {
            let mut map = self.lanes.lock();
            for lane in lanes {
                // A lane without a limit may never have been booked (`acquire`).
                let st = map.entry(lane.key.clone()).or_insert_with(|| LaneState {
                    interval: lane.interval,
                    factor: 1.0,
                    next_free: now,
                    hold_until: now,
                });
                st.factor = (st.factor / 2.0).max(MIN_FACTOR);
                st.hold_until = st.hold_until.max(now + wait);
                st.next_free = st.next_free.max(now + wait);
            }
        }
        let shared = self.shared_keys(lanes);
        self.note_slowed(
            &lanes
                .iter()
                .filter(|l| self.is_shared(l))
                .collect::<Vec<_>>(),
            true,
        );
        self.tell_shared(
            &shared,
            RateFeedback::Throttled {
                hold: wait,
                min_factor: MIN_FACTOR,
            },
        )
        .await;
        // Lanes without a published limit are not booked in the database, but their hold is
        // written there all the same, so the other replicas pause too ([`Shaper::follow_holds`]):
        // an app's exhausted quota costs each of them no call of its own to learn it.
        let held: Vec<String> = lanes
            .iter()
            .filter(|l| l.interval.is_zero())
            .map(|l| l.key.clone())
            .collect();
        if let (Some(store), false) = (&self.shared, held.is_empty())
            && let Err(e) = store.hold_rate_lanes(&held, wait).await
        {
            tracing::warn!(error = %e, "cannot record the platform's pause for the other replicas");
        }
    }

    /// Takes on the pauses other replicas recorded (an app's quota, a connection's throttle):
    /// each held lane waits here too until the time the platform gave. The daemon calls this
    /// about every second when replicas share a database; a failure to read is logged and
    /// costs only that this replica learns of a pause from its own next call.
    pub async fn follow_holds(&self) {
        let Some(store) = &self.shared else {
            return;
        };
        let holds = match store.rate_holds().await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the other replicas' pauses");
                return;
            }
        };
        let now = Instant::now();
        let mut map = self.lanes.lock();
        for (key, left) in holds {
            let until = now + left;
            self.note_hold(until);
            let st = map.entry(key).or_insert_with(|| LaneState {
                interval: Duration::ZERO,
                factor: 1.0,
                next_free: now,
                hold_until: now,
            });
            st.hold_until = st.hold_until.max(until);
            st.next_free = st.next_free.max(until);
        }
    }

    /// A success: creep back towards the published rate, or slow down when the platform reports
    /// usage near its limit. A shared lane at its full rate costs no database write.
    pub async fn succeeded(&self, lanes: &[Lane], usage_pct: Option<u32>) {
        // A lane without a limit has no rate to creep back to or slow down, and none is shared.
        if Shaper::unlimited(lanes) {
            return;
        }
        let near_limit = usage_pct.is_some_and(|u| u >= USAGE_SLOWDOWN);
        {
            let mut map = self.lanes.lock();
            for lane in lanes {
                if let Some(st) = map.get_mut(&lane.key) {
                    st.factor = if near_limit {
                        (st.factor * 0.75).max(MIN_FACTOR)
                    } else {
                        (st.factor + CREEP).min(1.0)
                    };
                }
            }
        }
        let shared = self.shared_keys(lanes);
        if near_limit {
            self.tell_shared(
                &shared,
                RateFeedback::Slower {
                    by: 0.75,
                    min_factor: MIN_FACTOR,
                },
            )
            .await;
        } else {
            let slowed: Vec<String> = {
                let set = self.slowed.lock();
                shared.into_iter().filter(|k| set.contains(k)).collect()
            };
            self.tell_shared(&slowed, RateFeedback::Recovered { step: CREEP })
                .await;
        }
    }

    /// A lane's current rate as a fraction of the published one (for tests and diagnostics).
    pub fn factor(&self, key_contains: &str) -> Option<f64> {
        let map = self.lanes.lock();
        map.iter()
            .find(|(k, _)| k.contains(key_contains))
            .map(|(_, s)| s.factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(key: &str, ms: u64) -> Lane {
        Lane {
            key: key.into(),
            interval: Duration::from_millis(ms),
            app: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_spaced_and_fair() {
        let s = Shaper::new();
        let lanes = [lane("t", 100)];
        let far = Instant::now() + Duration::from_secs(60);
        let mut queued = Vec::new();
        for _ in 0..5 {
            queued.push(s.acquire(&lanes, far).await.unwrap());
        }
        // Sequential callers: the first goes at once, each later one waits for its slot.
        assert_eq!(queued[0], Duration::ZERO);
        assert!(queued[1..].iter().all(|q| *q == Duration::from_millis(100)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_beyond_its_budget_takes_no_slot() {
        let s = Shaper::new();
        let lanes = [lane("t", 100)];
        let start = Instant::now();
        // Reserve 10 slots without waiting for them.
        for _ in 0..10 {
            let s = &s;
            let lanes = &lanes;
            let _ =
                futures::FutureExt::now_or_never(s.acquire(lanes, start + Duration::from_secs(60)));
        }
        let err = s
            .acquire(&lanes, start + Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(err.would_wait >= Duration::from_millis(900));
        // The refused caller did not push the schedule back.
        let err2 = s
            .acquire(&lanes, start + Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(err.would_wait, err2.would_wait);
    }

    /// Two replicas on one database: an app's quota pause that one records holds the other's
    /// calls once it has followed the holds, though the app lane is never booked there.
    #[tokio::test]
    async fn a_pause_one_replica_records_holds_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("tw.db").display());
        let keys = tokenwarden_store::Keyring::generate("k1").unwrap();
        let a = Shaper::shared(tokenwarden_store::open(&url, keys.clone()).await.unwrap());
        let b = Shaper::shared(tokenwarden_store::open(&url, keys).await.unwrap());
        let app = Lane {
            key: "google-ads/app/main".into(),
            interval: Duration::ZERO,
            app: true,
        };
        let on_b = [app.clone(), lane("google-ads/conn/other", 0)];
        let soon = || Instant::now() + Duration::from_secs(1);
        assert_eq!(b.acquire(&on_b, soon()).await.unwrap(), Duration::ZERO);
        a.throttled(
            &[app.clone(), lane("google-ads/conn/one", 0)],
            Duration::from_secs(3600),
        )
        .await;
        // Until it looks, the other replica knows nothing of it.
        assert_eq!(b.acquire(&on_b, soon()).await.unwrap(), Duration::ZERO);
        b.follow_holds().await;
        let held = b.acquire(&on_b, soon()).await.unwrap_err();
        assert!(held.would_wait > Duration::from_secs(3500), "{held:?}");
        // Another app of the same platform is not held.
        let other_app = [lane("google-ads/app/second", 0)];
        assert_eq!(b.acquire(&other_app, soon()).await.unwrap(), Duration::ZERO);
        // A shaper that shares nothing (one process on SQLite) follows nothing.
        let alone = Shaper::new();
        alone.follow_holds().await;
        assert_eq!(alone.acquire(&on_b, soon()).await.unwrap(), Duration::ZERO);
    }

    /// Lanes without a published limit are booked only while a throttle may hold one; a
    /// throttle holds them even when no call booked them before.
    #[tokio::test(start_paused = true)]
    async fn unlimited_lanes_are_booked_only_while_a_hold_may_last() {
        let s = Shaper::new();
        let lanes = [lane("bench/conn/c1", 0), lane("bench/app/main", 0)];
        let far = Instant::now() + Duration::from_secs(600);
        for _ in 0..3 {
            assert_eq!(s.acquire(&lanes, far).await.unwrap(), Duration::ZERO);
            s.succeeded(&lanes, Some(99)).await;
        }
        assert!(s.lanes.lock().is_empty(), "nothing booked");
        s.throttled(&lanes[..1], Duration::from_secs(2)).await;
        let waited = s.acquire(&lanes, far).await.unwrap();
        assert!(waited >= Duration::from_secs(2), "{waited:?}");
        // The other connection's lanes are not held, though they are booked meanwhile.
        let other = [lane("bench/conn/c2", 0)];
        assert_eq!(s.acquire(&other, far).await.unwrap(), Duration::ZERO);
        assert!(s.lanes.lock().contains_key("bench/conn/c2"));
        // Past the hold: no booking again.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let third = [lane("bench/conn/c3", 0)];
        assert_eq!(s.acquire(&third, far).await.unwrap(), Duration::ZERO);
        assert!(!s.lanes.lock().contains_key("bench/conn/c3"));
        // A lane with a limit is always booked.
        let limited = [lane("bench/conn/c4", 100)];
        s.acquire(&limited, far).await.unwrap();
        assert!(s.lanes.lock().contains_key("bench/conn/c4"));
    }

    /// A caller naming a new path on every call makes a new endpoint lane each time: idle ones
    /// are let go, lanes still spaced, held or slowed are kept.
    #[tokio::test(start_paused = true)]
    async fn idle_lanes_are_let_go() {
        let s = Shaper::new();
        let far = Instant::now() + Duration::from_secs(600);
        let held = [lane("tiktok/app/a/endpoint/held", 10)];
        s.acquire(&held, far).await.unwrap();
        s.throttled(&held, Duration::from_secs(3600)).await;
        let slowed = [lane("tiktok/app/a/endpoint/slowed", 10)];
        s.acquire(&slowed, far).await.unwrap();
        s.throttled(&slowed, Duration::from_millis(1)).await;
        for i in 0..3 * PRUNE_FROM {
            let l = [lane(&format!("tiktok/app/a/endpoint/p{i}"), 10)];
            s.acquire(&l, far).await.unwrap();
            tokio::time::advance(Duration::from_millis(20)).await;
        }
        let map = s.lanes.lock();
        assert!(map.len() <= PRUNE_FROM, "{}", map.len());
        assert!(map.contains_key("tiktok/app/a/endpoint/held"));
        assert!(map.contains_key("tiktok/app/a/endpoint/slowed"));
        // The latest lane's slot is still ahead: kept, so its spacing holds.
        let last = format!("tiktok/app/a/endpoint/p{}", 3 * PRUNE_FROM - 1);
        assert!(map.contains_key(&last));
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_cuts_and_success_creeps_back() {
        let s = Shaper::new();
        let lanes = [lane("snapchat/conn/c1", 100)];
        let far = Instant::now() + Duration::from_secs(600);
        s.acquire(&lanes, far).await.unwrap();
        s.throttled(&lanes, Duration::from_secs(1)).await;
        assert_eq!(s.factor("c1"), Some(0.5));
        let waited = s.acquire(&lanes, far).await.unwrap();
        assert!(waited >= Duration::from_secs(1), "held for the asked wait");
        for _ in 0..20 {
            s.succeeded(&lanes, None).await;
        }
        assert_eq!(s.factor("c1"), Some(1.0));
        s.succeeded(&lanes, Some(95)).await;
        assert_eq!(s.factor("c1"), Some(0.75));
    }
}
