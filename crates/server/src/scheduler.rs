//! Proactive refresh: sleep until the next deadline (or until woken because an earlier one
//! appeared), claim what is due, refresh it. Claims are leases in the store (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL), so several replicas share the work without doing any of it twice.
//!
//! A crowd due at once is paced per provider: one replica starts at most one refresh per
//! [`policy::refresh_interval`] (half the tightest published app limit), a few run at once, and
//! when the platform throttles a refresh the provider is paused for as long as it asked. The
//! jitter in each deadline spreads a crowd further.
//!
//! A crowd too large to refresh at that pace by its deadlines is started early: the scheduler
//! looks at each provider's upcoming deadlines and, from [`policy::crowd_plan`]'s start on, claims
//! that provider's earliest ones whether due or not, up to the last deadline of the crowd, so the
//! last of them is still done in time (the plan counts on 80 % of the pace, leaving room for
//! pauses). A connection refreshed meanwhile has a deadline past the crowd's and is not taken
//! again. Only
//! `active` connections of providers whose tokens can be renewed at any age are counted and pulled
//! forward (a `degraded` one's deadline is its backoff retry, and is kept).
//!
//! Several replicas each pace themselves, so the rate the platform sees grows with the number of
//! replicas; the halving leaves room for two. Crowd planning runs on one replica at a time (the
//! [`crate::singleton::CROWD_PLANNING`] lease), so only that one pulls a crowd forward.

use crate::ServerState;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::time::Duration;
use tokenwarden_core::id::{ConnectionId, ProviderId};
use tokenwarden_core::policy;
use tokenwarden_engine::TokenFailure;

/// How long the scheduler sleeps at most before looking again, in the clock's time.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// How many due connections one pass claims.
const BATCH: i64 = 50;
/// How many refreshes run at once.
const IN_FLIGHT: usize = 8;
/// How long a claim holds (database time); longer than a batch takes at the slowest pace.
const CLAIM: Duration = Duration::from_secs(45);
/// How many missed pace slots a provider may catch up on at once (see [`Pacer::book`]).
const OWED: i32 = 4;
/// How many of a provider's upcoming deadlines the crowd plan looks at.
const LOOKAHEAD: i64 = 250_000;
/// The share of a provider's pace a crowd plan counts on achieving.
const PLAN_PACE: f64 = 0.8;
/// How long a provider's crowd plan is trusted (clock time) before it is looked at again; a wake
/// (an earlier deadline appeared) looks again at once.
const PLAN_FOR: TimeDelta = TimeDelta::seconds(60);

/// When each provider may start its next refresh.
#[derive(Debug, Default)]
struct Pacer {
    next: HashMap<String, DateTime<Utc>>,
}

impl Pacer {
    /// The start time for the next refresh of `provider`, and books the slot.
    ///
    /// A slot missed by a little (the scheduler was between batches) is still owed, so a crowd
    /// worked on without pause keeps the provider's average pace; at most [`OWED`] slots, so the
    /// catch-up stays under the platform's limit. Time an idle provider spent idle is not
    /// owed.
    fn book(&mut self, provider: &str, every: Duration, now: DateTime<Utc>) -> DateTime<Utc> {
        let step = TimeDelta::from_std(every).unwrap_or(TimeDelta::milliseconds(200));
        // Catching up adds at most half the paced rate again within any second, so the total stays
        // under the limit the pace is half of.
        let per_second = (1000 / every.as_millis().max(1)) as i32;
        let owed = step * OWED.min(per_second / 2);
        let slot = self
            .next
            .get(provider)
            .copied()
            .filter(|next| *next >= now - owed)
            .unwrap_or(now);
        self.next.insert(provider.to_owned(), slot + step);
        slot
    }

    /// The platform throttled: nothing more for `provider` until `until`.
    fn pause(&mut self, provider: &str, until: DateTime<Utc>) {
        let e = self.next.entry(provider.to_owned()).or_insert(until);
        *e = (*e).max(until);
    }
}

/// When each provider's crowd must start, as last computed.
#[derive(Debug, Default)]
struct Plans {
    by_provider: HashMap<String, Plan>,
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    /// `policy::crowd_plan` over the provider's upcoming deadlines (`None`: nothing scheduled).
    crowd: Option<policy::CrowdPlan>,
    computed_at: DateTime<Utc>,
}

