//! A circuit breaker per platform (issue 14 item 4): during an outage of a platform's token
//! endpoint, one trial call at a time instead of every connection retrying on its own.
//!
//! Closed, calls go. After [`BreakerPolicy::threshold`] consecutive failures that say the platform
//! is down (no answer, or a 5xx), it opens for a wait that doubles each time it opens again in a
//! row, up to [`BreakerPolicy::cap`]; meanwhile callers are told how long to wait. Once the wait
//! is over one caller makes a trial call (held for [`BreakerPolicy::trial_ttl`], so a trial whose
//! caller died frees itself); the others keep waiting. An answer from the platform (a token, or a
//! refusal: the platform is up) closes it; a trial that fails opens it again, for longer.
//!
//! Pure: the state and the times come in, the next state goes out; the store keeps the state
//! with a compare-and-swap so every replica shares one breaker per platform.

use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;

/// One breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreakerState {
    /// Consecutive failures that said the platform is down.
    pub failures: u32,
    /// How many times in a row it opened (the next wait doubles with it).
    pub step: u32,
    /// Open until then (`None`: closed).
    pub open_until: Option<DateTime<Utc>>,
    /// A trial call is in flight until then.
    pub trial_until: Option<DateTime<Utc>>,
}

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open it.
    pub threshold: u32,
    /// The first wait.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
    /// How long a trial call holds the breaker before another caller may try.
    pub trial_ttl: Duration,
}

impl Default for BreakerPolicy {
    /// Three failures in a row open it for 5 s, then 10, 20 … up to 5 minutes.
    fn default() -> Self {
        BreakerPolicy {
            threshold: 3,
            base: Duration::from_secs(5),
            cap: Duration::from_secs(300),
            trial_ttl: Duration::from_secs(30),
        }
    }
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: call.
    Call,
    /// Call as the one trial (report the outcome with `trial = true`).
    Trial,
    /// Do not call; try again after this long.
    Wait(Duration),
}

/// How a call to the platform went, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The platform answered (a token, a refusal, a throttle): it is up.
    Answered,
    /// No answer, or an answer that says it is down (5xx).
    Down,
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn until(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now.checked_add_signed(delta(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// How long the breaker stays open the `step`-th time in a row it opens (0 first).
pub fn open_for(policy: &BreakerPolicy, step: u32) -> Duration {
    crate::policy::backoff(step, policy.base, policy.cap, 1.0)
}

/// Whether a caller may call now; the state to store when asking changed it (a trial taken).
pub fn admit(
    state: &BreakerState,
    now: DateTime<Utc>,
    policy: &BreakerPolicy,
) -> (Admission, Option<BreakerState>) {
    let Some(open_until) = state.open_until else {
        return (Admission::Call, None);
    };
    let left = |t: DateTime<Utc>| (t - now).to_std().unwrap_or(Duration::ZERO);
    if now < open_until {
        return (Admission::Wait(left(open_until)), None);
    }
    if let Some(t) = state.trial_until
        && now < t
    {
        // Another caller's trial is in flight: its answer decides.
        return (Admission::Wait(left(t)), None);
    }
    let trial = BreakerState {
        trial_until: Some(until(now, policy.trial_ttl)),
        ..*state
    };
    (Admission::Trial, Some(trial))
}

/// The state after a call admitted as `trial` (or not) went as `outcome`; `None` when it does
/// not change (nothing to store).
pub fn settle(
    state: &BreakerState,
    outcome: CallOutcome,
    trial: bool,
    now: DateTime<Utc>,
    policy: &BreakerPolicy,
) -> Option<BreakerState> {
    match outcome {
        CallOutcome::Answered => (*state != BreakerState::default()).then(BreakerState::default),
        CallOutcome::Down if state.open_until.is_none() => {
            let failures = state.failures.saturating_add(1);
            if failures >= policy.threshold.max(1) {
                Some(BreakerState {
                    failures,
                    step: state.step.saturating_add(1),
                    open_until: Some(until(now, open_for(policy, state.step))),
                    trial_until: None,
                })
            } else {
                Some(BreakerState { failures, ..*state })
            }
        }
        // The trial failed: open again, for longer.
        CallOutcome::Down if trial => Some(BreakerState {
            failures: state.failures.saturating_add(1),
            step: state.step.saturating_add(1),
            open_until: Some(until(now, open_for(policy, state.step))),
            trial_until: None,
        }),
        // A call admitted before it opened, failing after: already counted in the opening.
        CallOutcome::Down => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn an_outage_opens_it_one_trial_goes_and_the_wait_grows_to_the_cap() {
        let p = BreakerPolicy::default();
        let mut st = BreakerState::default();
        assert_eq!(admit(&st, t(0), &p), (Admission::Call, None));
        // Two failures: still closed.
        for _ in 0..2 {
            st = settle(&st, CallOutcome::Down, false, t(0), &p).unwrap();
            assert_eq!(admit(&st, t(0), &p).0, Admission::Call);
        }
        // The third opens it for the base wait.
        st = settle(&st, CallOutcome::Down, false, t(0), &p).unwrap();
        assert_eq!(st.open_until, Some(t(5)));
        assert_eq!(
            admit(&st, t(1), &p).0,
            Admission::Wait(Duration::from_secs(4))
        );
        // A call admitted before it opened and failing after changes nothing.
        assert_eq!(settle(&st, CallOutcome::Down, false, t(1), &p), None);
        // Once the wait is over one caller gets the trial; the others wait for its answer.
        let (a, taken) = admit(&st, t(5), &p);
        assert_eq!(a, Admission::Trial);
        st = taken.unwrap();
        assert_eq!(
            admit(&st, t(6), &p).0,
            Admission::Wait(Duration::from_secs(29))
        );
        // The trial fails: open again for twice as long, and so on up to the cap.
        let mut waits = Vec::new();
        let mut now = t(6);
        for _ in 0..10 {
            st = settle(&st, CallOutcome::Down, true, now, &p).unwrap();
            let open = st.open_until.unwrap();
            waits.push((open - now).num_seconds());
            now = open;
            st = admit(&st, now, &p).1.unwrap();
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300, 300, 300]);
        // A trial whose caller died frees itself after its time.
        let (a, _) = admit(&st, now + TimeDelta::seconds(31), &p);
        assert_eq!(a, Admission::Trial);
        // An answer closes it, and a closed breaker at rest stores nothing.
        st = settle(&st, CallOutcome::Answered, true, now, &p).unwrap();
        assert_eq!(st, BreakerState::default());
        assert_eq!(settle(&st, CallOutcome::Answered, false, now, &p), None);
        // A failure between answers does not accumulate across them.
        st = settle(&st, CallOutcome::Down, false, now, &p).unwrap();
        st = settle(&st, CallOutcome::Answered, false, now, &p).unwrap();
        st = settle(&st, CallOutcome::Down, false, now, &p).unwrap();
        assert_eq!(st.failures, 1);
        assert_eq!(st.open_until, None);
    }
}
