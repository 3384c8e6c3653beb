//! [`Events`] on SQL.

use super::SqlStore;
use super::row::{from_ms, json, ms, parse_id, unjson};
use crate::Events;
use crate::error::Result;
use crate::model::*;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;
use tokenwarden_core::id::ConnectionId;

#[async_trait]
impl Events for SqlStore {
    async fn append_event(&self, e: &NewEvent) -> Result<i64> {
        e.check()?;
        let row = sqlx::query("INSERT INTO events (connection_id, at, kind, message, details) VALUES ($1, $2, $3, $4, $5) RETURNING id")
            .bind(e.connection.as_ref().map(|c| c.as_str().to_string()))
            .bind(ms(e.at))
            .bind(e.kind)
            .bind(&e.message)
            .bind(json(&e.details)?)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("id")?)
    }

    async fn list_events(
        &self,
        conn: Option<&ConnectionId>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let rows = match conn {
            Some(c) => sqlx::query(
                "SELECT * FROM events WHERE connection_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(c.as_str())
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
            None => {
                sqlx::query("SELECT * FROM events WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after_id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Self::events_from(&rows)
    }

    async fn latest_events(&self, conn: &ConnectionId, limit: i64) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT * FROM events WHERE connection_id = $1 ORDER BY id DESC LIMIT $2) AS newest ORDER BY id",
        )
        .bind(conn.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Self::events_from(&rows)
    }
}

impl SqlStore {
    /// Event rows as events.
    fn events_from(rows: &[AnyRow]) -> Result<Vec<Event>> {
        rows.iter()
            .map(|r| {
                let c: Option<String> = r.try_get("connection_id")?;
                Ok(Event {
                    id: r.try_get("id")?,
                    connection: c.map(|c| parse_id("connection id", c)).transpose()?,
                    at: from_ms(r.try_get("at")?)?,
                    kind: r.try_get("kind")?,
                    message: r.try_get("message")?,
                    details: unjson::<BTreeMap<String, EventValue>>(
                        "details",
                        &r.try_get::<String, _>("details")?,
                    )?,
                })
            })
            .collect()
    }
}
