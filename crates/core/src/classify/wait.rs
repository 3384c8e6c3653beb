//! Waits and usage from headers: `Retry-After` (seconds or HTTP date), epoch resets, and Meta's
//! usage headers (percentages; `estimated_time_to_regain_access` in minutes, platforms.md §5).

use super::ResponseView;
use crate::provider::{WaitHeaderFormat, WaitHeaderSpec, WaitUntil};
use chrono::{DateTime, Days, NaiveTime, Utc};
use serde_json::Value;
use std::time::Duration;

/// No wait longer than a week is believed; a longer one is a garbled header.
const MAX_WAIT: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Default)]
pub(super) struct HeaderWait {
    pub(super) wait: Option<Duration>,
    pub(super) usage_pct: Option<u32>,
}

pub(super) fn from_headers<'a>(
    resp: &ResponseView<'_>,
    specs: impl Iterator<Item = &'a WaitHeaderSpec>,
    now: DateTime<Utc>,
) -> HeaderWait {
    let mut out = HeaderWait::default();
    let mut bump_wait = |d: Duration| {
        let d = d.min(MAX_WAIT);
        out.wait = Some(out.wait.map_or(d, |w| w.max(d)));
    };
    let mut usage: Option<u32> = None;
    for spec in specs {
        for (_, value) in resp
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(&spec.name))
        {
            let value = value.trim();
            match spec.format {
                WaitHeaderFormat::Seconds => {
                    if let Ok(s) = value.parse::<u64>() {
                        bump_wait(Duration::from_secs(s));
                    }
                }
                WaitHeaderFormat::RetryAfter => {
                    if let Some(d) = retry_after(value, now) {
                        bump_wait(d);
                    }
                }
                WaitHeaderFormat::EpochSeconds => {
                    if let Ok(at) = value.parse::<i64>() {
                        let secs = at.saturating_sub(now.timestamp());
                        if secs > 0 {
                            bump_wait(Duration::from_secs(secs.unsigned_abs()));
                        }
                    }
                }
                WaitHeaderFormat::UsagePercentJson => {
                    if let Ok(v) = serde_json::from_str::<Value>(value) {
                        usage = usage.max(max_percent(&v));
                    }
                }
                WaitHeaderFormat::MetaBusinessUseCase => {
                    if let Ok(v) = serde_json::from_str::<Value>(value) {
                        let (pct, minutes) = buc(&v);
                        usage = usage.max(pct);
                        if let Some(m) = minutes.filter(|m| *m > 0) {
                            bump_wait(Duration::from_secs(m.saturating_mul(60)));
                        }
                    }
                }
            }
        }
    }
    out.usage_pct = usage;
    out
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT` (RFC 9110 §10.2.3).
pub(super) fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at: DateTime<Utc> = at.into();
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

pub(super) fn until(u: WaitUntil, now: DateTime<Utc>) -> Duration {
    match u {
        WaitUntil::NextUtcMidnight => {
            let next = now
                .date_naive()
                .checked_add_days(Days::new(1))
                .map(|d| d.and_time(NaiveTime::MIN).and_utc());
            next.and_then(|n| (n - now).to_std().ok())
                .unwrap_or(Duration::from_secs(86_400))
        }
    }
}

fn percent(v: &Value) -> Option<u32> {
    let f = v
        .as_f64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse::<f64>().ok()))?;
    (f.is_finite() && f >= 0.0).then(|| f.min(10_000.0).round() as u32)
}

/// Highest numeric value among an object's fields (`call_count`, `total_cputime`, `total_time`,
/// `acc_id_util_pct`, `app_id_util_pct`).
fn max_percent(v: &Value) -> Option<u32> {
    v.as_object()?.values().filter_map(percent).max()
}

/// `{"<business_id>":[{"type":"ads_management","call_count":..,"estimated_time_to_regain_access":..}]}`
fn buc(v: &Value) -> (Option<u32>, Option<u64>) {
    let mut pct = None;
    let mut minutes = None;
    let entries = v
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .flat_map(|e| match e {
            Value::Array(a) => a.iter().collect::<Vec<_>>(),
            other => vec![other],
        });
    for e in entries {
        let Some(obj) = e.as_object() else { continue };
        for key in ["call_count", "total_cputime", "total_time"] {
            pct = pct.max(obj.get(key).and_then(percent));
        }
        let m = obj.get("estimated_time_to_regain_access").and_then(|m| {
            m.as_u64()
                .or_else(|| m.as_str().and_then(|s| s.trim().parse().ok()))
        });
        minutes = minutes.max(m);
    }
    (pct, minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T22:00:00Z")
            .unwrap()
            .into()
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("7", now()), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Mon, 23 Nov 2026 22:01:00 GMT", now()),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after("Mon, 23 Nov 2026 21:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now()), None);
    }

    #[test]
    fn midnight_is_two_hours_away() {
        assert_eq!(
            until(WaitUntil::NextUtcMidnight, now()),
            Duration::from_secs(7200)
        );
    }

    #[test]
    fn meta_buc_gives_usage_and_minutes() {
        let v: Value = serde_json::from_str(
            r#"{"123":[{"type":"ads_management","call_count":98,"total_cputime":20,"total_time":40,"estimated_time_to_regain_access":5}]}"#,
        )
        .unwrap();
        assert_eq!(buc(&v), (Some(98), Some(5)));
        assert_eq!(
            max_percent(&serde_json::json!({"call_count": 12, "total_time": "95"})),
            Some(95)
        );
    }
}
