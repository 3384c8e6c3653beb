//! Exactly one refresh per token lifetime (issue 14 item 1, issue 24 item 3), counted at the
//! sandbox: the fake clock is moved from one refresh deadline to the next, and after each move
//! the daemon is given the time it needs to act. Every refresh style is covered (Snapchat's
//! refresh token, TikTok Login Kit's rotating refresh token with no reuse grace, Threads'
//! self-refresh), and so are tokens whose life is shorter than the provider's margin plus jitter
//! while the scheduler, the health monitor, the token API and the proxy all work at once.

use crate::support;

use chrono::{DateTime, TimeDelta, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{World, world_with};
use tokenwarden_core::clock::Clock;
use tokenwarden_core::connection::ConnectionState;
use tokenwarden_core::id::ConnectionId;
use tokenwarden_core::provider::Registry;

/// Token-endpoint calls per sandbox grant of `provider`.
async fn calls_per_grant(w: &World, provider: &str) -> BTreeMap<String, u64> {
    let sb = w.d.sandbox_base.clone().unwrap();
    let v: serde_json::Value = w
        .http
        .get(format!("{sb}/_sandbox/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["grants"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, c)| c["provider"] == provider)
        .map(|(g, c)| (g.clone(), c["token_calls"].as_u64().unwrap()))
        .collect()
}

/// When each connection was refreshed, by the events the token service wrote.
async fn refreshes(w: &World, ids: &[ConnectionId]) -> Vec<Vec<DateTime<Utc>>> {
    let mut out = Vec::new();
    for id in ids {
        let events =
            w.d.state
                .store
                .list_events(Some(id), 0, 10_000)
                .await
                .unwrap();
        out.push(
            events
                .iter()
                .filter(|e| e.kind == "refreshed")
                .map(|e| e.at)
                .collect(),
        );
    }
    out
}

/// Refresh calls the sandbox saw since `before`, in total.
fn new_calls(before: &BTreeMap<String, u64>, now: &BTreeMap<String, u64>) -> u64 {
    now.iter()
        .map(|(g, n)| n - before.get(g).copied().unwrap_or(0))
        .sum()
}

/// Waits (real time, bounded) until nothing is due at the fake clock's time and every refresh
/// the sandbox answered has been committed.
async fn settle(w: &World, provider: &str, ids: &[ConnectionId], before: &BTreeMap<String, u64>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut quiet = 0;
    while Instant::now() < deadline {
        let next = w.d.state.store.next_refresh_deadline().await.unwrap();
        let calls = new_calls(before, &calls_per_grant(w, provider).await);
        let done: usize = refreshes(w, ids).await.iter().map(Vec::len).sum();
        if next.is_some_and(|n| n > w.clock.now()) && calls == done as u64 {
            quiet += 1;
            if quiet >= 5 {
                return;
            }
        } else {
            quiet = 0;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// Connects `n` connections of `provider`; their ids.
async fn connect(w: &World, provider: &str, n: usize) -> Vec<ConnectionId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{provider}-{i}");
        let flow = w.start_and_approve(provider, &id).await;
        assert_eq!(w.finish(&flow).await.0, 303);
        ids.push(ConnectionId::parse(id).unwrap());
    }
    ids
}

/// Moves the clock from deadline to deadline for `rounds` rounds and checks that every token was
/// refreshed once, after its own deadline: never twice in one lifetime.
async fn one_refresh_per_lifetime(
    w: &World,
    provider: &str,
    ids: &[ConnectionId],
    rounds: usize,
    lifetimes: usize,
) {
    let before = calls_per_grant(w, provider).await;
    let store = w.d.state.store.clone();
    // The earliest a token may be renewed after it was issued: its lifetime less the margin and
    // the jitter (scaled down together for tokens shorter than that).
    let mut issued = Vec::new();
    for id in ids {
        let t = store.get_tokens(id).await.unwrap().unwrap().set;
        issued.push((t.issued_at, t.expires_at.unwrap()));
    }
    for _ in 0..rounds {
        let next = store.next_refresh_deadline().await.unwrap().unwrap();
        // Halfway first, so the scheduler also looks at a time when nothing is due.
        let now = w.clock.now();
        if next > now {
            w.clock.set(now + (next - now) / 2);
            w.d.state.wake.notify_one();
            settle(w, provider, ids, &before).await;
        }
        w.clock.set(next.max(w.clock.now()) + TimeDelta::seconds(1));
        w.d.state.wake.notify_one();
        settle(w, provider, ids, &before).await;
    }
    let after = calls_per_grant(w, provider).await;
    let done = refreshes(w, ids).await;
    let total: usize = done.iter().map(Vec::len).sum();
    let mut history = Vec::new();
    for id in ids {
        for e in store.list_events(Some(id), 0, 10_000).await.unwrap() {
            history.push(format!("{id} {} {} {}", e.at, e.kind, e.message));
        }
    }
    assert_eq!(
        new_calls(&before, &after),
        total as u64,
        "{provider}: every refresh call the platform answered was committed, and no other was made; {:#?}",
        history
    );
    for ((id, times), (first_issued, first_expires)) in ids.iter().zip(&done).zip(&issued) {
        let life = *first_expires - *first_issued;
        assert!(
            times.len() + 1 >= lifetimes && times.len() <= lifetimes + 1,
            "{provider} {id}: {} refreshes over about {lifetimes} lifetimes: {times:?}",
            times.len()
        );
        let mut last = *first_issued;
        for t in times {
            // Never before a quarter of the lifetime: refreshed at most once per lifetime.
            assert!(
                *t - last >= life / 4,
                "{provider} {id}: refreshed again {:?} after the previous refresh: {times:?}",
                (*t - last).to_std()
            );
            last = *t;
        }
        let conn = store.get_connection(id).await.unwrap().unwrap();
        assert_eq!(conn.state, ConnectionState::Active, "{provider} {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refresh_style_refreshes_once_per_lifetime() {
    let w = world_with(None, Registry::builtin().unwrap(), 3_600_000).await;
    for (provider, n, lifetimes) in [("snapchat", 3, 4), ("tiktok", 3, 4), ("threads", 2, 3)] {
        let ids = connect(&w, provider, n).await;
        // Other providers' connections are unscheduled meanwhile, so each round is this one's
        // (their tokens expire; what the monitor does about that is not counted here).
        one_refresh_per_lifetime(&w, provider, &ids, n * lifetimes, lifetimes).await;
        for id in &ids {
            w.d.state.store.set_next_refresh(id, None).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_shorter_than_margin_and_jitter_are_refreshed_once_per_lifetime_under_load() {
    // Snapchat's hour-long tokens with a 50-minute margin and 20 minutes of jitter; TikTok's
    // two-hour tokens (rotating, no reuse grace) with 100 and 40 minutes: each token lives less
    // than its margin plus jitter.
    let mut reg = Registry::builtin().unwrap();
    for (id, margin, jitter) in [("snapchat", 50, 20), ("tiktok", 100, 40)] {
        let mut p = (**reg.get(id).unwrap()).clone();
        p.spec.refresh.margin = Duration::from_secs(margin * 60);
        p.spec.refresh.jitter = Duration::from_secs(jitter * 60);
        reg.replace(p);
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TW_TEST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let w = Arc::new(world_with(None, reg, 50).await);
    for provider in ["tiktok", "snapchat"] {
        let ids = connect(&w, provider, 3).await;
        // The token API and the proxy are used all along, as the monitor probes.
        let stop = Arc::new(AtomicBool::new(false));
        let load = tokio::spawn({
            let (w, stop, ids) = (w.clone(), stop.clone(), ids.clone());
            let probe =
                w.d.state
                    .providers
                    .get(provider)
                    .unwrap()
                    .spec
                    .api
                    .probe
                    .path
                    .clone();
            async move {
                while !stop.load(Ordering::Relaxed) {
                    for id in &ids {
                        let (status, body) = w
                            .api(&w.reader, &format!("v1/connections/{id}/token"))
                            .await;
                        assert_eq!(status, 200, "{body}");
                        let r = w
                            .http
                            .get(format!("{}proxy/{id}{probe}", w.d.base))
                            .bearer_auth(&w.reader)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                    }
                }
            }
        });
        one_refresh_per_lifetime(&w, provider, &ids, 3 * 4, 4).await;
        stop.store(true, Ordering::Relaxed);
        load.await.unwrap();
        for id in &ids {
            w.d.state.store.set_next_refresh(id, None).await.unwrap();
        }
    }
}
