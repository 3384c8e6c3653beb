//! `/metrics` in the Prometheus text format.
//!
//! Two sources, one page:
//! - **Counters and histograms emitted where things happen**, through the `metrics` facade
//!   (refreshes and cache lookups in the engine, probes in the monitor, proxy requests and
//!   throttle waits in the proxy, webhook deliveries in the outbox, rows deleted by retention),
//!   rendered by `metrics-exporter-prometheus`. The
//!   recorder is process-wide and installed once ([`install`]), so several daemons in one process
//!   (the tests) share it; a process runs one daemon in production.
//! - **Gauges computed at scrape time from the store**, per daemon: connections by provider and
//!   state, open problems by code, and the time left on each provider's tokens as a histogram.
//!
//! Label values come from code or from provider ids and states: never a token, a secret or a
//! connection id (unbounded).

use crate::ServerState;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;
use tokenwarden_core::connection::{Connection, ConnectionState};

/// Refreshes, by `provider` and `outcome` (`ok`, `refused`, `app_refused`, `transient`).
pub const REFRESHES: &str = tokenwarden_engine::tokens::REFRESHES;
/// Health probes, by `provider` and `kind` (the classifier's kind, or `unreachable`).
pub const PROBES: &str = "tokenwarden_probes_total";
/// Proxied requests, by `provider`, `kind` and `status` (emitted by the proxy).
pub const PROXY_REQUESTS: &str = tokenwarden_engine::call::PROXY_REQUESTS;
/// How long the proxy waited because a platform throttled, by `provider`.
pub const THROTTLE_WAIT: &str = tokenwarden_engine::call::THROTTLE_WAIT;
/// Webhook deliveries, by `outcome` (emitted by the outbox sender).
pub const WEBHOOK_DELIVERIES: &str = "tokenwarden_webhook_deliveries_total";
/// Alerts sent, by `reason` and `outcome`.
pub const ALERTS: &str = "tokenwarden_alerts_total";
/// Rows the retention pass deleted, by `table` (`events`, `webhook_deliveries`,
/// `pending_authorizations`).
pub const RETENTION_PRUNED: &str = "tokenwarden_retention_pruned_total";
/// Cache lookups, by `cache` (`token`, `api_key`) and `outcome` (`hit`, `miss`).
pub const CACHE_LOOKUPS: &str = tokenwarden_engine::cache::LOOKUPS;

/// Upper bounds (seconds) of the time-to-expiry histogram: 5 min, 1 h, 6 h, 1 d, 7 d, 30 d, 60 d.
const EXPIRY_BUCKETS: [f64; 7] = [
    300.0,
    3_600.0,
    21_600.0,
    86_400.0,
    604_800.0,
    2_592_000.0,
    5_184_000.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once, and returns the handle that renders it. If another
/// recorder was installed first (an embedding application's), ours renders only the gauges.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(THROTTLE_WAIT.into()),
                &[0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3_600.0],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows only the gauges");
        }
        describe();
        tokenwarden_engine::cache::bind_metrics();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(REFRESHES, "Token refreshes, by provider and outcome.");
    metrics::describe_counter!(PROBES, "Health probes, by provider and verdict.");
    metrics::describe_counter!(
        PROXY_REQUESTS,
        "Proxied API requests, by provider, classification kind and status."
    );
    metrics::describe_histogram!(
        THROTTLE_WAIT,
        metrics::Unit::Seconds,
        "Time spent waiting because a platform throttled."
    );
    metrics::describe_counter!(WEBHOOK_DELIVERIES, "Webhook deliveries, by outcome.");
    metrics::describe_counter!(
        ALERTS,
        "Alerts sent to the notifier, by reason and outcome."
    );
    metrics::describe_counter!(
        RETENTION_PRUNED,
        "Rows deleted because they were older than their retention, by table."
    );
    metrics::describe_counter!(
        tokenwarden_engine::tokens::STORE_REFUSALS,
        "Refreshed token sets the database refused to store, by code (store_full, store_read_only, store_unavailable); each is held in memory until stored."
    );
    metrics::describe_gauge!(
        tokenwarden_engine::tokens::HELD_IN_MEMORY,
        "Refreshed token sets held in memory because the database refused them."
    );
    metrics::describe_counter!(
        CACHE_LOOKUPS,
        "Token and API-key cache lookups, by cache and outcome (hit, miss)."
    );
}

