//! Activity over time, from the events table: refreshes, failures and throttles per hour, overall
//! and per connection, drawn server-side as a small inline SVG (no script, no external image).
//!
//! [`Activity`] reads new events after a cursor (the store's ids only grow) and keeps hourly
//! counts for the last two days in memory, so a page view costs one short query, not a scan.

use crate::page::escape;
use chrono::{DateTime, Timelike, Utc};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use tokenwarden_store::{Event, EventValue, Store, StoreError};

/// What an event counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    /// A token was refreshed.
    Refresh = 0,
    /// A refresh or probe failed, or the platform refused the grant or the app.
    Failure = 1,
    /// The platform throttled.
    Throttle = 2,
}

/// Which series an event belongs to, if any.
pub fn series_of(e: &Event) -> Option<Series> {
    let kind_detail = match e.details.get("kind") {
        Some(EventValue::Text(k)) => k.as_str(),
        _ => "",
    };
    match e.kind.as_str() {
        "refreshed" => Some(Series::Refresh),
        k if k.contains("throttl") || k.contains("rate_limited") => Some(Series::Throttle),
        "refresh_failed" if kind_detail == "rate_limited" => Some(Series::Throttle),
        "refresh_failed" | "reauth_required" | "app_refused" | "probe_failed" => {
            Some(Series::Failure)
        }
        _ => None,
    }
}

/// Hours kept.
const KEEP_HOURS: i64 = 48;
/// Hours drawn.
pub const CHART_HOURS: i64 = 24;

#[derive(Debug, Default)]
struct Counts {
    cursor: i64,
    /// Per hour (epoch hour), per key (`None`: every connection).
    hours: HashMap<Option<String>, BTreeMap<i64, [u32; 3]>>,
    last_refresh: HashMap<String, DateTime<Utc>>,
}

/// Hourly activity, fed from the events table.
#[derive(Debug, Default)]
pub struct Activity {
    counts: tokio::sync::Mutex<Counts>,
}

fn hour_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600)
}

/// A chart's data: the hour each bar starts and its three counts, oldest first.
pub type Bars = Vec<(DateTime<Utc>, [u32; 3])>;

