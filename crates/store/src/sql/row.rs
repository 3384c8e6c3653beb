//! Values as rows hold them and back: times as milliseconds, JSON columns, ids, problems.

use crate::error::{Result, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokenwarden_core::connection::{Problem, ProblemCode};

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_ms(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v)
        .ok_or_else(|| StoreError::Corrupt(format!("time {v} out of range")))
}

pub(super) fn problem_code(s: &str) -> Result<ProblemCode> {
    s.parse().map_err(StoreError::Corrupt)
}

pub(super) fn opt_from_ms(v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(from_ms).transpose()
}

pub(super) fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis())
        .unwrap_or(i64::MAX / 4)
        .max(1)
}

pub(super) fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn unjson<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn parse_id<T: std::str::FromStr>(what: &str, s: String) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>()
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ProblemRow {
    code: String,
    title: String,
    fix: String,
    since: i64,
}

pub(super) fn problems_to_json(p: &[Problem]) -> Result<String> {
    json(
        &p.iter()
            .map(|p| ProblemRow {
                code: p.code.as_str().to_owned(),
                title: p.title.clone(),
                fix: p.fix.clone(),
                since: ms(p.since),
            })
            .collect::<Vec<_>>(),
    )
}

pub(super) fn problems_from_json(s: &str) -> Result<Vec<Problem>> {
    let rows: Vec<ProblemRow> = unjson("problems", s)?;
    rows.into_iter()
        .map(|r| {
            Ok(Problem {
                code: problem_code(&r.code)?,
                title: r.title,
                fix: r.fix,
                since: from_ms(r.since)?,
            })
        })
        .collect()
}
