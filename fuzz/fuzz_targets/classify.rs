//! The classifier over every provider definition: any status, headers and body (a `curl -i`
//! paste) classify without a panic, and the verdict holds together: the wait is bounded and
//! representable, and it is given only where the action waits.
#![no_main]

use arbitrary::Unstructured;
use chrono::{DateTime, TimeDelta, Utc};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use tokenwarden_core::classify::{Action, ResponseView};
use tokenwarden_core::provider::Context;
use tokenwarden_fuzz::{provider, response};

/// No wait is believed beyond a week (classify::wait::MAX_WAIT); the definitions' own waits are
/// at most an hour and "until midnight" at most a day.
const MAX_WAIT: Duration = Duration::from_secs(7 * 86_400);

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(selector), Ok(flags), Ok(now_secs), Ok(status)) = (
        u.arbitrary::<u8>(),
        u.arbitrary::<u8>(),
        u.arbitrary::<u32>(),
        u.arbitrary::<u16>(),
    ) else {
        return;
    };
    let p = provider(selector);
    let context = if flags & 1 == 0 {
        Context::Api
    } else {
        Context::TokenEndpoint
    };
    // Any second from 1970 to 2106: HTTP dates and epoch resets are read relative to it.
    let now = DateTime::<Utc>::from_timestamp(i64::from(now_secs), 0).expect("in range");
    let r = response(status % 1000, u.take_rest());
    let c = p.classifier().classify(
        &ResponseView {
            status: r.status,
            headers: &r.headers,
            body: &r.body,
        },
        context,
        now,
    );
    assert_eq!(c.status, r.status);
    assert_eq!(c.retryable, c.action.retryable());
    assert!(!c.title.trim().is_empty(), "every verdict has a title");
    assert!(!c.rule.is_empty());
    if let Some(wait) = c.retry_after {
        assert!(wait <= MAX_WAIT, "wait {wait:?} beyond a week");
        let delta = TimeDelta::from_std(wait).expect("a wait fits a TimeDelta");
        assert!(now.checked_add_signed(delta).is_some(), "now + wait overflows");
        assert!(u64::try_from(wait.as_millis()).is_ok());
        assert!(
            c.action.retryable() && c.action != Action::RefreshAndRetry,
            "a wait only where the action waits: {:?}",
            c.action
        );
    }
    if let Some(pct) = c.usage_pct {
        assert!(pct <= 10_000, "usage {pct}% beyond the clamp");
    }
});
