//! Proactive refresh: sleep until the next deadline (or until woken because an earlier one
//! appeared), claim what is due, refresh it. Claims are leases in the store (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL), so several replicas share the work without doing any of it twice.
//!
//! A crowd due at once is paced per provider: one replica starts at most one refresh per
//! [`policy::refresh_interval`] (half the tightest published app limit), a few run at once, and
//! when the platform throttles a refresh the provider is paused for as long as it asked. The
//! jitter in each deadline spreads a crowd further. Several replicas each pace themselves, so the
//! rate the platform sees grows with the number of replicas; the halving leaves room for two.

use crate::ServerState;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::time::Duration;
use tokenwarden_core::id::ConnectionId;
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

/// When each provider may start its next refresh.
#[derive(Debug, Default)]
struct Pacer {
    next: HashMap<String, DateTime<Utc>>,
}

impl Pacer {
    /// The start time for the next refresh of `provider`, and books the slot.
    fn book(&mut self, provider: &str, every: Duration, now: DateTime<Utc>) -> DateTime<Utc> {
        let slot = self.next.get(provider).copied().unwrap_or(now).max(now);
        let step = TimeDelta::from_std(every).unwrap_or(TimeDelta::milliseconds(200));
        self.next.insert(provider.to_owned(), slot + step);
        slot
    }

    /// The platform throttled: nothing more for `provider` until `until`.
    fn pause(&mut self, provider: &str, until: DateTime<Utc>) {
        let e = self.next.entry(provider.to_owned()).or_insert(until);
        *e = (*e).max(until);
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
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = s.clock.now();
        let claimed = match s.store.claim_due_refreshes(now, BATCH, &owner, CLAIM).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim due refreshes");
                Vec::new()
            }
        };
        let full = claimed.len() as i64 == BATCH;
        run_batch(&s, &owner, scale, &mut pacer, claimed).await;
        if full {
            // More is due: go on at once (the pacer keeps the rate).
            continue;
        }
        let next = s.store.next_refresh_deadline().await.ok().flatten();
        let wait = next
            .map(|at| (at - s.clock.now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        let real = wait.div_f64(scale).max(Duration::from_millis(20));
        tokio::select! {
            _ = tokio::time::sleep(real) => {}
            _ = s.wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Refreshes a claimed batch: each at its provider's next slot, up to [`IN_FLIGHT`] at once.
async fn run_batch(
    s: &ServerState,
    owner: &str,
    scale: f64,
    pacer: &mut Pacer,
    claimed: Vec<ConnectionId>,
) {
    let mut running = tokio::task::JoinSet::new();
    for id in claimed {
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
            let outcome = refresh_one(&s, &owner, &id).await;
            (provider, outcome)
        });
    }
    while let Some(r) = running.join_next().await {
        if let Ok(done) = r {
            feedback(s, pacer, done);
        }
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

/// Refreshes one claimed connection; returns how long the platform asked to wait if it
/// throttled.
async fn refresh_one(s: &ServerState, owner: &str, id: &ConnectionId) -> Option<Duration> {
    let outcome = s.tokens.refresh_now(id).await;
    let throttled = match &outcome {
        Err(TokenFailure::Unavailable { retry_after, .. }) => *retry_after,
        _ => None,
    };
    match outcome {
        Ok(issued) if issued.refreshed => return None,
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
    // Give back a claimed lease the token service did not consume.
    if let Ok(Some(lease)) = s
        .store
        .acquire_refresh_lease(id, owner, Duration::from_secs(1))
        .await
    {
        let _ = s.store.release_lease(&lease).await;
    }
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
    }
}
