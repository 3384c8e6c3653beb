//! Retention: the history the daemon writes (an event per refresh, probe and state change; a row
//! per webhook delivery; a pending authorization per started connect flow) is deleted once it is
//! old, so the database stops growing. 100,000 Snapchat connections refreshed hourly write about
//! 2.4 million events a day.
//!
//! [`run`] prunes when the daemon starts and then every [`PERIOD`] of the clock's time (a scaled
//! clock prunes sooner in real time), through the store's batched deletes, so a pass never holds a
//! lock that would stall a refresh. A pending webhook delivery is never deleted, whatever its age.
//! A failure is logged and tried again next period; it never stops the daemon.

use crate::ServerState;
use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;

/// How often a pass runs, in the clock's time.
pub const PERIOD: Duration = Duration::from_secs(3600);
/// Rows deleted per statement.
const BATCH: i64 = 5_000;
/// Alert records are kept at least this long (an episode older than that is not alerted again).
const ALERTS_KEPT: Duration = Duration::from_secs(90 * 86_400);
/// The shortest event retention allowed: the dashboard charts the last day from the events.
pub const MIN_EVENTS: Duration = Duration::from_secs(86_400);
/// The shortest delivery retention allowed: the delivery log should show at least the last hour.
pub const MIN_DELIVERIES: Duration = Duration::from_secs(3_600);

/// How long history is kept; `None` keeps it forever. Expired pending authorizations are always
/// deleted: they can never be used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events (the API's `/v1/events`, the dashboard's timelines and chart) older than this go.
    pub events: Option<Duration>,
    /// Finished webhook deliveries (the delivery log) enqueued longer ago than this go.
    pub deliveries: Option<Duration>,
}

impl Default for Retention {
    /// A month of events (well past the day the dashboard charts, enough to look back on an
    /// incident) and two weeks of deliveries (a dead delivery has been retried for about 28 hours
    /// by the time it is given up on).
    fn default() -> Self {
        Retention {
            events: Some(Duration::from_secs(30 * 86_400)),
            deliveries: Some(Duration::from_secs(14 * 86_400)),
        }
    }
}

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Events.
    pub events: u64,
    /// Finished webhook deliveries.
    pub deliveries: u64,
    /// Expired pending authorizations.
    pub pending: u64,
}

/// `now - keep`, or `None` when nothing can be that old (a keep beyond the calendar).
fn cutoff(now: DateTime<Utc>, keep: Duration) -> Option<DateTime<Utc>> {
    now.checked_sub_signed(TimeDelta::from_std(keep).ok()?)
}

/// Runs until `stop`: a pass now, then one every [`PERIOD`] of the clock's time.
pub async fn run(
    s: ServerState,
    policy: Retention,
    time_scale: f64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let scale = if time_scale.is_finite() && time_scale >= 1.0 {
        time_scale
    } else {
        1.0
    };
    // One replica prunes (the deletes are safe in parallel, but twice the work for nothing). The
    // lease outlives a period by half, so its holder keeps it from pass to pass, and another
    // replica takes over within two periods of the holder's end.
    let mut lease = crate::singleton::JobLease::new(
        s.store.clone(),
        crate::singleton::RETENTION,
        s.tokens.owner(),
        PERIOD.div_f64(scale).mul_f64(1.5),
    );
    loop {
        if *stop.borrow() {
            lease.release().await;
            return;
        }
        let started = s.clock.now();
        // Each batch is its own statement, committed or rolled back whole, so stopping in the
        // middle of a long first pass loses nothing: the next start goes on from there.
        if lease.held().await {
            tokio::select! {
                _ = prune(&s, &policy) => {}
                _ = stop.changed() => {
                    lease.release().await;
                    return;
                }
            }
        }
        let next = started
            .checked_add_signed(TimeDelta::from_std(PERIOD).unwrap_or(TimeDelta::hours(1)))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        loop {
            let wait = (next - s.clock.now()).to_std().unwrap_or(Duration::ZERO);
            if wait.is_zero() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait.div_f64(scale)) => {}
                _ = stop.changed() => {
                    lease.release().await;
                    return;
                }
            }
        }
    }
}

/// One pass: deletes what `policy` no longer keeps, table by table (one failing does not stop
/// the others), counts it in [`crate::metrics::RETENTION_PRUNED`], and logs one line when
/// anything went.
pub async fn prune(s: &ServerState, policy: &Retention) -> Pruned {
    let now = s.clock.now();
    let mut pruned = Pruned::default();
    if let Some(before) = policy.events.and_then(|keep| cutoff(now, keep)) {
        pruned.events = settle("events", s.store.prune_events(before, BATCH).await);
    }
    if let Some(before) = policy.deliveries.and_then(|keep| cutoff(now, keep)) {
        pruned.deliveries = settle(
            "webhook_deliveries",
            s.store.prune_deliveries(before, BATCH).await,
        );
    }
    pruned.pending = settle(
        "pending_authorizations",
        s.store.purge_expired_pending(now).await,
    );
    // What replicas share and no longer need: idle rate lanes, ended dashboard sessions, old
    // sign-in failures, and alert records past the events' retention (or 90 days).
    let alerts_kept = policy.events.unwrap_or(ALERTS_KEPT).max(ALERTS_KEPT);
    if let Some(alerts_before) = cutoff(now, alerts_kept) {
        settle(
            "replica_state",
            s.store.purge_replica_state(now, alerts_before).await,
        );
    }
    if pruned != Pruned::default() {
        tracing::info!(
            events = pruned.events,
            webhook_deliveries = pruned.deliveries,
            pending_authorizations = pruned.pending,
            "retention: deleted old history"
        );
    }
    pruned
}

/// Counts what a table's prune deleted, or logs why it could not (0 then).
fn settle(table: &'static str, outcome: Result<u64, tokenwarden_store::StoreError>) -> u64 {
    match outcome {
        Ok(n) => {
            metrics::counter!(crate::metrics::RETENTION_PRUNED, "table" => table).increment(n);
            n
        }
        Err(e) => {
            tracing::warn!(
                table,
                error = %e,
                "retention: could not delete old rows; trying again next period"
            );
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_the_keep_before_now_and_never_panics() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            cutoff(now, Duration::from_secs(86_400)),
            Some(now - TimeDelta::days(1))
        );
        // Longer than the calendar reaches back: nothing is that old.
        assert_eq!(cutoff(now, Duration::from_secs(u64::MAX)), None);
        assert_eq!(
            cutoff(now, Duration::from_secs(999_999_999_999 * 86_400)),
            None
        );
    }

    #[test]
    fn the_defaults_keep_more_than_the_floors() {
        let d = Retention::default();
        assert!(d.events.unwrap() >= MIN_EVENTS);
        assert!(d.deliveries.unwrap() >= MIN_DELIVERIES);
    }
}
