//! Refresh policy: when a token is due, how long to back off. Pure arithmetic; randomness and time
//! come in as arguments so the same inputs give the same answer.

use crate::provider::RefreshSpec;
use crate::token::{TokenSet, expiry_from_seconds};
use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// When the token should be renewed ahead of expiry: `expires_at - margin - jitter × u` (with
/// `u` in `[0, 1)` drawn by the caller, so a crowd expiring together spreads out), never before
/// the provider's minimum age. `None` when the token cannot or need not be renewed (watch it).
///
/// A token whose life is shorter than twice the margin plus the jitter has both scaled down
/// together (see [`lead`]), so its deadline falls in the second half of its life: a 6-minute
/// token with a 5-minute margin and 2 minutes of jitter would otherwise be due before it was
/// issued, and be refreshed as fast as the scheduler can go (issue 24).
pub fn refresh_due_at(spec: &RefreshSpec, set: &TokenSet, u: f64) -> Option<DateTime<Utc>> {
    if !spec.renews(set) {
        return None;
    }
    let expires = set.expires_at?;
    let u = if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (margin, jitter) = lead(spec, set);
    let spread = delta(jitter.mul_f64(u));
    let due = expires
        .checked_sub_signed(delta(margin))?
        .checked_sub_signed(spread)?;
    match spec.min_age {
        Some(min) => Some(due.max(set.issued_at.checked_add_signed(delta(min))?)),
        None => Some(due),
    }
}

/// The margin and jitter that apply to this token: the provider's, unless together they exceed
/// half the token's lifetime (`expires_at - issued_at`); then both are scaled down in proportion
/// so they make exactly half. A token that does not expire, or whose expiry is not after its
/// issue, keeps the provider's (or nothing, for the latter).
pub fn lead(spec: &RefreshSpec, set: &TokenSet) -> (Duration, Duration) {
    let Some(expires) = set.expires_at else {
        return (spec.margin, spec.jitter);
    };
    let life = (expires - set.issued_at).to_std().unwrap_or(Duration::ZERO);
    let half = life / 2;
    let total = spec.margin.saturating_add(spec.jitter);
    if total <= half {
        return (spec.margin, spec.jitter);
    }
    let f = half.as_secs_f64() / total.as_secs_f64();
    (spec.margin.mul_f64(f), spec.jitter.mul_f64(f))
}

/// How long a token must still be valid to be handed out without refreshing it first: the
/// margin of [`lead`]. It is never more than the lead of the scheduler's deadline, so a token
/// the scheduler has not yet renewed is still handed out until that deadline.
pub fn fresh_margin(spec: &RefreshSpec, set: &TokenSet) -> TimeDelta {
    delta(lead(spec, set).0)
}

/// The least time between two scheduled refreshes of one provider's connections by one replica:
/// half the tightest published app- or endpoint-wide limit (the rest stays for the API calls the
/// tokens are for), or 5 per second when the definition publishes none.
pub fn refresh_interval(limits: &[crate::provider::RateLimitSpec]) -> Duration {
    use crate::provider::RateScope;
    limits
        .iter()
        .filter(|l| matches!(l.scope, RateScope::App | RateScope::Endpoint) && l.requests > 0)
        .map(|l| l.per.div_f64(f64::from(l.requests)).saturating_mul(2))
        .max()
        .unwrap_or(Duration::from_millis(200))
}

/// When a crowd must start being refreshed, and which of it: see [`crowd_plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrowdPlan {
    /// When the first refresh must start.
    pub start: DateTime<Utc>,
    /// The latest deadline that decided `start`: the connections whose deadlines are no later
    /// are the crowd to refresh ahead of time. Later ones are not behind and wait for their own
    /// deadlines (so a connection refreshed a moment ago, whose new deadline is a lifetime
    /// away, is never taken again as part of the crowd).
    pub until: DateTime<Utc>,
}

