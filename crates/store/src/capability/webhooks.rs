//! Webhook endpoints and the outbox of deliveries to them.

use crate::{Delegate, Delivery, StoreError, WebhookEndpoint};
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

/// Every call goes to the [`Delegate`]'s store, unchanged.
#[async_trait]
impl<T: Delegate<dyn Webhooks> + Send + Sync> Webhooks for T {
    async fn put_webhook(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        self.delegate().put_webhook(endpoint).await
    }

    async fn get_webhook(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError> {
        self.delegate().get_webhook(id).await
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
        self.delegate().list_webhooks().await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        self.delegate().delete_webhook(id).await
    }

    async fn enqueue_deliveries(
        &self,
        payload: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        self.delegate().enqueue_deliveries(payload, now).await
    }

    async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        ttl: Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.delegate().claim_due_deliveries(now, limit, ttl).await
    }

    async fn mark_delivered(&self, id: &str) -> Result<(), StoreError> {
        self.delegate().mark_delivered(id).await
    }

    async fn mark_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.delegate().mark_failed(id, error, retry_at).await
    }

    async fn list_deliveries(
        &self,
        webhook: &str,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.delegate().list_deliveries(webhook, limit).await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        self.delegate().get_delivery(id).await
    }
}
