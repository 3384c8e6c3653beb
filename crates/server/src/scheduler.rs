//! Proactive refresh: sleep until the next deadline (or until woken because an earlier one
//! appeared), claim what is due, refresh it. Claims are leases in the store (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL), so several replicas share the work without doing any of it twice.
//! Claimed connections are refreshed one after another, which keeps a crowd due at once from
//! bursting past the platform's rate limit; the jitter in each deadline spreads them further.

use crate::ServerState;
use std::time::Duration;
use tokenwarden_core::policy;

/// How long the scheduler sleeps at most before looking again, in the clock's time.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// How many due connections one pass claims.
const BATCH: i64 = 50;

/// Runs until `shutdown` resolves; a refresh in flight is finished first. `time_scale` turns
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
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = s.clock.now();
        match s
            .store
            .claim_due_refreshes(now, BATCH, &owner, Duration::from_secs(45))
            .await
        {
            Ok(due) => {
                for id in due {
                    refresh_one(&s, &owner, &id).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not claim due refreshes"),
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

async fn refresh_one(s: &ServerState, owner: &str, id: &tokenwarden_core::id::ConnectionId) {
    let outcome = s.tokens.refresh_now(id).await;
    match outcome {
        Ok(issued) if issued.refreshed => {}
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
            if let Ok(Some(lease)) = s
                .store
                .acquire_refresh_lease(id, owner, Duration::from_secs(1))
                .await
            {
                let _ = s.store.release_lease(&lease).await;
            }
        }
        Err(e) => {
            tracing::info!(connection = %id, error = %e, "scheduled refresh did not succeed");
            // Give back a claimed lease the failure path did not reach (the next deadline is set by
            // the token service on every failure it handles).
            if let Ok(Some(lease)) = s
                .store
                .acquire_refresh_lease(id, owner, Duration::from_secs(1))
                .await
            {
                let _ = s.store.release_lease(&lease).await;
            }
        }
    }
}
