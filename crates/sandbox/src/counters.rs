//! Counters the admin API reports, so tests and benchmarks can assert on what reached the
//! platform (e.g. "200 concurrent callers of an expired token caused exactly one refresh").

use crate::provider::Provider;
use dashmap::DashMap;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct ProviderCounters {
    pub api_calls: AtomicU64,
    pub unauthorized_sent: AtomicU64,
    pub too_many_requests_sent: AtomicU64,
    /// Every rate-limit signal, including TikTok's 40100 in HTTP 200 and Graph code 4/17/80004.
    pub rate_limited_sent: AtomicU64,
    /// API calls whose token belongs to the other environment's host (a sandbox token on the
    /// production host or the reverse), answered as an unknown token.
    pub wrong_environment_sent: AtomicU64,
    /// API calls whose credential came in a form the platform does not document (Threads:
    /// `Authorization: Bearer` rather than the `access_token` query parameter). Accepted, since
    /// no first-party source says it is refused, but counted so tests can require the
    /// documented form.
    pub undocumented_credentials: AtomicU64,
    /// Token-endpoint calls answered by an outage (they never reach the token endpoint, so they
    /// are not in the token calls): what a breaker saves the platform during one.
    pub token_calls_in_outage: AtomicU64,
    /// Deauthorize callbacks the app answered with a 2xx.
    pub deauthorize_callbacks_delivered: AtomicU64,
    /// Deauthorize callback attempts that failed (no answer, or a non-2xx one).
    pub deauthorize_callbacks_failed: AtomicU64,
}

/// Token-endpoint calls keyed by (provider, grant id or "-" when unknown, grant type).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    providers: [ProviderCounters; Provider::ALL.len()],
    token_calls: DashMap<(Provider, String, String), u64>,
    /// Per provider: (the current second of the sandbox clock, its API calls, the most API calls
    /// any second saw), so a test can see the busiest second by count, not by timing: what
    /// several replicas sent together. Constant memory however long the sandbox runs.
    busiest: [parking_lot::Mutex<(i64, u64, u64)>; Provider::ALL.len()],
}

impl Counters {
    pub fn of(&self, p: Provider) -> &ProviderCounters {
        &self.providers[p.index()]
    }

    pub fn token_call(&self, p: Provider, grant: Option<&str>, grant_type: &str) {
        *self
            .token_calls
            .entry((p, grant.unwrap_or("-").to_string(), grant_type.to_string()))
            .or_default() += 1;
    }

    /// Counts an API call in its second of the sandbox clock.
    pub fn api_call(&self, p: Provider, now: chrono::DateTime<chrono::Utc>) {
        Self::bump(&self.of(p).api_calls);
        let mut b = self.busiest[p.index()].lock();
        let second = now.timestamp();
        // A call stamped a moment before the current second counts in it (never less).
        if second > b.0 {
            *b = (second, 0, b.2);
        }
        b.1 += 1;
        b.2 = b.2.max(b.1);
    }

    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reset(&self) {
        for p in &self.providers {
            p.api_calls.store(0, Ordering::Relaxed);
            p.unauthorized_sent.store(0, Ordering::Relaxed);
            p.too_many_requests_sent.store(0, Ordering::Relaxed);
            p.rate_limited_sent.store(0, Ordering::Relaxed);
            p.wrong_environment_sent.store(0, Ordering::Relaxed);
            p.undocumented_credentials.store(0, Ordering::Relaxed);
            p.token_calls_in_outage.store(0, Ordering::Relaxed);
            p.deauthorize_callbacks_delivered
                .store(0, Ordering::Relaxed);
            p.deauthorize_callbacks_failed.store(0, Ordering::Relaxed);
        }
        self.token_calls.clear();
        for b in &self.busiest {
            *b.lock() = (0, 0, 0);
        }
    }

    /// `{providers: {id: {...}}, grants: {grant: {provider, token_calls: {type: n}}}}`.
    pub fn snapshot(&self) -> Value {
        let mut providers = serde_json::Map::new();
        let mut per_type: BTreeMap<Provider, BTreeMap<String, u64>> = BTreeMap::new();
        let mut grants: BTreeMap<String, (Provider, BTreeMap<String, u64>)> = BTreeMap::new();
        for e in self.token_calls.iter() {
            let (p, grant, ty) = e.key();
            *per_type
                .entry(*p)
                .or_default()
                .entry(ty.clone())
                .or_default() += *e.value();
            if grant != "-" {
                grants
                    .entry(grant.clone())
                    .or_insert_with(|| (*p, BTreeMap::new()))
                    .1
                    .insert(ty.clone(), *e.value());
            }
        }
        for p in Provider::ALL {
            let c = self.of(p);
            let calls = per_type.remove(&p).unwrap_or_default();
            let busiest_second = self.busiest[p.index()].lock().2;
            providers.insert(
                p.id().to_string(),
                json!({
                    "token_calls": calls.values().sum::<u64>(),
                    "token_calls_by_grant_type": calls,
                    "api_calls": c.api_calls.load(Ordering::Relaxed),
                    "busiest_second_api_calls": busiest_second,
                    "unauthorized_sent": c.unauthorized_sent.load(Ordering::Relaxed),
                    "too_many_requests_sent": c.too_many_requests_sent.load(Ordering::Relaxed),
                    "rate_limited_sent": c.rate_limited_sent.load(Ordering::Relaxed),
                    "wrong_environment_sent": c.wrong_environment_sent.load(Ordering::Relaxed),
                    "undocumented_credentials": c.undocumented_credentials.load(Ordering::Relaxed),
                    "token_calls_in_outage": c.token_calls_in_outage.load(Ordering::Relaxed),
                    "deauthorize_callbacks_delivered": c.deauthorize_callbacks_delivered.load(Ordering::Relaxed),
                    "deauthorize_callbacks_failed": c.deauthorize_callbacks_failed.load(Ordering::Relaxed),
                }),
            );
        }
        let grants: serde_json::Map<String, Value> = grants
            .into_iter()
            .map(|(g, (p, calls))| {
                (
                    g,
                    json!({"provider": p, "token_calls": calls.values().sum::<u64>(), "token_calls_by_grant_type": calls}),
                )
            })
            .collect();
        json!({"providers": providers, "grants": grants})
    }
}