impl Activity {
    /// Reads events appended since the last call, then returns the last [`CHART_HOURS`] hours up to
    /// `now` for `connection` (or overall) and the time of its last refresh.
    pub async fn bars(
        &self,
        store: &dyn Store,
        connection: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(Bars, Option<DateTime<Utc>>), StoreError> {
        let mut c = self.counts.lock().await;
        self.catch_up(&mut c, store, now).await?;
        let key = connection.map(str::to_string);
        let end = hour_of(now);
        let empty = BTreeMap::new();
        let per = c.hours.get(&key).unwrap_or(&empty);
        let bars = (end - CHART_HOURS + 1..=end)
            .map(|h| {
                (
                    DateTime::from_timestamp(h * 3600, 0).unwrap_or(now),
                    per.get(&h).copied().unwrap_or_default(),
                )
            })
            .collect();
        let last = connection.and_then(|id| c.last_refresh.get(id).copied());
        Ok((bars, last))
    }

    /// The last refresh of every connection seen.
    pub async fn last_refreshes(
        &self,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let mut c = self.counts.lock().await;
        self.catch_up(&mut c, store, now).await?;
        Ok(c.last_refresh.clone())
    }

    async fn catch_up(
        &self,
        c: &mut Counts,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let oldest = hour_of(now) - KEEP_HOURS;
        loop {
            let batch = store.list_events(None, c.cursor, 1000).await?;
            let Some(last) = batch.last() else { break };
            c.cursor = last.id;
            for e in &batch {
                if e.kind == "refreshed"
                    && let Some(id) = &e.connection
                {
                    c.last_refresh.insert(id.to_string(), e.at);
                }
                let Some(series) = series_of(e) else { continue };
                let h = hour_of(e.at);
                if h < oldest {
                    continue;
                }
                let mut keys = vec![None];
                if let Some(id) = &e.connection {
                    keys.push(Some(id.to_string()));
                }
                for k in keys {
                    c.hours.entry(k).or_default().entry(h).or_default()[series as usize] += 1;
                }
            }
            if batch.len() < 1000 {
                break;
            }
        }
        for per in c.hours.values_mut() {
            per.retain(|h, _| *h >= oldest);
        }
        c.hours.retain(|_, per| !per.is_empty());
        Ok(())
    }
}

/// Draws stacked hourly bars (refreshes, failures, throttles) as an inline SVG. Colours come from
/// the stylesheet (classes `s0`, `s1`, `s2`), so the page's CSP needs no inline style.
pub fn svg(bars: &[(DateTime<Utc>, [u32; 3])], label: &str) -> String {
    let (w, h, pad) = (480.0_f64, 110.0_f64, 18.0_f64);
    let max = bars
        .iter()
        .map(|(_, c)| c.iter().sum::<u32>())
        .max()
        .unwrap_or(0)
        .max(1);
    let n = bars.len().max(1) as f64;
    let slot = (w - 2.0) / n;
    let bar_w = (slot - 2.0).max(1.0);
    let plot_h = h - pad;
    let totals: [u32; 3] = bars.iter().fold([0; 3], |mut t, (_, c)| {
        for i in 0..3 {
            t[i] += c[i];
        }
        t
    });
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">\
<title>{}</title><line class=\"axis\" x1=\"0\" y1=\"{plot_h}\" x2=\"{w}\" y2=\"{plot_h}\"/>\
<text class=\"tick\" x=\"2\" y=\"10\">{max}</text>",
        escape(&format!(
            "{label}: {} refreshes, {} failures, {} throttles in the last {} hours",
            totals[0],
            totals[1],
            totals[2],
            bars.len()
        )),
        escape(label)
    );
    for (i, (at, counts)) in bars.iter().enumerate() {
        let x = 1.0 + i as f64 * slot;
        let mut y = plot_h;
        for (s, count) in counts.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            let bh = (f64::from(*count) / f64::from(max) * (plot_h - 12.0)).max(1.5);
            y -= bh;
            let _ = write!(
                out,
                "<rect class=\"s{s}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{bh:.1}\"><title>{}: {} refreshes, {} failures, {} throttles</title></rect>",
                at.format("%Y-%m-%d %H:00 UTC"),
                counts[0],
                counts[1],
                counts[2]
            );
        }
        if at.hour() % 6 == 0 && x < w - 30.0 {
            let _ = write!(
                out,
                "<text class=\"tick\" x=\"{x:.1}\" y=\"{}\">{}</text>",
                h - 4.0,
                at.format("%H:00")
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use std::collections::BTreeMap as Map;

    fn ev(kind: &str, detail: Option<&str>) -> Event {
        let mut details = Map::new();
        if let Some(k) = detail {
            details.insert("kind".to_string(), EventValue::Text(k.into()));
        }
        Event {
            id: 1,
            connection: None,
            at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            kind: kind.into(),
            message: String::new(),
            details,
        }
    }

    #[test]
    fn events_fall_into_series() {
        assert_eq!(series_of(&ev("refreshed", None)), Some(Series::Refresh));
        assert_eq!(
            series_of(&ev("refresh_failed", Some("rate_limited"))),
            Some(Series::Throttle)
        );
        assert_eq!(
            series_of(&ev("refresh_failed", Some("service_unavailable"))),
            Some(Series::Failure)
        );
        assert_eq!(
            series_of(&ev("reauth_required", None)),
            Some(Series::Failure)
        );
        assert_eq!(series_of(&ev("connected", None)), None);
    }

    #[test]
    fn svg_has_one_rect_per_nonzero_count_and_escapes_the_label() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let bars = vec![(t, [2, 0, 1]), (t + TimeDelta::hours(1), [0, 0, 0])];
        let s = svg(&bars, "<b>x</b>");
        assert_eq!(s.matches("<rect").count(), 2);
        assert!(s.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(s.contains("3 refreshes") || s.contains("2 refreshes, 0 failures, 1 throttles"));
        assert!(!s.contains("style="), "no inline style (CSP)");
    }
}