/// When a crowd must start being refreshed so each connection is done by its deadline, at one
/// refresh per `every`: the latest `t` with `t + k·every ≤ deadline_k` for every `k` (deadlines
/// earliest first), i.e. `min_k(deadline_k − k·every)`, and the deadline `deadline_K` of the last
/// `K` reaching that minimum. A lone connection starts at its deadline; 100,000 due within the
/// same hour at 10 per second start hours before the first of them.
/// Refreshing early is safe for a token that may be renewed at any age: the new token simply
/// lives longer. `None` when nothing is scheduled.
///
/// `deadlines` must be sorted earliest first (as the store returns them).
pub fn crowd_plan(deadlines: &[DateTime<Utc>], every: Duration) -> Option<CrowdPlan> {
    debug_assert!(deadlines.is_sorted(), "deadlines must be sorted");
    let step = delta(every);
    let mut lead = TimeDelta::zero();
    let mut plan: Option<CrowdPlan> = None;
    for (k, d) in deadlines.iter().enumerate() {
        if k > 0 {
            lead = lead.checked_add(&step).unwrap_or(TimeDelta::MAX);
        }
        let latest = d
            .checked_sub_signed(lead)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        plan = match plan {
            Some(p) if p.start < latest => Some(p),
            _ => Some(CrowdPlan {
                start: latest,
                until: *d,
            }),
        };
    }
    plan
}

/// The start of [`crowd_plan`].
pub fn crowd_start(deadlines: &[DateTime<Utc>], every: Duration) -> Option<DateTime<Utc>> {
    crowd_plan(deadlines, every).map(|p| p.start)
}

/// The expiry to record for a token response: the platform's `expires_in` when it is sane, else
/// the provider's default lifetime; `None` only for providers whose tokens do not expire
/// (hardening rule 6: missing `expires_in` never means "never refresh").
pub fn resolve_expiry(
    spec: &RefreshSpec,
    now: DateTime<Utc>,
    expires_in: Option<i64>,
) -> Option<DateTime<Utc>> {
    if let Some(at) = expires_in.and_then(|s| expiry_from_seconds(now, s)) {
        return Some(at);
    }
    if !spec.token_expires {
        return None;
    }
    let life = spec.default_lifetime.unwrap_or(Duration::from_secs(3600));
    now.checked_add_signed(delta(life))
}

