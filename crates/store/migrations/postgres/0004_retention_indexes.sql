-- Retention deletes events and finished webhook deliveries by age (`Store::prune_events`,
-- `Store::prune_deliveries`); without these the hourly pass would read both tables whole to find
-- what is old. Deliveries are found by status first, so the few old pending ones and the many
-- recent finished ones are not read either. `pending_expires` (0001) already serves expired
-- pending authorizations.
CREATE INDEX events_at ON events (at);
CREATE INDEX deliveries_finished ON webhook_deliveries (status, created_at);