impl Plans {
    /// The providers whose crowd must be worked on now (with the crowd's last deadline), and the
    /// earliest future crowd start.
    async fn look(
        &mut self,
        s: &ServerState,
        now: DateTime<Utc>,
    ) -> (Vec<(ProviderId, DateTime<Utc>)>, Option<DateTime<Utc>>) {
        let mut behind = Vec::new();
        let mut next = None;
        for p in s.providers.iter() {
            let r = &p.spec.refresh;
            // Only tokens that may be renewed at any age can be pulled forward.
            if !r.style.can_refresh() || r.min_age.is_some() {
                continue;
            }
            let id = p.spec.id.as_str();
            let stale = self
                .by_provider
                .get(id)
                .is_none_or(|plan| now - plan.computed_at >= PLAN_FOR || now < plan.computed_at);
            if stale {
                // Planned at PLAN_PACE of the pace: batches, a throttle's pause or a slow
                // database cost some of it, and the crowd had better finish with room to spare.
                let every = policy::refresh_interval(&p.spec.rate_limits).div_f64(PLAN_PACE);
                // policy::crowd_plan over the upcoming deadlines, computed by the database (no
                // row per connection is read: issue 14, memory at 100,000 connections).
                let crowd = match s.store.crowd_plan(&p.spec.id, every, LOOKAHEAD).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(provider = id, error = %e, "cannot plan the upcoming refreshes");
                        continue;
                    }
                };
                self.by_provider.insert(
                    id.to_owned(),
                    Plan {
                        crowd,
                        computed_at: now,
                    },
                );
            }
            match self.by_provider.get(id).and_then(|plan| plan.crowd) {
                Some(c) if c.start <= now => behind.push((p.spec.id.clone(), c.until)),
                Some(c) => next = Some(next.map_or(c.start, |n: DateTime<Utc>| n.min(c.start))),
                None => {}
            }
        }
        (behind, next)
    }

    /// Something was scheduled earlier than planned: look again.
    fn forget(&mut self) {
        self.by_provider.clear();
    }
}

