//! Waits and usage from headers: `Retry-After` (seconds or HTTP date), epoch resets, and Meta's
//! usage headers (percentages; `estimated_time_to_regain_access` in minutes, platforms.md §5).

use super::ResponseView;
use crate::provider::{
    WaitFieldFormat, WaitFieldSpec, WaitHeaderFormat, WaitHeaderSpec, WaitUntil,
};
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

/// The longest wait the body's wait fields give (Google Ads `retryDelay: "40591s"`), at most a
/// week; `None` when no field holds a readable one.
pub(super) fn from_body(json: &Value, specs: &[WaitFieldSpec]) -> Option<Duration> {
    specs
        .iter()
        .filter_map(|spec| {
            let v = super::body::lookup_where(json, &spec.path, &|v| {
                field_seconds(v, spec.format).is_some()
            })?;
            field_seconds(v, spec.format)
        })
        .map(|secs| Duration::from_secs_f64(secs).min(MAX_WAIT))
        .max()
}

/// Seconds a wait field holds: a non-negative finite number, or for `duration` a string like
/// `"40591s"` or `"1.5s"` (protobuf `Duration` in JSON).
fn field_seconds(v: &Value, format: WaitFieldFormat) -> Option<f64> {
    let secs = match (v, format) {
        (Value::Number(n), _) => n.as_f64()?,
        (Value::String(t), WaitFieldFormat::Seconds) => t.trim().parse::<f64>().ok()?,
        (Value::String(t), WaitFieldFormat::Duration) => {
            let t = t.trim();
            t.strip_suffix('s')
                .unwrap_or(t)
                .trim()
                .parse::<f64>()
                .ok()?
        }
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then_some(secs)
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
                WaitHeaderFormat::SecondsOrEpoch => {
                    if let Some(d) = seconds_or_epoch(value, now) {
                        bump_wait(d);
                    }
                }
                WaitHeaderFormat::RateLimit => {
                    if let Some(d) = ratelimit_reset(value) {
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

/// Values at or above this are Unix times, below it delays: no delay is 30 years long, and no
/// reset is before 2001.
const EPOCH_THRESHOLD: i64 = 1_000_000_000;

/// `X-RateLimit-Reset`: Unix time on GitHub and X, seconds to wait on Reddit and others.
pub(super) fn seconds_or_epoch(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)? as i64;
    let secs = if v >= EPOCH_THRESHOLD {
        v.saturating_sub(now.timestamp()).max(0)
    } else {
        v
    };
    Some(Duration::from_secs(secs.unsigned_abs()))
}

/// The IETF `RateLimit` field: `limit=100, remaining=0, reset=30` (draft 07) or
/// `"default";r=0;t=30` (draft 08 and later); the longest reset of any policy listed.
pub(super) fn ratelimit_reset(value: &str) -> Option<Duration> {
    value
        .split([',', ';'])
        .filter_map(|part| {
            let (k, v) = part.trim().split_once('=')?;
            matches!(k.trim(), "reset" | "t")
                .then(|| v.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
        .max()
        .map(Duration::from_secs)
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

    #[test]
    fn x_ratelimit_reset_is_a_unix_time_or_a_delay() {
        let at = (now().timestamp() + 90).to_string();
        assert_eq!(seconds_or_epoch(&at, now()), Some(Duration::from_secs(90)));
        assert_eq!(seconds_or_epoch("42", now()), Some(Duration::from_secs(42)));
        assert_eq!(
            seconds_or_epoch("42.5", now()),
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            seconds_or_epoch(&(now().timestamp() - 5).to_string(), now()),
            Some(Duration::ZERO),
            "a reset in the past means no wait"
        );
        assert_eq!(seconds_or_epoch("-3", now()), None);
        assert_eq!(seconds_or_epoch("later", now()), None);
    }

    #[test]
    fn the_ietf_ratelimit_field_gives_its_longest_reset() {
        assert_eq!(
            ratelimit_reset("limit=100, remaining=0, reset=30"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            ratelimit_reset("\"default\";r=0;t=12, \"daily\";r=5;t=3600"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(ratelimit_reset("limit=100, remaining=3"), None);
        assert_eq!(ratelimit_reset(""), None);
    }
}