/// Exponential backoff with full jitter: `u × min(cap, base × 2^attempt)`, `u` in `[0, 1)`.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, u: f64) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
    let ceiling = exp.min(cap);
    let u = if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        1.0
    };
    ceiling.mul_f64(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock as _;
    use crate::provider::Registry;
    use crate::secret::Secret;

    fn set(issued: DateTime<Utc>, life: i64) -> TokenSet {
        TokenSet {
            access_token: Secret::new("x"),
            refresh_token: None,
            token_type: None,
            scopes: vec![],
            issued_at: issued,
            expires_at: expiry_from_seconds(issued, life),
            refresh_expires_at: None,
            token_secret: None,
        }
    }

    #[test]
    fn snapchat_refreshes_minutes_before_the_hour() {
        let reg = Registry::builtin().unwrap();
        let spec = &reg.get("snapchat").unwrap().spec.refresh;
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let s = set(t0, 3600);
        assert_eq!(
            refresh_due_at(spec, &s, 0.0),
            Some(t0 + TimeDelta::minutes(55))
        );
        assert_eq!(
            refresh_due_at(spec, &s, 0.5),
            Some(t0 + TimeDelta::minutes(54))
        );
    }

    #[test]
    fn threads_waits_for_24_hours_and_refreshes_well_before_60_days() {
        let reg = Registry::builtin().unwrap();
        let spec = &reg.get("threads").unwrap().spec.refresh;
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let due = refresh_due_at(spec, &set(t0, 60 * 86_400), 0.99).unwrap();
        assert!(due >= t0 + TimeDelta::hours(24));
        assert!(due <= t0 + TimeDelta::days(46));
        // A token that would be due before it is 24 h old waits until it is (40 hours: even with
        // margin and jitter scaled to half its life, it would be due at 21 h 15 min).
        let young = set(t0, 40 * 3600);
        assert_eq!(
            refresh_due_at(spec, &young, 0.0),
            Some(t0 + TimeDelta::hours(24))
        );
    }

    #[test]
    fn unrenewable_tokens_are_watched_not_scheduled() {
        let reg = Registry::builtin().unwrap();
        for id in ["meta", "tiktok-business"] {
            let spec = &reg.get(id).unwrap().spec.refresh;
            assert_eq!(
                refresh_due_at(spec, &set(crate::clock::SystemClock.now(), 3600), 0.0),
                None,
                "{id}"
            );
        }
    }

    #[test]
    fn tiktok_business_refreshes_a_set_that_came_with_a_refresh_token_only() {
        let reg = Registry::builtin().unwrap();
        let spec = &reg.get("tiktok-business").unwrap().spec.refresh;
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut creator = set(t0, 86_400);
        creator.refresh_token = Some(Secret::new("rt"));
        let due = refresh_due_at(spec, &creator, 0.0).expect("a creator token is scheduled");
        assert!(due > t0 && due < t0 + TimeDelta::hours(24), "{due}");
        let mut advertiser = set(t0, 86_400);
        advertiser.expires_at = None;
        assert_eq!(refresh_due_at(spec, &advertiser, 0.0), None);
        // Even with an expiry, a set without a refresh token is not renewed: watched.
        assert_eq!(refresh_due_at(spec, &set(t0, 86_400), 0.0), None);
    }

    #[test]
    fn refreshes_are_paced_at_half_the_tightest_app_limit() {
        let reg = Registry::builtin().unwrap();
        let every = |id: &str| refresh_interval(&reg.get(id).unwrap().spec.rate_limits);
        // Snapchat: 20/s per app -> 10/s.
        assert_eq!(every("snapchat"), Duration::from_millis(100));
        // TikTok API for Business: 10/s, 600/min, 864000/day per app -> the tightest, halved.
        assert_eq!(every("tiktok-business"), Duration::from_millis(200));
        // TikTok Login Kit: 600/min per endpoint -> 5/s.
        assert_eq!(every("tiktok"), Duration::from_millis(200));
        // Threads publishes only per-token limits: the default.
        assert_eq!(every("threads"), Duration::from_millis(200));
    }

    #[test]
    fn a_crowd_starts_early_enough_to_meet_every_deadline() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let every = Duration::from_millis(100);
        assert_eq!(crowd_start(&[], every), None);
        // One connection: at its deadline.
        assert_eq!(crowd_start(&[t0], every), Some(t0));
        // Sparse deadlines (further apart than the pace): the first one decides.
        let sparse: Vec<_> = (0..5).map(|i| t0 + TimeDelta::seconds(i)).collect();
        assert_eq!(crowd_start(&sparse, every), Some(t0));
        // 1,000 due at the same moment: 999 steps before it.
        let same = vec![t0; 1000];
        assert_eq!(
            crowd_start(&same, every),
            Some(t0 - TimeDelta::milliseconds(99_900))
        );
        // A crowd behind an early straggler: the crowd decides, not the straggler.
        let mut mixed = vec![t0 - TimeDelta::seconds(10)];
        mixed.extend(std::iter::repeat_n(t0 + TimeDelta::hours(1), 100_000));
        let start = crowd_start(&mixed, every).unwrap();
        assert_eq!(start, t0 + TimeDelta::hours(1) - TimeDelta::seconds(10_000));
        // Starting then and refreshing one per `every` meets every deadline, and one step later
        // would miss the last.
        for (k, d) in mixed.iter().enumerate() {
            assert!(start + TimeDelta::milliseconds(100 * k as i64) <= *d);
        }
    }

    #[test]
    fn a_crowd_plan_names_the_deadlines_that_are_behind() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let s = TimeDelta::seconds;
        let every = Duration::from_secs(1);
        // (deadlines as seconds after t0, expected start, expected until)
        let behind_a_straggler: Vec<i64> = [0].into_iter().chain([100; 200]).collect();
        // (deadlines, (start, until)), in seconds after t0.
        type Case<'a> = (&'a [i64], Option<(i64, i64)>);
        let cases: [Case; 7] = [
            (&[], None),
            // Alone: its own deadline, and only it.
            (&[0], Some((0, 0))),
            // Sparse: the first decides; the others are not behind.
            (&[0, 10, 20], Some((0, 0))),
            // Three at once: two steps early, all three.
            (&[5, 5, 5], Some((3, 5))),
            // A straggler before a crowd too small to matter: the straggler alone.
            (&[0, 100, 100, 100, 100], Some((0, 0))),
            // A crowd behind a straggler: the crowd (through its last member) decides.
            (&behind_a_straggler, Some((-100, 100))),
            // A crowd, then one a lifetime later (refreshed a moment ago): not part of it.
            (&[5, 5, 5, 3600], Some((3, 5))),
        ];
        for (deadlines, want) in cases {
            let d: Vec<_> = deadlines.iter().map(|x| t0 + s(*x)).collect();
            let got = crowd_plan(&d, every);
            assert_eq!(
                got,
                want.map(|(a, b)| CrowdPlan {
                    start: t0 + s(a),
                    until: t0 + s(b)
                }),
                "{deadlines:?}"
            );
        }
    }

    #[test]
    fn short_tokens_are_due_in_the_second_half_of_their_life() {
        let reg = Registry::builtin().unwrap();
        let snap = reg.get("snapchat").unwrap().spec.refresh.clone();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let min = |m: i64| t0 + TimeDelta::minutes(m);
        // (lifetime in seconds, u, expected deadline, expected fresh margin in seconds)
        let cases = [
            // An hour: the provider's margin (5 min) and jitter (2 min) as they are.
            (3600, 0.0, Some(min(55)), 300),
            (3600, 1.0, Some(min(53)), 300),
            // 14 minutes: 7 minutes is exactly half, still as they are.
            (840, 1.0, Some(min(7)), 300),
            // 6 minutes (issue 24): scaled to 3 minutes in all, never before the issue.
            (360, 1.0, Some(min(3)), 128),
            (
                360,
                0.0,
                Some(t0 + TimeDelta::milliseconds(360_000 - 128_571)),
                128,
            ),
            // A token with no life left is due at its expiry, not before its issue.
            (0, 1.0, Some(t0), 0),
        ];
        for (life, u, want, margin) in cases {
            let s = set(t0, life);
            let s = TokenSet {
                expires_at: Some(t0 + TimeDelta::seconds(life)),
                ..s
            };
            let got = refresh_due_at(&snap, &s, u);
            // Scaling is floating point: to the millisecond.
            let off = got.zip(want).map(|(g, w)| (g - w).num_milliseconds().abs());
            assert!(off.is_some_and(|o| o <= 1), "{life} s, u = {u}: {got:?}");
            assert_eq!(fresh_margin(&snap, &s).num_seconds(), margin, "{life} s");
            let due = refresh_due_at(&snap, &s, u).unwrap();
            assert!(due >= t0 && due <= s.expires_at.unwrap() - fresh_margin(&snap, &s));
        }
    }

    #[test]
    fn expiry_falls_back_to_the_default_lifetime() {
        let reg = Registry::builtin().unwrap();
        let snap = &reg.get("snapchat").unwrap().spec.refresh;
        let now = DateTime::from_timestamp(0, 0).unwrap();
        assert_eq!(
            resolve_expiry(snap, now, Some(1800)),
            Some(now + TimeDelta::seconds(1800))
        );
        for garbage in [None, Some(0), Some(-1), Some(i64::MAX)] {
            assert_eq!(
                resolve_expiry(snap, now, garbage),
                Some(now + TimeDelta::minutes(30))
            );
        }
        let tt = &reg.get("tiktok-business").unwrap().spec.refresh;
        assert_eq!(resolve_expiry(tt, now, None), None);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(30);
        assert_eq!(backoff(0, base, cap, 1.0), base);
        assert_eq!(backoff(3, base, cap, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(60, base, cap, 1.0), cap);
        assert_eq!(backoff(60, base, cap, 0.0), Duration::ZERO);
        assert_eq!(backoff(2, base, cap, 0.5), Duration::from_millis(200));
    }
}
