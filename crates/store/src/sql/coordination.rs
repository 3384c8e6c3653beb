//! [`Coordination`] on SQL.

use super::SqlStore;
use super::row::{from_ms, ms, ttl_ms};
use crate::Coordination;
use crate::error::Result;
use crate::model::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::time::Duration;
use tokenwarden_core::clock::{Clock as _, SystemClock};

#[async_trait]
impl Coordination for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn take_rate_slot(
        &self,
        lanes: &[RateLane],
        after: Duration,
        within: Duration,
    ) -> Result<RateSlot> {
        // Rows are locked in key order, so two bookings over overlapping lanes cannot deadlock;
        // the first statement of the transaction is a write, so on SQLite it takes the write
        // lock before anything is read.
        let mut sorted: Vec<&RateLane> = lanes.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        sorted.dedup_by(|a, b| a.key == b.key);
        if sorted.is_empty() {
            return Ok(RateSlot::Granted {
                wait: Duration::ZERO,
                slowed: false,
                at: SystemClock.now(),
            });
        }
        let db_now = self.now_sql();
        let upsert = format!(
            "INSERT INTO rate_lanes (lane, interval_ms, factor, next_free, hold_until) VALUES ($1, $2, 1.0, 0, 0)
             ON CONFLICT (lane) DO UPDATE SET interval_ms = excluded.interval_ms
             RETURNING factor, next_free, hold_until, {db_now} AS now"
        );
        let mut tx = self.pool.begin().await?;
        let mut seen = Vec::with_capacity(sorted.len());
        let mut now = 0i64;
        for lane in &sorted {
            let r = sqlx::query(&upsert)
                .bind(&lane.key)
                .bind(ttl_ms(lane.interval))
                .fetch_one(&mut *tx)
                .await?;
            let factor: f64 = r.try_get("factor")?;
            let next_free: i64 = r.try_get("next_free")?;
            let hold_until: i64 = r.try_get("hold_until")?;
            now = now.max(r.try_get("now")?);
            seen.push((lane, factor, next_free.max(hold_until)));
        }
        let earliest = now.saturating_add(ttl_ms(after).min(i64::MAX / 4));
        let slot = seen
            .iter()
            .map(|(_, _, free)| *free)
            .fold(earliest, i64::max);
        let wait = Duration::from_millis(u64::try_from(slot - now).unwrap_or(0));
        if slot - now > i64::try_from(within.as_millis()).unwrap_or(i64::MAX) {
            tx.commit().await?;
            return Ok(RateSlot::Refused { would_wait: wait });
        }
        let mut slowed = false;
        for (lane, factor, _) in &seen {
            let factor = if factor.is_finite() && *factor > 0.0 {
                factor.min(1.0)
            } else {
                1.0
            };
            slowed |= factor < 1.0;
            let spacing = lane.interval.as_secs_f64() * 1000.0 / factor;
            let next = slot.saturating_add(spacing.min(1e15).ceil() as i64);
            sqlx::query("UPDATE rate_lanes SET next_free = $2 WHERE lane = $1")
                .bind(&lane.key)
                .bind(next)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(RateSlot::Granted {
            wait,
            slowed,
            at: from_ms(slot)?,
        })
    }

    async fn rate_feedback(&self, lanes: &[String], feedback: RateFeedback) -> Result<()> {
        let db_now = self.now_sql();
        let (most, least) = (self.greatest(), self.least());
        for lane in lanes {
            match feedback {
                RateFeedback::Throttled { hold, min_factor } => {
                    sqlx::query(&format!(
                        "UPDATE rate_lanes SET factor = {most}(factor / 2, $2),
                           hold_until = {most}(hold_until, {db_now} + $3),
                           next_free = {most}(next_free, {db_now} + $3)
                         WHERE lane = $1"
                    ))
                    .bind(lane)
                    .bind(min_factor)
                    .bind(ttl_ms(hold))
                    .execute(&self.pool)
                    .await?;
                }
                RateFeedback::Slower { by, min_factor } => {
                    sqlx::query(&format!(
                        "UPDATE rate_lanes SET factor = {most}(factor * $2, $3) WHERE lane = $1"
                    ))
                    .bind(lane)
                    .bind(by)
                    .bind(min_factor)
                    .execute(&self.pool)
                    .await?;
                }
                RateFeedback::Recovered { step } => {
                    sqlx::query(&format!(
                        "UPDATE rate_lanes SET factor = {least}(factor + $2, 1.0) WHERE lane = $1 AND factor < 1.0"
                    ))
                    .bind(lane)
                    .bind(step)
                    .execute(&self.pool)
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn hold_rate_lanes(&self, lanes: &[String], hold: Duration) -> Result<()> {
        let db_now = self.now_sql();
        let most = self.greatest();
        let mut sorted: Vec<&String> = lanes.iter().collect();
        sorted.sort();
        sorted.dedup();
        for lane in sorted {
            sqlx::query(&format!(
                "INSERT INTO rate_lanes (lane, interval_ms, factor, next_free, hold_until)
                 VALUES ($1, 0, 1.0, {db_now} + $2, {db_now} + $2)
                 ON CONFLICT (lane) DO UPDATE SET
                   hold_until = {most}(rate_lanes.hold_until, excluded.hold_until),
                   next_free = {most}(rate_lanes.next_free, excluded.next_free)"
            ))
            .bind(lane)
            .bind(ttl_ms(hold))
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    async fn rate_holds(&self) -> Result<Vec<(String, Duration)>> {
        let db_now = self.now_sql();
        let rows = sqlx::query(&format!(
            "SELECT lane, hold_until - {db_now} AS left_ms FROM rate_lanes
             WHERE hold_until > {db_now} ORDER BY lane LIMIT 10000"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let left: i64 = r.try_get("left_ms")?;
                Ok((
                    r.try_get("lane")?,
                    Duration::from_millis(u64::try_from(left).unwrap_or(0)),
                ))
            })
            .collect()
    }

    async fn take_job_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let db_now = self.now_sql();
        let row = sqlx::query(&format!(
            "INSERT INTO job_leases (name, holder, expires_at) VALUES ($1, $2, {db_now} + $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE job_leases.holder = excluded.holder OR job_leases.expires_at <= {db_now}
             RETURNING holder"
        ))
        .bind(name)
        .bind(holder)
        .bind(ttl_ms(ttl))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    async fn release_job_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM job_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn claim_alert(&self, key: &str, holder: &str, now: DateTime<Utc>) -> Result<bool> {
        let row = sqlx::query(
            "INSERT INTO alerts_sent (alert_key, holder, sent_at) VALUES ($1, $2, $3)
             ON CONFLICT (alert_key) DO NOTHING RETURNING alert_key",
        )
        .bind(key)
        .bind(holder)
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    async fn unclaim_alert(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM alerts_sent WHERE alert_key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn breaker(&self, name: &str) -> Result<(BreakerRecord, DateTime<Utc>)> {
        let db_now = self.now_sql();
        let r = sqlx::query(&format!(
            "SELECT {db_now} AS now, b.failures, b.step, b.open_until, b.trial_until, b.version
             FROM (SELECT 1 AS one) AS o LEFT JOIN circuit_breakers b ON b.breaker = $1"
        ))
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        let now = from_ms(r.try_get("now")?)?;
        let Some(version) = r.try_get::<Option<i64>, _>("version")? else {
            return Ok((BreakerRecord::default(), now));
        };
        let at = |v: i64| (v > 0).then(|| from_ms(v)).transpose();
        let count = |c: &str| -> Result<u32> {
            Ok(u32::try_from(r.try_get::<i64, _>(c)?.max(0)).unwrap_or(u32::MAX))
        };
        Ok((
            BreakerRecord {
                state: tokenwarden_core::breaker::BreakerState {
                    failures: count("failures")?,
                    step: count("step")?,
                    open_until: at(r.try_get("open_until")?)?,
                    trial_until: at(r.try_get("trial_until")?)?,
                },
                version,
            },
            now,
        ))
    }

    async fn put_breaker(
        &self,
        name: &str,
        expected_version: i64,
        st: &tokenwarden_core::breaker::BreakerState,
    ) -> Result<bool> {
        let at = |t: Option<DateTime<Utc>>| t.map_or(0, ms);
        let done = if expected_version == 0 {
            sqlx::query(
                "INSERT INTO circuit_breakers (breaker, failures, step, open_until, trial_until, version)
                 VALUES ($1, $2, $3, $4, $5, 1) ON CONFLICT (breaker) DO NOTHING",
            )
            .bind(name)
            .bind(i64::from(st.failures))
            .bind(i64::from(st.step))
            .bind(at(st.open_until))
            .bind(at(st.trial_until))
            .execute(&self.pool)
            .await?
        } else {
            sqlx::query(
                "UPDATE circuit_breakers SET failures = $2, step = $3, open_until = $4, trial_until = $5, version = version + 1
                 WHERE breaker = $1 AND version = $6",
            )
            .bind(name)
            .bind(i64::from(st.failures))
            .bind(i64::from(st.step))
            .bind(at(st.open_until))
            .bind(at(st.trial_until))
            .bind(expected_version)
            .execute(&self.pool)
            .await?
        };
        Ok(done.rows_affected() == 1)
    }
}
