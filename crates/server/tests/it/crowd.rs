//! A crowd of connections whose deadlines are too close together for the provider's pace is
//! refreshed ahead of its deadlines; a lone connection, and a degraded one waiting for its
//! backoff, are not pulled forward. The fake clock is held, so nothing here ever becomes due:
//! every refresh seen was started early by the crowd plan.

use crate::support;

use chrono::TimeDelta;
use std::time::Duration;
use support::world;
use tokenwarden_core::clock::Clock;
use tokenwarden_core::connection::ConnectionState;
use tokenwarden_core::id::{ConnectionId, ProviderId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_is_refreshed_ahead_of_its_deadlines_and_a_lone_connection_is_not() {
    let w = world().await;
    // 31 connect flows from one address with the clock held: past the connect flow's per-address
    // burst, which is not what this test is about.
    w.d.state
        .limits
        .connect
        .set_rate(tokenwarden_server::limits::Rate {
            per_minute: 6000,
            burst: 100,
        });
    let store = w.d.state.store.clone();
    let mut crowd = Vec::new();
    for i in 0..30 {
        let id = format!("crowd-{i:02}");
        let flow = w.start_and_approve("snapchat", &id).await;
        assert_eq!(w.finish(&flow).await.0, 303);
        crowd.push(ConnectionId::parse(id).unwrap());
    }
    let flow = w.start_and_approve("tiktok", "lone").await;
    assert_eq!(w.finish(&flow).await.0, 303);
    let lone = ConnectionId::parse("lone").unwrap();

    // The tokens have lived a while (a crowd never renews a token younger than a quarter of its
    // life early: in a crowd that can never be caught up with, that only spends the budget twice).
    w.clock.advance(TimeDelta::minutes(20));
    // All due two seconds from now. Snapchat's pace is 10 per second (half its 20/s app limit),
    // so 29 refreshes take 2.8 s: the crowd must start now. One TikTok connection alone can wait.
    let at = w.clock.now() + TimeDelta::seconds(2);
    for id in crowd.iter().chain([&lone]) {
        store.set_next_refresh(id, Some(at)).await.unwrap();
    }
    let waiting = &crowd[0];
    // Degraded as a failing refresh leaves it (a good probe does not clear a failing refresh).
    let failing = tokenwarden_core::connection::Problem {
        code: tokenwarden_core::state::ProblemCode::RefreshFailing,
        title: "Refreshing is failing for now".into(),
        fix: "Nothing to do.".into(),
        since: w.clock.now(),
    };
    store
        .set_state(
            waiting,
            ConnectionState::Degraded,
            &[failing],
            w.clock.now(),
        )
        .await
        .unwrap();
    let mut versions = Vec::new();
    for id in crowd.iter().chain([&lone]) {
        versions.push(store.get_tokens(id).await.unwrap().unwrap().version);
    }
    w.d.state.wake.notify_one();

    let refreshed = |versions: Vec<i64>| {
        let store = store.clone();
        let ids: Vec<_> = crowd.iter().chain([&lone]).cloned().collect();
        async move {
            let mut out = Vec::new();
            for (id, v) in ids.iter().zip(versions) {
                let now = store.get_tokens(id).await.unwrap().unwrap().version;
                out.push(now > v);
            }
            out
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        let r = refreshed(versions.clone()).await;
        if r[1..30].iter().all(|x| *x) || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        done[1..30].iter().all(|x| *x),
        "every active member of the crowd was refreshed before its deadline: {done:?}"
    );
    assert!(w.clock.now() < at, "the clock is held: nothing was due");
    // Give the scheduler time to (wrongly) take the others, then look.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done = refreshed(versions).await;
    assert!(!done[0], "a degraded connection waits for its backoff");
    assert!(
        !done[30],
        "a lone connection is refreshed at its deadline, not before"
    );
    assert_eq!(
        store.get_connection(&lone).await.unwrap().unwrap().state,
        ConnectionState::Active
    );
    // The crowd's new deadlines are the new tokens' (about 55 minutes on).
    let snapchat = ProviderId::parse("snapchat").unwrap();
    let next = store.refresh_deadlines(&snapchat, 100).await.unwrap();
    assert_eq!(next.len(), 29);
    assert!(
        next.iter().all(|d| *d > at + TimeDelta::minutes(45)),
        "{next:?}"
    );
}
