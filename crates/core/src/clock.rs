//! Time is injected, never read ad hoc: everything that decides on expiry takes a [`Clock`].
//!
//! [`ScaledClock`] runs `scale` times faster than real time from a shared origin, so the sandbox and
//! the daemon can agree that a 60-minute token lives a few seconds (and that 60 days pass in minutes).

use chrono::{DateTime, TimeDelta, Utc};
use std::sync::{Arc, Mutex};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place the wall clock is read (clippy.toml)"
    )]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A span of the platforms' time as real time, given how much faster their clock runs
/// (`time_scale`; anything not finite and positive counts as 1).
pub fn to_real(platform: std::time::Duration, time_scale: f64) -> std::time::Duration {
    if time_scale.is_finite() && time_scale > 0.0 {
        platform.div_f64(time_scale)
    } else {
        platform
    }
}

/// A clock that runs `scale` times faster than real time from `origin`: at real time
/// `origin + r` it reads `origin + r * scale`. Two processes given the same origin and scale agree.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    origin: DateTime<Utc>,
    scale: f64,
}

impl ScaledClock {
    /// A clock scaled by `scale` (≥ 1; values below are taken as 1) from `origin`.
    pub fn new(origin: DateTime<Utc>, scale: f64) -> Self {
        let scale = if scale.is_finite() && scale >= 1.0 {
            scale
        } else {
            1.0
        };
        ScaledClock { origin, scale }
    }

    /// The scale factor.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The origin shared by every process that must agree on scaled time.
    pub fn origin(&self) -> DateTime<Utc> {
        self.origin
    }

    /// Converts a span of scaled time into the real time it takes.
    pub fn real_duration(&self, scaled: std::time::Duration) -> std::time::Duration {
        scaled.div_f64(self.scale)
    }

    /// The scaled reading for a given real instant.
    pub fn at(&self, real: DateTime<Utc>) -> DateTime<Utc> {
        let elapsed = real - self.origin;
        let micros = elapsed.num_microseconds().unwrap_or(i64::MAX) as f64 * self.scale;
        let micros = micros.clamp(i64::MIN as f64, i64::MAX as f64) as i64;
        self.origin
            .checked_add_signed(TimeDelta::microseconds(micros))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> DateTime<Utc> {
        self.at(SystemClock.now())
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<Mutex<DateTime<Utc>>>);

impl FakeClock {
    /// A fake clock reading `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        FakeClock(Arc::new(Mutex::new(start)))
    }

    /// Moves the clock forward (or back, with a negative delta).
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }

    /// Sets the clock.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_clock_multiplies_elapsed_time() {
        let origin = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let c = ScaledClock::new(origin, 60.0);
        let real = origin + TimeDelta::seconds(10);
        assert_eq!(c.at(real), origin + TimeDelta::seconds(600));
        assert_eq!(
            c.real_duration(std::time::Duration::from_secs(3600)),
            std::time::Duration::from_secs(60)
        );
        assert_eq!(ScaledClock::new(origin, f64::NAN).scale(), 1.0);
    }

    #[test]
    fn fake_clock_moves_when_told() {
        let t0 = DateTime::from_timestamp(0, 0).unwrap();
        let c = FakeClock::new(t0);
        c.advance(TimeDelta::hours(1));
        assert_eq!(c.now(), t0 + TimeDelta::hours(1));
    }
}