/// Runs until `shutdown` resolves; refreshes in flight are finished first. `time_scale` turns
/// waits on the (possibly scaled) clock into real sleeps.
pub async fn run(
    s: ServerState,
    owner: String,
    time_scale: f64,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut shutdown = shutdown;
    let scale = if time_scale.is_finite() && time_scale >= 1.0 {
        time_scale
    } else {
        1.0
    };
    let mut pacer = Pacer::default();
    let mut plans = Plans::default();
    // One replica plans crowds (and reads up to LOOKAHEAD deadlines a minute to do so); every
    // replica claims what is due. Held for three of the longest sleeps, so its holder renews it
    // in passing, and taken over within that of its end.
    let mut planning = crate::singleton::JobLease::new(
        s.store.clone(),
        crate::singleton::CROWD_PLANNING,
        &owner,
        MAX_SLEEP.mul_f64(3.0).div_f64(scale),
    );
    // Refreshes in flight; they outlive a batch, so the next claim overlaps the last refreshes of
    // the previous one and a crowd is worked on without a gap.
    let mut running = tokio::task::JoinSet::new();
    loop {
        if *shutdown.borrow() {
            while let Some(r) = running.join_next().await {
                if let Ok(done) = r {
                    feedback(&s, &mut pacer, done);
                }
            }
            planning.release().await;
            return;
        }
        // A refreshed set the database refused earlier is stored as soon as it takes writes.
        s.tokens.commit_held_sets().await;
        let now = s.clock.now();
        let mut claimed = match s.store.claim_due_refreshes(now, BATCH, &owner, CLAIM).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim due refreshes");
                Vec::new()
            }
        };
        // A crowd that cannot wait for its deadlines: claim its earliest, due or not.
        let (behind, crowd_next) = if planning.held().await {
            plans.look(&s, now).await
        } else {
            // Another replica plans; a plan of ours would be stale by the time we plan again.
            plans.forget();
            (Vec::new(), None)
        };
        let mut early = 0;
        for (provider, until) in &behind {
            let room = BATCH - claimed.len() as i64;
            if room <= 0 {
                break;
            }
            match s
                .store
                .claim_earliest_refreshes(provider, *until, now, room, &owner, CLAIM)
                .await
            {
                Ok(ids) => {
                    early += ids.len();
                    claimed.extend(ids);
                }
                Err(e) => {
                    tracing::warn!(provider = %provider, error = %e, "could not claim a crowd's refreshes")
                }
            }
        }
        if early > 0 {
            tracing::debug!(early, "refreshing part of a crowd ahead of its deadlines");
        }
        let busy = claimed.len() as i64 == BATCH || early > 0;
        run_batch(&s, &owner, scale, &mut pacer, &mut running, claimed).await;
        if busy {
            // More is due, or a crowd is being worked through: go on at once (the pacer keeps
            // the rate).
            continue;
        }
        let next = s.store.next_refresh_deadline().await.ok().flatten();
        let next = match (next, crowd_next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let wait = next
            .map(|at| (at - s.clock.now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        let real = wait.div_f64(scale).max(Duration::from_millis(20));
        tokio::select! {
            _ = tokio::time::sleep(real) => {}
            _ = s.wake.notified() => plans.forget(),
            _ = shutdown.changed() => {}
        }
    }
}

/// Starts a claimed batch: each at its provider's next slot, up to [`IN_FLIGHT`] at once. Returns
/// when the last of the batch has started; what is still running stays in `running`.
async fn run_batch(
    s: &ServerState,
    owner: &str,
    scale: f64,
    pacer: &mut Pacer,
    running: &mut tokio::task::JoinSet<(String, Option<Duration>)>,
    claimed: Vec<(ConnectionId, i64)>,
) {
    while let Some(r) = running.try_join_next() {
        if let Ok(done) = r {
            feedback(s, pacer, done);
        }
    }
    for (id, version) in claimed {
        while running.len() >= IN_FLIGHT {
            if let Some(Ok(done)) = running.join_next().await {
                feedback(s, pacer, done);
            }
        }
        let provider = match s.store.get_connection(&id).await {
            Ok(Some(c)) => c.provider.to_string(),
            _ => String::new(),
        };
        let every = s
            .providers
            .get(&provider)
            .map(|p| policy::refresh_interval(&p.spec.rate_limits))
            .unwrap_or(Duration::from_millis(200));
        let slot = pacer.book(&provider, every, s.clock.now());
        let (s, owner) = (s.clone(), owner.to_owned());
        running.spawn(async move {
            let wait = (slot - s.clock.now()).to_std().unwrap_or(Duration::ZERO);
            if !wait.is_zero() {
                tokio::time::sleep(wait.div_f64(scale)).await;
            }
            let outcome = refresh_one(&s, &owner, &id, version).await;
            (provider, outcome)
        });
    }
}

/// A throttled refresh pauses its provider for as long as the platform asked.
fn feedback(s: &ServerState, pacer: &mut Pacer, (provider, throttled): (String, Option<Duration>)) {
    if let Some(wait) = throttled {
        let until = s.clock.now() + TimeDelta::from_std(wait).unwrap_or(TimeDelta::seconds(1));
        tracing::info!(provider = %provider, wait_ms = wait.as_millis() as u64, "the platform throttled a refresh; pausing this provider's refreshes");
        pacer.pause(&provider, until);
    }
}

/// Refreshes one claimed connection, the token at the `version` claimed (a newer one stands);
/// returns how long the platform asked to wait if it throttled.
async fn refresh_one(
    s: &ServerState,
    owner: &str,
    id: &ConnectionId,
    version: i64,
) -> Option<Duration> {
    let outcome = s.tokens.refresh_claimed(id, version).await;
    let throttled = match &outcome {
        Err(TokenFailure::Unavailable { retry_after, .. }) => *retry_after,
        _ => None,
    };
    match outcome {
        Ok(issued) if issued.refreshed => return None,
        // Replaced since the claim (by the token API, the proxy or another replica), with its
        // own next deadline written together with it.
        Ok(issued) if issued.version != version => {}
        Ok(issued) => {
            // Not renewable yet (Threads under 24 h) or not at all: schedule by policy and give
            // the claimed lease back.
            if let Ok(Some(conn)) = s.store.get_connection(id).await
                && let Some(p) = s.providers.get(conn.provider.as_str())
            {
                let due =
                    policy::refresh_due_at(&p.spec.refresh, &issued.tokens, rand::random::<f64>());
                let _ = s
                    .store
                    .set_next_refresh(id, due.filter(|d| *d > s.clock.now()))
                    .await;
            }
        }
        Err(e) => {
            tracing::info!(connection = %id, error = %e, "scheduled refresh did not succeed");
            // The next deadline is set by the token service on every failure it handles.
        }
    }
    // Give back a claimed lease the token service did not consume (under its in-process gate:
    // a caller's refresh of the same connection may hold that lease right now).
    debug_assert_eq!(
        owner,
        s.tokens.owner(),
        "claims are made in the token service's name"
    );
    s.tokens.release_claim(id).await;
    throttled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_spaces_each_provider_and_honours_pauses() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let every = Duration::from_millis(100);
        let mut p = Pacer::default();
        let slots: Vec<_> = (0..3).map(|_| p.book("snapchat", every, t0)).collect();
        assert_eq!(
            slots,
            [
                t0,
                t0 + TimeDelta::milliseconds(100),
                t0 + TimeDelta::milliseconds(200)
            ]
        );
        // Another provider has its own pace.
        assert_eq!(p.book("tiktok", every, t0), t0);
        // A throttle pushes the next slot out; an earlier pause does not pull it back.
        p.pause("snapchat", t0 + TimeDelta::seconds(30));
        p.pause("snapchat", t0 + TimeDelta::seconds(1));
        assert_eq!(p.book("snapchat", every, t0), t0 + TimeDelta::seconds(30));
        // Time that passed is not owed: an idle provider starts now.
        let later = t0 + TimeDelta::hours(1);
        assert_eq!(p.book("tiktok", every, later), later);
        // A few slots missed while busy are: the pace holds on average, catching up by at most
        // `OWED` slots at once.
        let busy = later + TimeDelta::milliseconds(250);
        let caught: Vec<_> = (0..4).map(|_| p.book("tiktok", every, busy)).collect();
        assert_eq!(
            caught,
            [100, 200, 300, 400].map(|ms| later + TimeDelta::milliseconds(ms))
        );
        let far = busy + TimeDelta::seconds(1);
        assert_eq!(p.book("tiktok", every, far), far);
    }
}
