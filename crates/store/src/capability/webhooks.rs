//! Webhook endpoints and the outbox of deliveries to them.

use crate::{Delivery, StoreError, WebhookEndpoint};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Webhook endpoints and the outbox of deliveries to them (hardening rule 16).
#[async_trait]
pub trait Webhooks: Send + Sync {
    /// Inserts or replaces an endpoint (the signing secret is encrypted).
    async fn put_webhook(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError>;
    /// One endpoint.
    async fn get_webhook(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// All endpoints.
    async fn list_webhooks(&self) -> Result<Vec<WebhookEndpoint>, StoreError>;
    /// Deletes an endpoint and its deliveries.
    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError>;
    /// Enqueues one delivery per enabled endpoint (durably, hardening rule 16); their ids.
    async fn enqueue_deliveries(
        &self,
        payload: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError>;
    /// Claims due pending deliveries for `ttl` (counts an attempt). `SKIP LOCKED` on PostgreSQL.
    async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        ttl: Duration,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Marks a delivery done.
    async fn mark_delivered(&self, id: &str) -> Result<(), StoreError>;
    /// Records a failure: retried at `retry_at`, or given up on (`None`).
    async fn mark_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// The latest deliveries to one endpoint, newest first (the delivery log).
    async fn list_deliveries(&self, webhook: &str, limit: i64)
    -> Result<Vec<Delivery>, StoreError>;
    /// One delivery.
    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError>;
}
