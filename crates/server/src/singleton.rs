//! Singleton work across replicas (issue 14 item 4): the alert notifier, the retention pass and
//! the crowd planning run on one replica at a time. Each is named by a lease row in the store
//! ([`Store::take_job_lease`]) with an expiry on the database's clock: its holder renews it while
//! it works, gives it up when it stops, and another replica takes it over once it expires (the
//! holder died or stalled). A replica that cannot reach the store does not run the work.

use std::sync::Arc;
use std::time::Duration;
use tokenwarden_store::Store;
use tokio::time::Instant;

/// The alert notifier's lease.
pub const ALERTS: &str = "alerts";
/// The retention pass's lease.
pub const RETENTION: &str = "retention";
/// The crowd planning's lease (pulling a crowd of refreshes ahead of its deadlines).
pub const CROWD_PLANNING: &str = "crowd_planning";

/// One replica's view of one singleton job's lease.
#[derive(Debug)]
pub struct JobLease {
    store: Arc<dyn Store>,
    name: &'static str,
    holder: String,
    ttl: Duration,
    /// When the lease was last asked for (before the statement ran) and the answer.
    checked: Option<(Instant, bool)>,
}

impl JobLease {
    /// The lease `name` for `holder` (unique per replica), held for `ttl` (real time) per
    /// renewal.
    pub fn new(store: Arc<dyn Store>, name: &'static str, holder: &str, ttl: Duration) -> Self {
        JobLease {
            store,
            name,
            holder: holder.to_owned(),
            ttl: ttl.max(Duration::from_secs(1)),
            checked: None,
        }
    }

    /// Whether this replica runs the job now. Asks the store (taking or renewing the lease) when
    /// a third of the lease's lifetime has passed since it last did, so a holder renews well
    /// before expiry and a loop that asks often costs few statements. The answer is only reused
    /// within that third: the lease was taken no earlier than the question, so it still holds.
    pub async fn held(&mut self) -> bool {
        if let Some((at, held)) = self.checked
            && at.elapsed() < self.ttl / 3
        {
            return held;
        }
        let asked = Instant::now();
        let held = match self
            .store
            .take_job_lease(self.name, &self.holder, self.ttl)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(job = self.name, error = %e, "cannot take or renew a singleton lease; not running the job meanwhile");
                false
            }
        };
        let before = self.checked.map(|(_, h)| h);
        if before != Some(held) {
            if held {
                tracing::info!(job = self.name, "this replica runs the job now");
            } else if before == Some(true) {
                tracing::warn!(job = self.name, "another replica took the job over");
            } else {
                tracing::debug!(job = self.name, "another replica runs the job");
            }
        }
        self.checked = Some((asked, held));
        held
    }

    /// Gives the lease up (the daemon stops), so another replica takes over at once.
    pub async fn release(&mut self) {
        if self.checked.is_some_and(|(_, h)| h) {
            if let Err(e) = self.store.release_job_lease(self.name, &self.holder).await {
                tracing::warn!(job = self.name, error = %e, "cannot release a singleton lease; it expires on its own");
            }
            self.checked = None;
        }
    }
}