/// `GET /metrics`: any live API key (`Authorization: Bearer tw_…`); Prometheus sends one with
/// `authorization: { credentials_file: … }`. Checked by [`Caller`](crate::auth::Caller), so
/// refused keys count against the client's address like everywhere else.
pub async fn handler(State(s): State<ServerState>, _caller: crate::auth::Caller) -> Response {
    let handle = install();
    handle.run_upkeep();
    let mut text = handle.render();
    match s.store.list_connections().await {
        Ok(conns) => {
            // Expiries without decrypting a token set per connection.
            let provider_of: std::collections::HashMap<&str, &str> = conns
                .iter()
                .map(|c| (c.id.as_str(), c.provider.as_str()))
                .collect();
            let expiries: Vec<(String, Option<chrono::DateTime<chrono::Utc>>)> = s
                .store
                .token_expiries()
                .await
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(id, at)| provider_of.get(id.as_str()).map(|p| ((*p).to_string(), at)))
                .collect();
            text.push_str(&gauges(&conns, &expiries, s.clock.now()));
            let mut apps: BTreeMap<(String, String), u64> = BTreeMap::new();
            for app in s.store.list_apps(None).await.unwrap_or_default() {
                for p in s
                    .store
                    .app_problems(&app.provider, &app.id)
                    .await
                    .unwrap_or_default()
                {
                    *apps
                        .entry((app.provider.to_string(), p.code.as_str().to_owned()))
                        .or_default() += 1;
                }
            }
            text.push_str("# HELP tokenwarden_app_problems Apps the platform refused (wrong or rotated client secret), by provider and code.\n# TYPE tokenwarden_app_problems gauge\n");
            for ((p, code), n) in &apps {
                let _ = writeln!(
                    text,
                    "tokenwarden_app_problems{{provider=\"{}\",code=\"{}\"}} {n}",
                    label(p),
                    label(code)
                );
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the store does not answer");
            text.push_str("# the store did not answer; store-derived gauges are missing\ntokenwarden_store_up 0\n");
        }
    }
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Escapes a label value (backslash, quote, newline), as the exposition format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The store-derived gauges: connections by provider and state, open problems by provider and
/// code, and seconds to expiry per provider as a histogram (tokens without expiry are left out).
pub fn gauges(
    conns: &[Connection],
    expiries: &[(String, Option<DateTime<Utc>>)],
    now: DateTime<Utc>,
) -> String {
    let mut out = String::new();
    out.push_str("# TYPE tokenwarden_store_up gauge\ntokenwarden_store_up 1\n");
    let mut by_state: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    let mut problems: BTreeMap<(String, String), u64> = BTreeMap::new();
    let providers: std::collections::BTreeSet<String> =
        conns.iter().map(|c| c.provider.to_string()).collect();
    for p in &providers {
        for st in ConnectionState::ALL {
            by_state.insert((p.clone(), st.as_str()), 0);
        }
    }
    for c in conns {
        *by_state
            .entry((c.provider.to_string(), c.state.as_str()))
            .or_default() += 1;
        for pr in &c.problems {
            *problems
                .entry((c.provider.to_string(), pr.code.as_str().to_owned()))
                .or_default() += 1;
        }
    }
    out.push_str("# HELP tokenwarden_connections Connections, by provider and state.\n# TYPE tokenwarden_connections gauge\n");
    for ((p, st), n) in &by_state {
        let _ = writeln!(
            out,
            "tokenwarden_connections{{provider=\"{}\",state=\"{st}\"}} {n}",
            label(p)
        );
    }
    out.push_str("# HELP tokenwarden_open_problems Open problems on connections, by provider and code.\n# TYPE tokenwarden_open_problems gauge\n");
    for ((p, code), n) in &problems {
        let _ = writeln!(
            out,
            "tokenwarden_open_problems{{provider=\"{}\",code=\"{}\"}} {n}",
            label(p),
            label(code)
        );
    }
    out.push_str("# HELP tokenwarden_token_expiry_seconds Seconds until each stored access token expires (negative: expired), by provider.\n# TYPE tokenwarden_token_expiry_seconds histogram\n");
    let mut per: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (p, at) in expiries {
        if let Some(at) = at {
            per.entry(p.as_str())
                .or_default()
                .push((*at - now).num_milliseconds() as f64 / 1000.0);
        }
    }
    for (p, secs) in &per {
        let p = label(p);
        for le in EXPIRY_BUCKETS {
            let n = secs.iter().filter(|s| **s <= le).count();
            let _ = writeln!(
                out,
                "tokenwarden_token_expiry_seconds_bucket{{provider=\"{p}\",le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "tokenwarden_token_expiry_seconds_bucket{{provider=\"{p}\",le=\"+Inf\"}} {}",
            secs.len()
        );
        let _ = writeln!(
            out,
            "tokenwarden_token_expiry_seconds_sum{{provider=\"{p}\"}} {}",
            secs.iter().sum::<f64>()
        );
        let _ = writeln!(
            out,
            "tokenwarden_token_expiry_seconds_count{{provider=\"{p}\"}} {}",
            secs.len()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use tokenwarden_core::connection::{Environment, Problem};
    use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};

    fn conn(id: &str, provider: &str, state: ConnectionState, problems: &[&str]) -> Connection {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        Connection {
            id: ConnectionId::parse(id).unwrap(),
            provider: ProviderId::parse(provider).unwrap(),
            app: AppId::parse("demo").unwrap(),
            state,
            environment: Environment::Production,
            region: None,
            api_base: "http://x".into(),
            account_ids: vec![],
            account: None,
            end_user: None,
            scopes: vec![],
            problems: problems
                .iter()
                .map(|c| Problem {
                    code: c.parse().unwrap(),
                    title: "t".into(),
                    fix: "f".into(),
                    since: now,
                })
                .collect(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn gauges_count_by_provider_and_state_and_bucket_expiry() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let conns = vec![
            conn("a", "snapchat", ConnectionState::Active, &[]),
            conn(
                "b",
                "snapchat",
                ConnectionState::ReauthRequired,
                &["grant_refused"],
            ),
            conn("c", "meta", ConnectionState::Active, &["expires_soon"]),
        ];
        let exp = vec![
            ("snapchat".to_string(), Some(now + TimeDelta::minutes(30))),
            ("snapchat".to_string(), Some(now - TimeDelta::minutes(1))),
            ("meta".to_string(), Some(now + TimeDelta::days(59))),
        ];
        let text = gauges(&conns, &exp, now);
        for line in [
            "tokenwarden_connections{provider=\"snapchat\",state=\"active\"} 1",
            "tokenwarden_connections{provider=\"snapchat\",state=\"reauth_required\"} 1",
            "tokenwarden_connections{provider=\"snapchat\",state=\"degraded\"} 0",
            "tokenwarden_connections{provider=\"meta\",state=\"active\"} 1",
            "tokenwarden_open_problems{provider=\"snapchat\",code=\"grant_refused\"} 1",
            "tokenwarden_token_expiry_seconds_bucket{provider=\"snapchat\",le=\"300\"} 1",
            "tokenwarden_token_expiry_seconds_bucket{provider=\"snapchat\",le=\"3600\"} 2",
            "tokenwarden_token_expiry_seconds_bucket{provider=\"meta\",le=\"2592000\"} 0",
            "tokenwarden_token_expiry_seconds_bucket{provider=\"meta\",le=\"5184000\"} 1",
            "tokenwarden_token_expiry_seconds_count{provider=\"meta\"} 1",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        assert!(!text.contains("\"a\""), "no connection id is a label");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
