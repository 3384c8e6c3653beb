//! The one contract suite, run against SQLite and PostgreSQL (a fresh database per test).
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/postgres` or `TOKENWARDEN_TEST_DATABASE_URL`;
//! an unreachable server fails the test unless `TOKENWARDEN_SKIP_POSTGRES=1`.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
mod support;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Row;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokenwarden_core::connection::{ConnectionState, Problem};
use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};
use tokenwarden_core::secret::Secret;
use tokenwarden_store::*;

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::run(super::Kind::Sqlite, super::cases::$case).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::run(super::Kind::Postgres, super::cases::$case).await
                }
            )*
        }
    };
}

contract!(
    apps_and_app_problems,
    state_changes_are_announced_once_with_the_change,
    connections_crud_and_schedule,
    token_sets_version_and_replace,
    lease_under_contention_one_winner,
    lease_expiry_and_fencing,
    a_sent_refresh_is_seen_by_the_next_holder_until_settled,
    burst_of_stale_callers_refreshes_once,
    claim_due_refreshes_is_disjoint,
    a_crowd_is_seen_and_claimed_early_per_provider,
    the_crowd_plan_in_the_database_is_the_pure_one,
    a_refresh_commit_moves_the_deadline_with_the_token,
    a_stale_refresh_failure_changes_nothing,
    pending_is_single_use_under_race,
    connect_sessions_are_single_use_under_race_and_say_why_not,
    a_connection_keeps_its_account_and_end_user,
    events_append_and_refuse_secret_keys,
    api_keys_hashed_with_roles,
    webhooks_and_outbox,
    aad_binding_refuses_moved_ciphertexts,
    a_row_that_does_not_decrypt_fails_alone_and_can_be_deleted,
    wrong_or_missing_key_refused_at_open,
    no_plaintext_secret_in_raw_storage,
    rotation_while_reading_and_writing,
    key_budget_refuses_before_nonce_limit,
    retention_prunes_old_events_in_batches_and_cursors_survive,
    retention_prunes_finished_deliveries_never_pending_ones,
    retention_purges_expired_pending_authorizations,
    retention_by_two_replicas_at_once_deletes_each_row_once,
    shared_rate_lanes_keep_one_schedule_across_replicas,
    shared_rate_lanes_follow_throttles_and_recover,
    rate_holds_are_seen_by_every_replica,
    job_leases_have_one_holder_and_are_taken_over_when_expired,
    alerts_are_claimed_once,
    dashboard_sessions_are_shared_and_end_when_idle_or_old,
    signin_failures_lock_a_key_for_every_replica,
    a_replica_reloads_its_keys_for_a_key_it_lacks_and_says_what_to_do,
    circuit_breakers_change_by_compare_and_swap,
);

#[tokio::test]
async fn unknown_scheme_is_a_clear_error() {
    let e = open("mysql://x/y", Keyring::generate("k1").unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("sqlite://") && e.contains("postgres://"), "{e}");
    // The short `sqlite:PATH` form opens too.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}?mode=rwc", dir.path().join("short.db").display());
    let s = open(&url, Keyring::generate("k1").unwrap()).await.unwrap();
    assert_eq!(s.backend(), Backend::Sqlite);
    assert!(dir.path().join("short.db").exists());
}

#[tokio::test]
async fn sqlite_is_wal_with_full_sync_and_foreign_keys() {
    // Hardening rule 13: WAL with synchronous=NORMAL can drop recent commits on power loss.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    let s = tokenwarden_store::sql::SqlStore::open(&url, Keyring::generate("k1").unwrap())
        .await
        .unwrap();
    for (pragma, want) in [
        ("journal_mode", "wal"),
        ("synchronous", "2"),
        ("foreign_keys", "1"),
    ] {
        let row = sqlx::query(&format!("PRAGMA {pragma}"))
            .fetch_one(s.pool())
            .await
            .unwrap();
        let got = row
            .try_get::<String, _>(0)
            .or_else(|_| row.try_get::<i64, _>(0).map(|v| v.to_string()))
            .unwrap();
        assert_eq!(got, want, "{pragma}");
    }
}

#[tokio::test]
async fn sqlite_prunes_through_indexes_not_scans() {
    // The retention pass runs hourly over tables that grow by millions of rows a day: each of its
    // row pickers must seek an index, never read the table whole.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("plan.db").display());
    let s = tokenwarden_store::sql::SqlStore::open(&url, Keyring::generate("k1").unwrap())
        .await
        .unwrap();
    for (picker, index) in [
        ("SELECT id FROM events WHERE at < 1 LIMIT 5", "events_at"),
        (
            "SELECT id FROM webhook_deliveries WHERE status IN ('delivered', 'dead') AND created_at < 1 LIMIT 5",
            "deliveries_finished",
        ),
        (
            "SELECT state_hash FROM pending_authorizations WHERE expires_at <= 1 LIMIT 5",
            "pending_expires",
        ),
    ] {
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {picker}"))
            .fetch_all(s.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("detail"))
            .collect();
        let plan = plan.join("; ");
        assert!(
            plan.contains("SEARCH") && plan.contains(index),
            "{picker}: {plan}"
        );
    }
}

#[tokio::test]
async fn sqlite_disk_full_is_store_full_and_keeps_the_last_token_set() {
    // Hardening rule 13: a full disk is a transient error for the caller to retry, named as what
    // it is (issue 24 item 1: not "cannot reach its database"), and the previous token set stays
    // intact. `max_page_count` makes the database "full".
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("full.db").display());
    let s = tokenwarden_store::sql::SqlStore::open(&url, Keyring::generate("k1").unwrap())
        .await
        .unwrap();
    s.put_connection(&connection("c1")).await.unwrap();
    s.put_initial_tokens(&cid("c1"), &tokens("kept", None))
        .await
        .unwrap();
    // Cap every pooled connection (the pragma is per connection).
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = s.pool().acquire().await.unwrap();
        let pages: i64 = sqlx::query("PRAGMA page_count")
            .fetch_one(&mut *c)
            .await
            .unwrap()
            .get(0);
        sqlx::query(&format!("PRAGMA max_page_count = {}", pages + 1))
            .execute(&mut *c)
            .await
            .unwrap();
        held.push(c);
    }
    drop(held);
    let big = "x".repeat(64 * 1024);
    let mut err = None;
    for i in 0..50 {
        s.put_connection(&connection(&format!("filler{i}")))
            .await
            .ok();
        if let Err(e) = s
            .put_initial_tokens(&cid("c1"), &tokens(&big, Some(&big)))
            .await
        {
            err = Some(e);
            break;
        }
    }
    let e = err.expect("the capped database filled up");
    assert!(e.to_string().contains("full"), "{e}");
    assert!(e.is_transient(), "{e}");
    assert!(matches!(e, StoreError::Full(_)), "{e}");
    assert_eq!(e.code(), "store_full");
    assert!(e.refuses_writes());
    assert!(!e.to_string().contains("xxxxxxxx"), "{e}");
    let st = s.get_tokens(&cid("c1")).await.unwrap().unwrap();
    assert_eq!(st.set.access_token.expose(), "kept");
}

mod cases {
    use super::*;

    fn pid() -> ProviderId {
        ProviderId::parse("snapchat").unwrap()
    }

    fn ids(claimed: Vec<(ConnectionId, i64)>) -> Vec<ConnectionId> {
        claimed.into_iter().map(|(c, _)| c).collect()
    }

    /// A refresh commit moves the deadline with the token (issue 24 item 3): the old, passed
    /// deadline is never visible with the lease free, so it cannot be claimed again; the claim
    /// says which version it took.
    pub async fn a_refresh_commit_moves_the_deadline_with_the_token(db: Arc<Db>) {
        let s = db.open().await;
        let c = seeded(&*s, "c-due").await;
        s.set_next_refresh(&c, Some(t0() - TimeDelta::minutes(1)))
            .await
            .unwrap();
        let ttl = Duration::from_secs(60);
        let claimed = s.claim_due_refreshes(t0(), 10, "r1", ttl).await.unwrap();
        let v = s.get_tokens(&c).await.unwrap().unwrap().version;
        assert_eq!(claimed, vec![(c.clone(), v)]);
        let lease = s
            .acquire_refresh_lease(&c, "r1", ttl)
            .await
            .unwrap()
            .unwrap();
        let next = t0() + TimeDelta::minutes(55);
        let done = s
            .commit_refresh(&lease, &tokens("new", Some("rt")), Some(next))
            .await
            .unwrap();
        assert_eq!(done.version, v + 1);
        assert_eq!(s.next_refresh_deadline().await.unwrap(), Some(next));
        assert!(
            s.claim_due_refreshes(t0(), 10, "r1", ttl)
                .await
                .unwrap()
                .is_empty(),
            "the refreshed token is not due again"
        );
        // A fenced commit writes neither the token nor the deadline.
        assert!(matches!(
            s.commit_refresh(&lease, &tokens("late", None), Some(t0()))
                .await,
            Err(StoreError::Fenced { .. })
        ));
        assert_eq!(s.next_refresh_deadline().await.unwrap(), Some(next));
        assert_eq!(
            s.get_tokens(&c)
                .await
                .unwrap()
                .unwrap()
                .set
                .access_token
                .expose(),
            "new"
        );
    }

    /// A failure is recorded only against the token version it tried to replace (issue 24
    /// item 2): recorded with an old version after a newer success, it changes nothing.
    pub async fn a_stale_refresh_failure_changes_nothing(db: Arc<Db>) {
        let s = db.open().await;
        s.put_webhook(&WebhookEndpoint {
            id: "hook1".into(),
            url: "https://hooks.example/tw".into(),
            signing_secret: Secret::new("whsec_signing_secret_value"),
            enabled: true,
            created_at: t0(),
        })
        .await
        .unwrap();
        let c = seeded(&*s, "c-stale").await;
        let ttl = Duration::from_millis(200);
        // Replica A takes the lease and stalls past it; B refreshes.
        let a = s
            .acquire_refresh_lease(&c, "A", ttl)
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let b = s
            .acquire_refresh_lease(&c, "B", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("A's lease lapsed");
        let next = t0() + TimeDelta::minutes(55);
        s.commit_refresh(&b, &tokens("from-B", Some("rt-B")), Some(next))
            .await
            .unwrap();
        let events_before = s.list_events(Some(&c), 0, 100).await.unwrap().len();
        let deliveries_before = s.list_deliveries("hook1", 100).await.unwrap().len();
        // A's failure arrives late.
        let recorded = s
            .record_refresh_failure(
                &a,
                ConnectionState::Degraded,
                &[problem("refresh_failing")],
                Some(t0() + TimeDelta::seconds(30)),
                t0(),
            )
            .await
            .unwrap();
        assert!(!recorded, "a stale failure is not recorded");
        let conn = s.get_connection(&c).await.unwrap().unwrap();
        assert_eq!(conn.state, ConnectionState::Active);
        assert!(conn.problems.is_empty(), "{:?}", conn.problems);
        assert_eq!(s.next_refresh_deadline().await.unwrap(), Some(next));
        assert_eq!(
            s.list_events(Some(&c), 0, 100).await.unwrap().len(),
            events_before,
            "no event"
        );
        assert_eq!(
            s.list_deliveries("hook1", 100).await.unwrap().len(),
            deliveries_before,
            "no webhook outbox row"
        );
        let now = s.get_tokens(&c).await.unwrap().unwrap();
        assert_eq!(now.set.access_token.expose(), "from-B");

        // A current failure is recorded, with its announcement, and gives the lease up.
        let l = s
            .acquire_refresh_lease(&c, "A", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        let retry = t0() + TimeDelta::seconds(30);
        assert!(
            s.record_refresh_failure(
                &l,
                ConnectionState::Degraded,
                &[problem("refresh_failing")],
                Some(retry),
                t0(),
            )
            .await
            .unwrap()
        );
        let conn = s.get_connection(&c).await.unwrap().unwrap();
        assert_eq!(conn.state, ConnectionState::Degraded);
        assert_eq!(conn.problems[0].code.as_str(), "refresh_failing");
        assert_eq!(s.next_refresh_deadline().await.unwrap(), Some(retry));
        assert_eq!(
            s.list_deliveries("hook1", 100).await.unwrap().len(),
            deliveries_before + 1
        );
        assert!(
            s.acquire_refresh_lease(&c, "B", ttl)
                .await
                .unwrap()
                .is_some(),
            "the lease was given up"
        );
    }

    fn problem(code: &str) -> Problem {
        Problem {
            code: code.parse().unwrap(),
            title: format!("{code} title"),
            fix: "do the fix".into(),
            since: t0(),
        }
    }

    pub async fn apps_and_app_problems(db: Arc<Db>) {
        let s = db.open().await;
        let mut app = App {
            provider: pid(),
            id: AppId::parse("main").unwrap(),
            client_id: "client-1".into(),
            client_secret: Secret::new("client-secret-1"),
            redirect_uri: "https://tw.example/callback/snapchat".into(),
            developer_token: None,
            user_agent: None,
            refresh_token_ends_after: None,
            identity: None,
            environment: tokenwarden_core::connection::Environment::Production,
            region: None,
            created_at: t0(),
            updated_at: t0(),
        };
        s.put_app(&app).await.unwrap();
        let mut second = app.clone();
        second.id = AppId::parse("second").unwrap();
        // A region is stored and read back (migration 0009).
        second.region = Some("eu".into());
        s.put_app(&second).await.unwrap();
        assert_eq!(
            s.get_app(&second.provider, &second.id)
                .await
                .unwrap()
                .and_then(|a| a.region),
            Some("eu".to_string())
        );
        // A refresh-token end is stored, to the second (migration 0013).
        let mut testing = app.clone();
        testing.id = AppId::parse("testing").unwrap();
        testing.refresh_token_ends_after = Some(std::time::Duration::from_secs(7 * 86_400));
        s.put_app(&testing).await.unwrap();
        assert_eq!(
            s.get_app(&testing.provider, &testing.id)
                .await
                .unwrap()
                .and_then(|a| a.refresh_token_ends_after),
            Some(std::time::Duration::from_secs(7 * 86_400))
        );
        s.delete_app(&testing.provider, &testing.id).await.unwrap();
        // An identity is stored, changed and removed again (migration 0015).
        let mut google = app.clone();
        google.id = AppId::parse("google").unwrap();
        google.identity = Some("google".into());
        s.put_app(&google).await.unwrap();
        assert_eq!(
            s.get_app(&google.provider, &google.id)
                .await
                .unwrap()
                .as_ref(),
            Some(&google)
        );
        google.identity = None;
        s.put_app(&google).await.unwrap();
        assert_eq!(
            s.get_app(&google.provider, &google.id)
                .await
                .unwrap()
                .and_then(|a| a.identity),
            None
        );
        s.delete_app(&google.provider, &google.id).await.unwrap();
        // A User-Agent is stored, changed and removed again (migration 0011).
        let mut third = app.clone();
        third.id = AppId::parse("third").unwrap();
        third.user_agent = Some("web:com.example.ads:v1.0 (by /u/someone)".into());
        s.put_app(&third).await.unwrap();
        assert_eq!(
            s.get_app(&third.provider, &third.id)
                .await
                .unwrap()
                .as_ref(),
            Some(&third)
        );
        third.user_agent = None;
        s.put_app(&third).await.unwrap();
        assert_eq!(
            s.get_app(&third.provider, &third.id)
                .await
                .unwrap()
                .and_then(|a| a.user_agent),
            None
        );
        s.delete_app(&third.provider, &third.id).await.unwrap();
        assert_eq!(
            s.get_app(&app.provider, &app.id).await.unwrap().as_ref(),
            Some(&app)
        );
        app.client_secret = Secret::new("rotated-client-secret");
        app.updated_at = t0() + TimeDelta::seconds(5);
        s.put_app(&app).await.unwrap();
        assert_eq!(
            s.get_app(&app.provider, &app.id).await.unwrap(),
            Some(app.clone())
        );
        // A developer token is kept (sealed like the secret), changed and removed again.
        app.developer_token = Some(Secret::new("dev-token-1"));
        s.put_app(&app).await.unwrap();
        assert_eq!(
            s.get_app(&app.provider, &app.id).await.unwrap(),
            Some(app.clone())
        );
        app.developer_token = Some(Secret::new("dev-token-2"));
        s.put_app(&app).await.unwrap();
        let got = s.get_app(&app.provider, &app.id).await.unwrap().unwrap();
        assert_eq!(
            got.developer_token.as_ref().map(|t| t.expose().to_string()),
            Some("dev-token-2".to_string())
        );
        app.developer_token = None;
        s.put_app(&app).await.unwrap();
        assert_eq!(
            s.get_app(&app.provider, &app.id).await.unwrap(),
            Some(app.clone())
        );
        assert_eq!(s.list_apps(Some(&pid())).await.unwrap().len(), 2);
        assert_eq!(
            s.list_apps(Some(&ProviderId::parse("threads").unwrap()))
                .await
                .unwrap()
                .len(),
            0
        );
        assert!(s.delete_app(&pid(), &second.id).await.unwrap());
        assert!(!s.delete_app(&pid(), &second.id).await.unwrap());
        assert_eq!(s.list_apps(None).await.unwrap(), vec![app.clone()]);

        s.raise_app_problem(&pid(), &app.id, &problem("app_refused"))
            .await
            .unwrap();
        s.raise_app_problem(&pid(), &app.id, &problem("app_refused"))
            .await
            .unwrap();
        assert_eq!(
            s.app_problems(&pid(), &app.id).await.unwrap(),
            vec![problem("app_refused")]
        );
        assert!(
            s.clear_app_problem(&pid(), &app.id, "app_refused")
                .await
                .unwrap()
        );
        assert!(s.app_problems(&pid(), &app.id).await.unwrap().is_empty());
    }

    pub async fn connections_crud_and_schedule(db: Arc<Db>) {
        let s = db.open().await;
        let mut c = connection("c1");
        s.put_connection(&c).await.unwrap();
        let mut regional = connection("c2");
        regional.region = Some("fe".into());
        s.put_connection(&regional).await.unwrap();
        assert_eq!(s.get_connection(&c.id).await.unwrap(), Some(c.clone()));
        assert_eq!(
            s.get_connection(&regional.id).await.unwrap(),
            Some(regional.clone()),
            "the region is stored (migration 0009)"
        );
        assert_eq!(s.get_connection(&cid("nope")).await.unwrap(), None);
        let later = t0() + TimeDelta::minutes(3);
        s.set_state(
            &c.id,
            ConnectionState::ReauthRequired,
            &[problem("revoked")],
            later,
        )
        .await
        .unwrap();
        c.state = ConnectionState::ReauthRequired;
        c.problems = vec![problem("revoked")];
        c.updated_at = later;
        assert_eq!(s.get_connection(&c.id).await.unwrap(), Some(c.clone()));
        assert!(matches!(
            s.set_state(&cid("nope"), ConnectionState::Active, &[], later)
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            s.list_connections()
                .await
                .unwrap()
                .iter()
                .map(|c| c.id.as_str().to_string())
                .collect::<Vec<_>>(),
            ["c1", "c2"]
        );

        assert_eq!(s.next_refresh_deadline().await.unwrap(), None);
        s.set_next_refresh(&c.id, Some(t0() + TimeDelta::minutes(50)))
            .await
            .unwrap();
        s.set_next_refresh(&cid("c2"), Some(t0() + TimeDelta::minutes(10)))
            .await
            .unwrap();
        assert_eq!(
            s.next_refresh_deadline().await.unwrap(),
            Some(t0() + TimeDelta::minutes(10))
        );
        s.set_next_probe(&c.id, Some(t0())).await.unwrap();
        s.set_next_probe(&cid("c2"), Some(t0() + TimeDelta::hours(1)))
            .await
            .unwrap();
        assert_eq!(
            s.due_probes(t0() + TimeDelta::minutes(1), 10)
                .await
                .unwrap(),
            vec![c.id.clone()]
        );
        assert!(s.set_next_probe(&cid("nope"), None).await.is_err());

        s.put_initial_tokens(&c.id, &tokens("at", None))
            .await
            .unwrap();
        assert!(s.delete_connection(&c.id).await.unwrap());
        assert_eq!(
            s.get_tokens(&c.id).await.unwrap(),
            None,
            "tokens go with the connection"
        );
        assert!(!s.delete_connection(&c.id).await.unwrap());
    }

    pub async fn token_sets_version_and_replace(db: Arc<Db>) {
        let s = db.open().await;
        s.put_connection(&connection("c1")).await.unwrap();
        let c = cid("c1");
        assert_eq!(s.get_tokens(&c).await.unwrap(), None);
        let mut set = tokens("access-1", Some("refresh-1"));
        set.refresh_expires_at = Some(t0() + TimeDelta::days(30));
        let st = s.put_initial_tokens(&c, &set).await.unwrap();
        assert_eq!(st.version, 1);
        assert_eq!(
            s.token_expiries().await.unwrap(),
            [(c.clone(), set.expires_at)]
        );
        assert_eq!(
            s.get_tokens(&c).await.unwrap(),
            Some(StoredTokens {
                set: set.clone(),
                version: 1
            })
        );
        let mut second = tokens("access-2", None);
        second.token_type = None;
        second.expires_at = None;
        let st = s.put_initial_tokens(&c, &second).await.unwrap();
        assert_eq!(st.version, 2);
        assert_eq!(s.token_expiries().await.unwrap(), [(c.clone(), None)]);
        assert_eq!(
            s.get_tokens(&c).await.unwrap(),
            Some(StoredTokens {
                set: second,
                version: 2
            })
        );
        assert!(matches!(
            s.put_initial_tokens(&cid("ghost"), &set).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            s.acquire_refresh_lease(&cid("ghost"), "w", Duration::from_secs(5))
                .await,
            Err(StoreError::NotFound(_))
        ));
    }

    pub async fn lease_under_contention_one_winner(db: Arc<Db>) {
        let stores = [db.open().await, db.open().await, db.open().await];
        let c = seeded(&*stores[0], "hot").await;
        let before = stores[0].get_tokens(&c).await.unwrap().unwrap();
        let tasks = 24;
        // Three phases: everyone tries at once; then the winner commits; then everyone reads.
        let barrier = Arc::new(tokio::sync::Barrier::new(tasks));
        let attempted = Arc::new(tokio::sync::Barrier::new(tasks));
        let committed = Arc::new(tokio::sync::Barrier::new(tasks));
        let mut handles = Vec::new();
        for i in 0..tasks {
            let s = stores[i % stores.len()].clone();
            let (b, tried, done, c) = (
                barrier.clone(),
                attempted.clone(),
                committed.clone(),
                c.clone(),
            );
            handles.push(tokio::spawn(async move {
                b.wait().await;
                let lease = s
                    .acquire_refresh_lease(&c, &format!("worker-{i}"), Duration::from_secs(60))
                    .await
                    .unwrap();
                tried.wait().await;
                let won = if let Some(lease) = &lease {
                    let new = tokens(&format!("winner-{i}"), Some(&format!("winner-rt-{i}")));
                    s.commit_refresh(lease, &new, None).await.unwrap();
                    true
                } else {
                    false
                };
                done.wait().await;
                (won, i, s.get_tokens(&c).await.unwrap().unwrap())
            }));
        }
        let mut winners = Vec::new();
        let mut seen = Vec::new();
        for h in handles {
            let (won, i, st) = h.await.unwrap();
            if won {
                winners.push(i);
            }
            seen.push(st);
        }
        assert_eq!(
            winners.len(),
            1,
            "exactly one task may take the lease, got {winners:?}"
        );
        let w = winners[0];
        for st in seen {
            assert_eq!(st.version, before.version + 1);
            assert_eq!(st.set.access_token.expose(), format!("winner-{w}"));
            assert_eq!(
                st.set.refresh_token.unwrap().expose(),
                format!("winner-rt-{w}")
            );
        }
        // The lease is free again after the commit.
        assert!(
            stores[1]
                .acquire_refresh_lease(&c, "next", Duration::from_secs(5))
                .await
                .unwrap()
                .is_some()
        );
    }

    /// The engine's protocol on top of the lease: each caller saw version `v0` fail; whoever gets a
    /// lease at a later version releases it and uses the stored token. No barrier between acquire
    /// and commit here, so late acquirers really happen.
    pub async fn burst_of_stale_callers_refreshes_once(db: Arc<Db>) {
        let stores = [db.open().await, db.open().await];
        let c = seeded(&*stores[0], "burst").await;
        let v0 = stores[0].get_tokens(&c).await.unwrap().unwrap().version;
        let refreshes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut hs = Vec::new();
        for i in 0..16 {
            let (s, c, refreshes) = (stores[i % 2].clone(), c.clone(), refreshes.clone());
            hs.push(tokio::spawn(async move {
                loop {
                    let owner = format!("caller-{i}");
                    match s
                        .acquire_refresh_lease(&c, &owner, Duration::from_secs(30))
                        .await
                        .unwrap()
                    {
                        Some(lease) if lease.version == v0 => {
                            refreshes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            return s
                                .commit_refresh(&lease, &tokens("fresh", Some("fresh-rt")), None)
                                .await
                                .unwrap();
                        }
                        Some(lease) => {
                            s.release_lease(&lease).await.unwrap();
                            return s.get_tokens(&c).await.unwrap().unwrap();
                        }
                        // Someone is refreshing: wait for their commit, then re-check.
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            }));
        }
        for h in hs {
            let st = h.await.unwrap();
            assert_eq!(
                (st.version, st.set.access_token.expose()),
                (v0 + 1, "fresh")
            );
        }
        assert_eq!(refreshes.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// Issue 14: a holder marks its refresh sent before spending a rotating refresh token; whoever
    /// takes the lapsed lease sees that mark (who, when) until the commit or a recorded refusal
    /// settles the version. A holder that gives its lease back clears only its own mark.
    pub async fn a_sent_refresh_is_seen_by_the_next_holder_until_settled(db: Arc<Db>) {
        let s = db.open().await;
        let c = seeded(&*s, "c1").await;
        let short = Duration::from_millis(1000);
        let a = s
            .acquire_refresh_lease(&c, "A", short)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.unresolved, None);
        assert!(a.taken_at <= a.until);
        assert!(s.mark_refresh_sent(&a).await.unwrap());
        // A stops (paused or killed) holding its answer; its lease lapses on the database clock.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // Not A's any more: A may not mark again.
        let b = s
            .acquire_refresh_lease(&c, "B", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        let sent = b.unresolved.clone().expect("B sees A's unsettled refresh");
        assert_eq!(sent.by, "A");
        assert!(sent.at <= b.taken_at, "{sent:?} {b:?}");
        assert!(!s.mark_refresh_sent(&a).await.unwrap());
        // B waits for A rather than spending the token: giving the lease back keeps A's mark.
        s.release_lease(&b).await.unwrap();
        let b2 = s
            .acquire_refresh_lease(&c, "B", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b2.unresolved.as_ref().map(|u| u.by.as_str()), Some("A"));
        s.release_lease(&b2).await.unwrap();
        // A wakes and stores its answer: settled.
        s.commit_refresh(&a, &tokens("from-A", Some("rt-A")), None)
            .await
            .unwrap();
        let next = s
            .acquire_refresh_lease(&c, "B", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next.unresolved, None);
        assert_eq!(next.version, 2);
        // A mark of one's own is cleared when one gives the lease back (the outcome is known)…
        assert!(s.mark_refresh_sent(&next).await.unwrap());
        s.release_lease(&next).await.unwrap();
        let again = s
            .acquire_refresh_lease(&c, "C", short)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.unresolved, None);
        // …and by a recorded refusal of that version.
        assert!(s.mark_refresh_sent(&again).await.unwrap());
        assert!(
            s.record_refresh_failure(
                &again,
                ConnectionState::ReauthRequired,
                &[],
                None,
                Utc::now()
            )
            .await
            .unwrap()
        );
        let last = s
            .acquire_refresh_lease(&c, "D", short)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(last.unresolved, None);
    }

    pub async fn lease_expiry_and_fencing(db: Arc<Db>) {
        let s = db.open().await;
        let c = seeded(&*s, "c1").await;
        // Leases are timed on the database's clock (hardening rule 15), which a test cannot fake,
        // so expiry is awaited for real; the TTL is long enough that a busy machine does not let
        // A's lease lapse before B's first attempt.
        let short = Duration::from_millis(1000);

        // A holds; B is refused until A's lease lapses on the database clock, then takes over.
        let a = s
            .acquire_refresh_lease(&c, "A", short)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.version, 1);
        assert!(
            s.acquire_refresh_lease(&c, "B", short)
                .await
                .unwrap()
                .is_none()
        );
        // Re-entrant for the same owner (a lease claimed by the scheduler becomes a Lease).
        assert_eq!(
            s.acquire_refresh_lease(&c, "A", short)
                .await
                .unwrap()
                .unwrap()
                .version,
            1
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let b = s
            .acquire_refresh_lease(&c, "B", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        // A's lease expired and was taken over, but nobody stored a newer token: A's answer is
        // the platform's newest (with rotation it is the only one) and is stored; B, whose call
        // could only be refused or answer a token of its own, is fenced by the version.
        let st = s
            .commit_refresh(&a, &tokens("late-from-A", Some("rt-A")), None)
            .await
            .unwrap();
        assert_eq!(st.version, 2);
        let e = s
            .commit_refresh(&b, &tokens("from-B", Some("rt-B")), None)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Fenced { .. }), "{e}");
        assert_eq!(
            s.get_tokens(&c)
                .await
                .unwrap()
                .unwrap()
                .set
                .access_token
                .expose(),
            "late-from-A"
        );
        // A second commit on the same lease is fenced by the version.
        assert!(matches!(
            s.commit_refresh(&a, &tokens("again", None), None).await,
            Err(StoreError::Fenced { .. })
        ));

        // A re-authorization in between (version moves) fences the holder too.
        let h = s
            .acquire_refresh_lease(&c, "H", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        s.put_initial_tokens(&c, &tokens("reauthorized", Some("rt-new")))
            .await
            .unwrap();
        assert!(matches!(
            s.commit_refresh(&h, &tokens("late", None), None).await,
            Err(StoreError::Fenced { .. })
        ));
        assert_eq!(
            s.get_tokens(&c)
                .await
                .unwrap()
                .unwrap()
                .set
                .access_token
                .expose(),
            "reauthorized"
        );

        // Expired but not taken over: the holder's commit still lands (the platform already rotated
        // the refresh token; losing its answer would break the grant, hardening rule 4).
        let l = s
            .acquire_refresh_lease(&c, "L", Duration::from_millis(100))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            s.commit_refresh(&l, &tokens("late-but-sole", None), None)
                .await
                .is_ok()
        );

        // Release keeps the tokens and frees the lease.
        let r = s
            .acquire_refresh_lease(&c, "R", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        s.release_lease(&r).await.unwrap();
        let after = s.get_tokens(&c).await.unwrap().unwrap();
        assert_eq!(after.set.access_token.expose(), "late-but-sole");
        assert_eq!(after.version, r.version);
        assert!(
            s.acquire_refresh_lease(&c, "S", Duration::from_secs(30))
                .await
                .unwrap()
                .is_some()
        );
    }

    pub async fn claim_due_refreshes_is_disjoint(db: Arc<Db>) {
        let s1 = db.open().await;
        let s2 = db.open().await;
        for i in 0..12 {
            let c = seeded(&*s1, &format!("c{i:02}")).await;
            let at = if i < 10 {
                t0() - TimeDelta::minutes(i)
            } else {
                t0() + TimeDelta::hours(1)
            };
            s1.set_next_refresh(&c, Some(at)).await.unwrap();
        }
        s1.set_state(&cid("c00"), ConnectionState::ReauthRequired, &[], t0())
            .await
            .unwrap();
        let held = s1
            .acquire_refresh_lease(&cid("c01"), "someone", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        let ttl = Duration::from_secs(60);
        let (a, b) = tokio::join!(
            s1.claim_due_refreshes(t0(), 4, "r1", ttl),
            s2.claim_due_refreshes(t0(), 4, "r2", ttl)
        );
        let (a, b) = (ids(a.unwrap()), ids(b.unwrap()));
        assert_eq!(a.len() + b.len(), 8, "{a:?} {b:?}");
        let mut all: HashSet<_> = a.iter().cloned().collect();
        assert!(
            b.iter().all(|c| all.insert(c.clone())),
            "replicas claimed the same row: {a:?} {b:?}"
        );
        let rest = ids(s2.claim_due_refreshes(t0(), 10, "r3", ttl).await.unwrap());
        all.extend(rest);
        let expected: HashSet<_> = (2..10).map(|i| cid(&format!("c{i:02}"))).collect();
        assert_eq!(all, expected, "due, active, unleased connections only");
        // The claim is a lease: its owner can turn it into a Lease; others cannot.
        let mine = a[0].clone();
        assert!(
            s1.acquire_refresh_lease(&mine, "r1", ttl)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            s1.acquire_refresh_lease(&mine, "r2", ttl)
                .await
                .unwrap()
                .is_none()
        );
        s1.release_lease(&held).await.unwrap();
    }

    /// The scheduler asks the database for the crowd plan (no row per connection read); it must
    /// be `policy::crowd_plan` over the same deadlines, for crowds that start early, late, with
    /// ties, and for nothing scheduled.
    pub async fn the_crowd_plan_in_the_database_is_the_pure_one(db: Arc<Db>) {
        use tokenwarden_core::policy::crowd_plan;
        let s = db.open().await;
        let every = Duration::from_millis(100);
        assert_eq!(s.crowd_plan(&pid(), every, 1000).await.unwrap(), None);
        // 60 deadlines: a tight crowd (40 within 2 s, some equal), then 20 spread out.
        let mut at = Vec::new();
        for i in 0..40i64 {
            at.push(t0() + TimeDelta::milliseconds(50 * (i / 2)));
        }
        for i in 0..20i64 {
            at.push(t0() + TimeDelta::minutes(10 + 7 * i));
        }
        for (i, d) in at.iter().enumerate() {
            let c = seeded(&*s, &format!("p{i:03}")).await;
            s.set_next_refresh(&c, Some(*d)).await.unwrap();
        }
        for (step, limit) in [
            (every, 1000),
            (every, 10),
            (Duration::from_secs(90), 1000),
            (Duration::from_micros(1), 1000),
        ] {
            let deadlines = s.refresh_deadlines(&pid(), limit).await.unwrap();
            assert_eq!(deadlines.len(), (limit as usize).min(60));
            assert_eq!(
                s.crowd_plan(&pid(), step, limit).await.unwrap(),
                crowd_plan(&deadlines, step),
                "step {step:?}, limit {limit}"
            );
        }
        // Another provider's plan is its own.
        let other = ProviderId::parse("tiktok").unwrap();
        assert_eq!(s.crowd_plan(&other, every, 1000).await.unwrap(), None);
    }

    pub async fn a_crowd_is_seen_and_claimed_early_per_provider(db: Arc<Db>) {
        let s1 = db.open().await;
        let s2 = db.open().await;
        let tiktok = ProviderId::parse("tiktok").unwrap();
        // Ten Snapchat connections due hours from now (c09 first), two TikTok ones due sooner.
        for i in 0..10 {
            let c = seeded(&*s1, &format!("c{i:02}")).await;
            let at = t0() + TimeDelta::hours(2) - TimeDelta::minutes(i);
            s1.set_next_refresh(&c, Some(at)).await.unwrap();
        }
        for i in 0..2 {
            let mut other = connection(&format!("t{i}"));
            other.provider = tiktok.clone();
            s1.put_connection(&other).await.unwrap();
            s1.put_initial_tokens(&other.id, &tokens(&format!("at-t{i}"), Some("rt")))
                .await
                .unwrap();
            s1.set_next_refresh(&other.id, Some(t0())).await.unwrap();
        }
        // c09 degraded (it waits for its backoff), c08 gone for reauthorization, c07 unscheduled.
        s1.set_state(&cid("c09"), ConnectionState::Degraded, &[], t0())
            .await
            .unwrap();
        s1.set_state(&cid("c08"), ConnectionState::ReauthRequired, &[], t0())
            .await
            .unwrap();
        s1.set_next_refresh(&cid("c07"), None).await.unwrap();

        let seen = s1.refresh_deadlines(&pid(), 100).await.unwrap();
        let want: Vec<_> = [6, 5, 4, 3, 2, 1, 0]
            .iter()
            .map(|i| t0() + TimeDelta::hours(2) - TimeDelta::minutes(*i))
            .collect();
        assert_eq!(
            seen, want,
            "active, scheduled, this provider's, earliest first"
        );
        assert_eq!(s1.refresh_deadlines(&pid(), 3).await.unwrap(), want[..3]);

        // Nothing is due, but the crowd can be claimed early: active ones only, this provider's
        // only, earliest first, and two replicas never take the same one.
        assert!(
            s1.claim_due_refreshes(
                t0() - TimeDelta::hours(1),
                10,
                "r1",
                Duration::from_secs(60)
            )
            .await
            .unwrap()
            .is_empty()
        );
        let ttl = Duration::from_secs(60);
        let until = t0() + TimeDelta::hours(3);
        // The tokens were issued at t0 and live an hour: young ones (a sixth of their life) are
        // never renewed early, however far the crowd reaches.
        assert!(
            s1.claim_earliest_refreshes(
                &pid(),
                until,
                t0() + TimeDelta::minutes(10),
                10,
                "r0",
                ttl
            )
            .await
            .unwrap()
            .is_empty(),
            "a token that has lived less than a quarter of its life is not taken early"
        );
        let old_enough = t0() + TimeDelta::minutes(20);
        // Only deadlines up to `until` belong to the crowd: none of these.
        assert!(
            s1.claim_earliest_refreshes(
                &pid(),
                t0() + TimeDelta::hours(1),
                old_enough,
                2,
                "r0",
                ttl
            )
            .await
            .unwrap()
            .is_empty()
        );
        let first = ids(s1
            .claim_earliest_refreshes(&pid(), until, old_enough, 2, "r0", ttl)
            .await
            .unwrap());
        // (RETURNING gives no order; which rows were taken is what counts.)
        assert_eq!(
            first.iter().cloned().collect::<HashSet<_>>(),
            HashSet::from([cid("c06"), cid("c05")]),
            "earliest first"
        );
        let snap = pid();
        let (a, b) = tokio::join!(
            s1.claim_earliest_refreshes(&snap, until, old_enough, 2, "r1", ttl),
            s2.claim_earliest_refreshes(&snap, until, old_enough, 2, "r2", ttl)
        );
        let (a, b) = (ids(a.unwrap()), ids(b.unwrap()));
        let mut all: HashSet<_> = first.iter().chain(&a).cloned().collect();
        assert!(
            b.iter().all(|c| all.insert(c.clone())),
            "replicas claimed the same row: {a:?} {b:?}"
        );
        let rest = ids(s1
            .claim_earliest_refreshes(&pid(), until, old_enough, 10, "r3", ttl)
            .await
            .unwrap());
        assert_eq!(first.len() + a.len() + b.len() + rest.len(), 7);
        all.extend(rest);
        let expected: HashSet<_> = (0..7).map(|i| cid(&format!("c{i:02}"))).collect();
        assert_eq!(
            all, expected,
            "active, scheduled, unleased, this provider's"
        );
        // A claim is a lease, as with due claims.
        assert!(
            s1.acquire_refresh_lease(&first[0], "r2", ttl)
                .await
                .unwrap()
                .is_none()
        );
    }

    pub async fn connect_sessions_are_single_use_under_race_and_say_why_not(db: Arc<Db>) {
        let stores = [db.open().await, db.open().await];
        let session = |id: &str, token: &str, expires_at: DateTime<Utc>| ConnectSession {
            id: id.into(),
            token_hash: Sha256Hex::of(token),
            provider: pid(),
            connection: cid("c1"),
            app: Some(AppId::parse("main").unwrap()),
            end_user: Some("Acme GmbH".into()),
            return_to: Some("https://app.example/done".into()),
            scopes: vec!["a".into(), "b".into()],
            allow_account_change: true,
            created_by: "key:abc".into(),
            created_at: t0(),
            expires_at,
            used_at: None,
            region: None,
        };
        // A region chosen for the flow is kept (migration 0014).
        let live = ConnectSession {
            region: Some("eu".into()),
            ..session("cs_live", "token-live", t0() + TimeDelta::minutes(30))
        };
        let old = session("cs_old", "token-old", t0() - TimeDelta::seconds(1));
        stores[0].put_connect_session(&live).await.unwrap();
        stores[0].put_connect_session(&old).await.unwrap();
        assert_eq!(
            stores[1].get_connect_session("cs_live").await.unwrap(),
            Some(live.clone())
        );
        // Only the hash is stored.
        let raw: Vec<String> = sqlx::query("SELECT token_hash FROM connect_sessions")
            .fetch_all(&db.raw().await)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        assert_eq!(raw.len(), 2);
        assert!(raw.iter().all(|h| !h.contains("token-")));
        // Looking does not spend it.
        for _ in 0..2 {
            assert_eq!(
                stores[1]
                    .find_connect_session(&Sha256Hex::of("token-live"), t0())
                    .await
                    .unwrap(),
                SessionUse::Fresh(live.clone())
            );
        }
        assert!(matches!(
            stores[1]
                .find_connect_session(&Sha256Hex::of("token-old"), t0())
                .await
                .unwrap(),
            SessionUse::Expired(_)
        ));
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let mut hs = Vec::new();
        for i in 0..16 {
            let (s, b) = (stores[i % 2].clone(), barrier.clone());
            hs.push(tokio::spawn(async move {
                b.wait().await;
                s.use_connect_session(&Sha256Hex::of("token-live"), t0())
                    .await
                    .unwrap()
            }));
        }
        let (mut fresh, mut used) = (0, 0);
        for h in hs {
            match h.await.unwrap() {
                SessionUse::Fresh(s) => {
                    assert_eq!(
                        SessionUse::Fresh(ConnectSession {
                            used_at: None,
                            ..s.clone()
                        }),
                        SessionUse::Fresh(live.clone())
                    );
                    fresh += 1
                }
                SessionUse::Used(s) => {
                    assert_eq!(s.used_at, Some(t0()));
                    used += 1
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((fresh, used), (1, 15), "exactly one visit gets the session");
        assert!(matches!(
            stores[0]
                .find_connect_session(&Sha256Hex::of("token-live"), t0())
                .await
                .unwrap(),
            SessionUse::Used(_)
        ));
        assert!(matches!(
            stores[0]
                .use_connect_session(&Sha256Hex::of("token-old"), t0())
                .await
                .unwrap(),
            SessionUse::Expired(s) if s.id == "cs_old"
        ));
        assert_eq!(
            stores[0]
                .use_connect_session(&Sha256Hex::of("no-such-token"), t0())
                .await
                .unwrap(),
            SessionUse::Unknown
        );
        // Kept a day past expiry (a late visit still hears why), then purged.
        stores[0]
            .purge_expired_pending(t0() + TimeDelta::hours(2))
            .await
            .unwrap();
        assert!(
            stores[0]
                .get_connect_session("cs_old")
                .await
                .unwrap()
                .is_some()
        );
        stores[0]
            .purge_expired_pending(t0() + TimeDelta::days(2))
            .await
            .unwrap();
        assert!(
            stores[0]
                .get_connect_session("cs_old")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            stores[0]
                .get_connect_session("cs_live")
                .await
                .unwrap()
                .is_none()
        );
    }

    pub async fn a_connection_keeps_its_account_and_end_user(db: Arc<Db>) {
        let s = db.open().await;
        let mut c = connection("acc-1");
        c.end_user = Some("Team Blue".into());
        s.put_connection(&c).await.unwrap();
        let got = s.get_connection(&c.id).await.unwrap().unwrap();
        assert_eq!(got.account, None);
        assert_eq!(got.end_user.as_deref(), Some("Team Blue"));
        let account = tokenwarden_core::connection::Account {
            id: "u-42".into(),
            name: Some("Ads Person".into()),
        };
        s.set_account(&c.id, &account).await.unwrap();
        let got = s.get_connection(&c.id).await.unwrap().unwrap();
        assert_eq!(got.account, Some(account.clone()));
        assert_eq!(
            s.list_connections().await.unwrap()[0].account,
            Some(account)
        );
    }

    pub async fn pending_is_single_use_under_race(db: Arc<Db>) {
        let stores = [db.open().await, db.open().await];
        let p = PendingAuthorization {
            state_hash: Sha256Hex::of("state-value-xyz"),
            provider: pid(),
            app: AppId::parse("main").unwrap(),
            connection: cid("c1"),
            redirect_uri: "https://tw.example/callback/snapchat".into(),
            pkce_verifier: Some(Secret::new(
                "pkce-verifier-abcdefghijklmnopqrstuvwxyz0123456789",
            )),
            scopes: vec!["x".into()],
            browser_hash: Sha256Hex::of("cookie"),
            created_at: t0(),
            expires_at: t0() + TimeDelta::minutes(10),
            session: None,
            // The flow's region comes back with it (migration 0014).
            region: Some("eu".into()),
        };
        stores[0].put_pending(&p).await.unwrap();
        assert!(matches!(
            stores[0].put_pending(&p).await,
            Err(StoreError::Conflict(_))
        ));
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let mut hs = Vec::new();
        for i in 0..16 {
            let (s, b, h) = (stores[i % 2].clone(), barrier.clone(), p.state_hash.clone());
            hs.push(tokio::spawn(async move {
                b.wait().await;
                s.consume_pending(&h, t0()).await.unwrap()
            }));
        }
        let mut got = Vec::new();
        for h in hs {
            if let Some(x) = h.await.unwrap() {
                got.push(x);
            }
        }
        assert_eq!(
            got,
            vec![p.clone()],
            "exactly one callback gets the pending authorization"
        );

        let mut expired = p.clone();
        expired.state_hash = Sha256Hex::of("other-state");
        expired.pkce_verifier = None;
        stores[0].put_pending(&expired).await.unwrap();
        assert_eq!(
            stores[0]
                .consume_pending(&expired.state_hash, expired.expires_at)
                .await
                .unwrap(),
            None
        );
        // An expired one is consumed all the same: it cannot be retried later.
        assert_eq!(
            stores[0]
                .consume_pending(&expired.state_hash, t0())
                .await
                .unwrap(),
            None
        );
        let mut old = p.clone();
        old.state_hash = Sha256Hex::of("third");
        stores[0].put_pending(&old).await.unwrap();
        assert_eq!(
            stores[0]
                .purge_expired_pending(t0() + TimeDelta::hours(1))
                .await
                .unwrap(),
            1
        );
    }

    pub async fn events_append_and_refuse_secret_keys(db: Arc<Db>) {
        let s = db.open().await;
        let c = cid("c1");
        let e1 = NewEvent::new(Some(c.clone()), t0(), "refreshed", "token refreshed")
            .with("version", 2)
            .with("proactive", true);
        let id1 = s.append_event(&e1).await.unwrap();
        let id2 = s
            .append_event(
                &NewEvent::new(None, t0(), "app_problem", "invalid client")
                    .with("provider", "snapchat"),
            )
            .await
            .unwrap();
        assert!(id2 > id1);
        let all = s.list_events(None, 0, 10).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].kind, "refreshed");
        assert_eq!(all[0].details.get("version"), Some(&EventValue::Int(2)));
        assert_eq!(
            all[0].details.get("proactive"),
            Some(&EventValue::Bool(true))
        );
        assert_eq!(all[0].at, t0());
        assert_eq!(s.list_events(Some(&c), 0, 10).await.unwrap().len(), 1);
        // The newest of a connection's events, oldest first.
        let mut ids = vec![];
        for i in 0..5 {
            ids.push(
                s.append_event(&NewEvent::new(
                    Some(c.clone()),
                    t0(),
                    "probe",
                    format!("n{i}"),
                ))
                .await
                .unwrap(),
            );
        }
        let latest = s.latest_events(&c, 3).await.unwrap();
        assert_eq!(
            latest.iter().map(|e| e.id).collect::<Vec<_>>(),
            ids[2..].to_vec()
        );
        assert_eq!(s.latest_events(&c, 100).await.unwrap().len(), 6);
        assert_eq!(s.list_events(None, id1, 10).await.unwrap()[0].id, id2);
        let bad =
            NewEvent::new(Some(c.clone()), t0(), "oops", "x").with("refresh_token", "rt-value");
        assert!(matches!(
            s.append_event(&bad).await,
            Err(StoreError::Config(_))
        ));
        assert_eq!(s.list_events(None, 0, 10).await.unwrap().len(), 7);
    }

    pub async fn api_keys_hashed_with_roles(db: Arc<Db>) {
        let s = db.open().await;
        let (admin, admin_key) = s
            .create_api_key(ApiKeyRole::Admin, "ops", t0())
            .await
            .unwrap();
        let (reader, reader_key) = s
            .create_api_key(ApiKeyRole::TokenReader, "etl", t0())
            .await
            .unwrap();
        assert!(admin_key.expose().starts_with(&format!("tw_{}_", admin.id)));
        assert_eq!(
            s.verify_api_key(admin_key.expose()).await.unwrap(),
            Some(admin.clone())
        );
        assert_eq!(
            s.verify_api_key(reader_key.expose())
                .await
                .unwrap()
                .unwrap()
                .role,
            ApiKeyRole::TokenReader
        );
        // Right prefix, wrong rest; garbage; someone else's prefix.
        let mut forged = admin_key.expose().to_string();
        forged.pop();
        forged.push('x');
        for bad in [
            forged.as_str(),
            "",
            "tw_",
            "Bearer x",
            &format!("tw_{}_nope", reader.id),
        ] {
            assert_eq!(s.verify_api_key(bad).await.unwrap(), None, "{bad}");
        }
        assert!(s.revoke_api_key(&admin.id, t0()).await.unwrap());
        assert_eq!(s.verify_api_key(admin_key.expose()).await.unwrap(), None);
        assert_eq!(s.list_api_keys().await.unwrap().len(), 2);
        // Only the hash is stored.
        let raw = db.raw().await;
        let rows = sqlx::query("SELECT key_hash FROM api_keys")
            .fetch_all(&raw)
            .await
            .unwrap();
        for r in rows {
            let h: String = r.get("key_hash");
            assert_eq!(h.len(), 64);
            assert!(!h.contains(&admin_key.expose()[3..10]));
        }
    }

    pub async fn webhooks_and_outbox(db: Arc<Db>) {
        let s = db.open().await;
        let w = WebhookEndpoint {
            id: "hook1".into(),
            url: "https://hooks.example/tw".into(),
            signing_secret: Secret::new("whsec_signing_secret_value"),
            enabled: true,
            created_at: t0(),
        };
        s.put_webhook(&w).await.unwrap();
        s.put_webhook(&WebhookEndpoint {
            id: "off".into(),
            enabled: false,
            ..w.clone()
        })
        .await
        .unwrap();
        assert_eq!(s.get_webhook("hook1").await.unwrap(), Some(w.clone()));
        assert_eq!(s.list_webhooks().await.unwrap().len(), 2);
        let ids = s
            .enqueue_deliveries(r#"{"type":"connection.reauth_required"}"#, t0())
            .await
            .unwrap();
        assert_eq!(ids.len(), 1, "disabled endpoints get nothing");
        let ttl = Duration::from_secs(60);
        let (s2, now) = (db.open().await, t0());
        let (a, b) = tokio::join!(
            s.claim_due_deliveries(now, 10, ttl),
            s2.claim_due_deliveries(now, 10, ttl)
        );
        let claimed: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
        assert_eq!(claimed.len(), 1, "one claim per delivery");
        assert_eq!(claimed[0].id, ids[0]);
        assert_eq!(claimed[0].attempts, 1);
        assert!(
            s.claim_due_deliveries(now, 10, ttl)
                .await
                .unwrap()
                .is_empty(),
            "claimed ones are not due again"
        );
        s.mark_failed(&ids[0], "HTTP 503 from endpoint", Some(now))
            .await
            .unwrap();
        let again = s.claim_due_deliveries(now, 10, ttl).await.unwrap();
        assert_eq!(
            (again.len(), again[0].attempts, again[0].id.as_str()),
            (1, 2, ids[0].as_str()),
            "same webhook-id across retries"
        );
        assert_eq!(
            again[0].last_error.as_deref(),
            Some("HTTP 503 from endpoint")
        );
        s.mark_delivered(&ids[0]).await.unwrap();
        assert_eq!(
            s.get_delivery(&ids[0]).await.unwrap().unwrap().status,
            DeliveryStatus::Delivered
        );
        let ids2 = s.enqueue_deliveries("{}", now).await.unwrap();
        s.claim_due_deliveries(now, 10, ttl).await.unwrap();
        s.mark_failed(&ids2[0], "gave up", None).await.unwrap();
        assert_eq!(
            s.get_delivery(&ids2[0]).await.unwrap().unwrap().status,
            DeliveryStatus::Dead
        );
        assert!(
            s.claim_due_deliveries(now + TimeDelta::days(1), 10, ttl)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(s.delete_webhook("hook1").await.unwrap());
        assert_eq!(s.get_delivery(&ids[0]).await.unwrap(), None);
    }

    pub async fn state_changes_are_announced_once_with_the_change(db: Arc<Db>) {
        let s = db.open().await;
        s.put_webhook(&WebhookEndpoint {
            id: "hook1".into(),
            url: "https://hooks.example/tw".into(),
            signing_secret: Secret::new("whsec_signing_secret_value"),
            enabled: true,
            created_at: t0(),
        })
        .await
        .unwrap();
        let c = connection("c1");
        s.put_connection(&c).await.unwrap();
        let before = c.state;
        assert_ne!(before, ConnectionState::ReauthRequired);
        // Ten replicas see the same refusal at once: one change, one announcement.
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let s = db.open().await;
            let id = c.id.clone();
            tasks.push(tokio::spawn(async move {
                s.set_state(
                    &id,
                    ConnectionState::ReauthRequired,
                    &[problem("revoked")],
                    t0(),
                )
                .await
                .unwrap()
            }));
        }
        let mut changed = Vec::new();
        for t in tasks {
            changed.extend(t.await.unwrap());
        }
        assert_eq!(changed, [before], "exactly one caller saw the change");
        // The same state again is no change and no announcement.
        assert_eq!(
            s.set_state(&c.id, ConnectionState::ReauthRequired, &[], t0())
                .await
                .unwrap(),
            None
        );
        let log = s.list_deliveries("hook1", 10).await.unwrap();
        assert_eq!(log.len(), 1);
        assert!(
            s.token_expiries().await.unwrap().is_empty(),
            "no token set yet"
        );
        let body: serde_json::Value = serde_json::from_str(&log[0].payload).unwrap();
        assert_eq!(body["type"], "connection.state_changed");
        assert_eq!(body["data"]["connection_id"], "c1");
        assert_eq!(body["data"]["from"], before.as_str());
        assert_eq!(body["data"]["to"], "reauth_required");
        assert_eq!(body["data"]["problems"][0]["code"], "revoked");
        // Back to active: a second announcement, newest first in the log.
        assert_eq!(
            s.set_state(
                &c.id,
                ConnectionState::Active,
                &[],
                t0() + TimeDelta::minutes(1)
            )
            .await
            .unwrap(),
            Some(ConnectionState::ReauthRequired)
        );
        let log = s.list_deliveries("hook1", 10).await.unwrap();
        assert_eq!(log.len(), 2);
        assert!(log[0].payload.contains(r#""to":"active""#));
        assert!(s.list_deliveries("nope", 10).await.unwrap().is_empty());
    }

    pub async fn aad_binding_refuses_moved_ciphertexts(db: Arc<Db>) {
        let s = db.open().await;
        let a = seeded(&*s, "victim").await;
        let b = seeded(&*s, "attacker").await;
        let raw = db.raw().await;
        // Copy the victim's access token ciphertext into the attacker's row.
        sqlx::query("UPDATE token_sets SET access_token_ct = (SELECT access_token_ct FROM token_sets WHERE connection_id = $1) WHERE connection_id = $2")
            .bind(a.as_str())
            .bind(b.as_str())
            .execute(&raw)
            .await
            .unwrap();
        let e = s.get_tokens(&b).await.unwrap_err();
        assert!(matches!(e, StoreError::DecryptFailed { .. }), "{e}");
        assert!(!e.to_string().contains("at-victim"), "{e}");
        // Move the refresh token into the access column of the same row.
        sqlx::query(
            "UPDATE token_sets SET access_token_ct = refresh_token_ct WHERE connection_id = $1",
        )
        .bind(a.as_str())
        .execute(&raw)
        .await
        .unwrap();
        assert!(matches!(
            s.get_tokens(&a).await,
            Err(StoreError::DecryptFailed { .. })
        ));
        // Flip one byte of a ciphertext.
        let c = seeded(&*s, "tampered").await;
        let ct: Vec<u8> =
            sqlx::query("SELECT access_token_ct FROM token_sets WHERE connection_id = $1")
                .bind(c.as_str())
                .fetch_one(&raw)
                .await
                .unwrap()
                .get("access_token_ct");
        let mut bad = ct.clone();
        let n = bad.len() - 3;
        bad[n] ^= 0x40;
        sqlx::query("UPDATE token_sets SET access_token_ct = $1 WHERE connection_id = $2")
            .bind(bad)
            .bind(c.as_str())
            .execute(&raw)
            .await
            .unwrap();
        assert!(matches!(
            s.get_tokens(&c).await,
            Err(StoreError::DecryptFailed { .. })
        ));
    }

    /// One tampered row, and one under a key the keyring no longer holds: each read of them is a
    /// typed error naming the connection and the column (never the value), the other rows still
    /// read, the list still lists, and the broken rows can be deleted.
    pub async fn a_row_that_does_not_decrypt_fails_alone_and_can_be_deleted(db: Arc<Db>) {
        let s = db.open().await;
        let good = seeded(&*s, "good").await;
        let bad = seeded(&*s, "bad").await;
        let raw = db.raw().await;
        let ct: Vec<u8> =
            sqlx::query("SELECT access_token_ct FROM token_sets WHERE connection_id = $1")
                .bind(bad.as_str())
                .fetch_one(&raw)
                .await
                .unwrap()
                .get("access_token_ct");
        let mut altered = ct.clone();
        let n = altered.len() - 1;
        altered[n] ^= 0x01;
        sqlx::query("UPDATE token_sets SET access_token_ct = $1 WHERE connection_id = $2")
            .bind(altered.clone())
            .bind(bad.as_str())
            .execute(&raw)
            .await
            .unwrap();
        let e = s.get_tokens(&bad).await.unwrap_err();
        match &e {
            StoreError::DecryptFailed {
                table, column, row, ..
            } => assert_eq!(
                (table.as_str(), column.as_str(), row.as_str()),
                ("token_sets", "access_token_ct", "bad")
            ),
            other => panic!("want DecryptFailed, got {other:?}"),
        }
        assert_eq!(e.undecryptable_connection(), Some("bad"));
        assert!(!e.is_transient(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("connection bad") && text.contains("token_sets.access_token_ct"),
            "{text}"
        );
        assert!(
            !text.contains("at-bad") && !text.contains("rt-bad"),
            "{text}"
        );
        let hex: String = altered.iter().map(|b| format!("{b:02x}")).collect();
        for shown in [format!("{altered:?}"), hex] {
            assert!(!text.contains(&shown), "{text}");
        }

        // Under a key that is gone: written with a second key, which is then retired and left out
        // of the keyring the daemon runs with.
        let gone = db.keys.with_new_key("kgone").unwrap();
        let s2 = db.open_with(gone).await.unwrap();
        let orphan = seeded(&*s2, "orphan").await;
        sqlx::query("UPDATE store_keys SET retired = 1 WHERE key_id = 'kgone'")
            .execute(&raw)
            .await
            .unwrap();
        let s = db.open().await;
        let e = s.get_tokens(&orphan).await.unwrap_err();
        assert_eq!(e.undecryptable_connection(), Some("orphan"), "{e}");
        assert!(e.to_string().contains("kgone"), "{e}");

        // The others are untouched; listing needs no decryption.
        assert_eq!(
            s.get_tokens(&good)
                .await
                .unwrap()
                .unwrap()
                .set
                .access_token
                .expose(),
            "at-good-0"
        );
        let ids: Vec<String> = s
            .list_connections()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id.to_string())
            .collect();
        assert_eq!(ids, ["bad", "good", "orphan"]);
        // A broken row is deleted like any other, its token set with it.
        for id in [&bad, &orphan] {
            assert!(s.delete_connection(id).await.unwrap());
            assert!(s.get_connection(id).await.unwrap().is_none());
            assert!(s.get_tokens(id).await.unwrap().is_none());
        }
        assert!(s.get_tokens(&good).await.unwrap().is_some());
    }

    pub async fn wrong_or_missing_key_refused_at_open(db: Arc<Db>) {
        let s = db.open().await;
        seeded(&*s, "c1").await;
        let wrong = Keyring::generate("k1").unwrap();
        let e = db.open_with(wrong).await.unwrap_err();
        assert!(matches!(e, StoreError::Crypto(_)), "{e}");
        assert!(e.to_string().contains("k1"), "{e}");
        let other = Keyring::generate("k9").unwrap();
        let e = db.open_with(other).await.unwrap_err().to_string();
        assert!(e.contains("key k1") && e.contains("does not hold"), "{e}");
        // The right key still opens.
        let again = db.open().await;
        assert_eq!(
            again
                .get_tokens(&cid("c1"))
                .await
                .unwrap()
                .unwrap()
                .set
                .access_token
                .expose(),
            "at-c1-0"
        );
    }

    pub async fn no_plaintext_secret_in_raw_storage(db: Arc<Db>) {
        let s = db.open().await;
        let secrets = [
            "PLAINTEXT-ACCESS-7f3a9c",
            "PLAINTEXT-REFRESH-51be20",
            "PLAINTEXT-CLIENTSECRET-9d01",
            "PLAINTEXT-VERIFIER-c4c4c4",
            "PLAINTEXT-WEBHOOK-0a0a0a",
            "PLAINTEXT-DEVTOKEN-6e6e6e",
            "PLAINTEXT-TOKENSECRET-3b3b3b",
        ];
        s.put_connection(&connection("c1")).await.unwrap();
        // An OAuth 1.0a set carries a token secret besides the tokens.
        let mut set = tokens(secrets[0], Some(secrets[1]));
        set.token_secret = Some(Secret::new(secrets[6]));
        s.put_initial_tokens(&cid("c1"), &set).await.unwrap();
        s.put_app(&App {
            provider: pid(),
            id: AppId::parse("main").unwrap(),
            client_id: "cid".into(),
            client_secret: Secret::new(secrets[2]),
            redirect_uri: "https://x/cb".into(),
            developer_token: Some(Secret::new(secrets[5])),
            user_agent: None,
            refresh_token_ends_after: None,
            identity: None,
            environment: tokenwarden_core::connection::Environment::Production,
            region: None,
            created_at: t0(),
            updated_at: t0(),
        })
        .await
        .unwrap();
        s.put_pending(&PendingAuthorization {
            state_hash: Sha256Hex::of("PLAINTEXT-STATE-eeee"),
            provider: pid(),
            app: AppId::parse("main").unwrap(),
            connection: cid("c1"),
            redirect_uri: "https://x/cb".into(),
            pkce_verifier: Some(Secret::new(secrets[3])),
            scopes: vec![],
            browser_hash: Sha256Hex::of("PLAINTEXT-COOKIE-ffff"),
            created_at: t0(),
            expires_at: t0() + TimeDelta::minutes(5),
            session: None,
            region: None,
        })
        .await
        .unwrap();
        s.put_webhook(&WebhookEndpoint {
            id: "h".into(),
            url: "https://h".into(),
            signing_secret: Secret::new(secrets[4]),
            enabled: true,
            created_at: t0(),
        })
        .await
        .unwrap();
        let (_, api_key) = s
            .create_api_key(ApiKeyRole::Admin, "k", t0())
            .await
            .unwrap();
        let mut needles: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        needles.push("PLAINTEXT-STATE-eeee".into());
        needles.push("PLAINTEXT-COOKIE-ffff".into());
        needles.push(api_key.expose().to_string());
        // The values are readable through the store…
        assert_eq!(
            s.get_tokens(&cid("c1"))
                .await
                .unwrap()
                .unwrap()
                .set
                .access_token
                .expose(),
            secrets[0]
        );
        assert_eq!(
            s.get_tokens(&cid("c1"))
                .await
                .unwrap()
                .unwrap()
                .set
                .token_secret
                .as_ref()
                .map(Secret::expose),
            Some(secrets[6])
        );
        // …and nowhere in the raw storage.
        let haystack: Vec<u8> = match db.kind {
            Kind::Sqlite => {
                let files = db.sqlite_files();
                assert!(!files.is_empty());
                files
                    .iter()
                    .flat_map(|f| std::fs::read(f).unwrap())
                    .collect()
            }
            Kind::Postgres => {
                let raw = db.raw().await;
                let mut all = Vec::new();
                for t in [
                    "apps",
                    "connections",
                    "token_sets",
                    "pending_authorizations",
                    "events",
                    "api_keys",
                    "webhooks",
                    "webhook_deliveries",
                    "store_keys",
                ] {
                    let rows = sqlx::query(&format!("SELECT CAST(t AS TEXT) AS r FROM {t} t"))
                        .fetch_all(&raw)
                        .await
                        .unwrap();
                    assert!(
                        !rows.is_empty() || !["token_sets", "apps", "webhooks"].contains(&t),
                        "{t} empty"
                    );
                    for r in rows {
                        all.extend_from_slice(r.get::<String, _>("r").as_bytes());
                    }
                }
                all
            }
        };
        assert!(haystack.len() > 1000);
        let text = String::from_utf8_lossy(&haystack).to_lowercase();
        for n in &needles {
            let hexed = hex::encode(n.as_bytes());
            assert!(
                !text.contains(&n.to_lowercase()),
                "plaintext {n} found in raw storage"
            );
            assert!(!text.contains(&hexed), "hex of {n} found in raw storage");
        }
        // Sanity: the scan does see stored non-secret text.
        assert!(text.contains("adsapi.snapchat.com"));
    }

    pub async fn rotation_while_reading_and_writing(db: Arc<Db>) {
        let s = db.open().await;
        let n = 40;
        for i in 0..n {
            seeded(&*s, &format!("c{i:03}")).await;
        }
        s.put_app(&App {
            provider: pid(),
            id: AppId::parse("main").unwrap(),
            client_id: "cid".into(),
            client_secret: Secret::new("client-secret"),
            redirect_uri: "https://x/cb".into(),
            developer_token: None,
            user_agent: None,
            refresh_token_ends_after: None,
            identity: None,
            environment: tokenwarden_core::connection::Environment::Production,
            region: None,
            created_at: t0(),
            updated_at: t0(),
        })
        .await
        .unwrap();
        s.put_webhook(&WebhookEndpoint {
            id: "h".into(),
            url: "https://h".into(),
            signing_secret: Secret::new("whsec-rotated"),
            enabled: true,
            created_at: t0(),
        })
        .await
        .unwrap();
        let pending = PendingAuthorization {
            state_hash: Sha256Hex::of("rot-state"),
            provider: pid(),
            app: AppId::parse("main").unwrap(),
            connection: cid("c000"),
            redirect_uri: "https://x/cb".into(),
            pkce_verifier: Some(Secret::new("verifier-rotated")),
            scopes: vec![],
            browser_hash: Sha256Hex::of("b"),
            created_at: t0(),
            expires_at: t0() + TimeDelta::minutes(10),
            session: None,
            region: None,
        };
        s.put_pending(&pending).await.unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for r in 0..3 {
            let (s, stop) = (s.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for i in (r..n).step_by(3) {
                        let st = s
                            .get_tokens(&cid(&format!("c{i:03}")))
                            .await
                            .expect("reads never fail during rotation")
                            .unwrap();
                        assert!(
                            st.set
                                .access_token
                                .expose()
                                .starts_with(&format!("at-c{i:03}-"))
                        );
                        reads += 1;
                    }
                }
                reads
            }));
        }
        // A writer refreshing one connection meanwhile.
        let writer = {
            let (s, stop) = (s.clone(), stop.clone());
            tokio::spawn(async move {
                let mut k = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(l) = s
                        .acquire_refresh_lease(&cid("c000"), "w", Duration::from_secs(10))
                        .await
                        .unwrap()
                    {
                        k += 1;
                        s.commit_refresh(&l, &tokens(&format!("at-c000-{k}"), Some("rt")), None)
                            .await
                            .unwrap();
                    }
                }
                k
            })
        };
        let new_ring = db.keys.with_new_key("k2").unwrap();
        let report = rotate_keys(&*s, new_ring.clone()).await.unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            assert!(r.await.unwrap() > 0);
        }
        writer.await.unwrap();
        // Every row but the one the writer keeps rewriting (already under k2) needed re-encryption.
        assert!(report.reencrypted >= (2 * (n - 1)) as u64, "{report:?}");
        let status = s.key_status().await.unwrap();
        assert!(
            status.iter().any(|k| k.key_id == "k1" && k.retired),
            "{status:?}"
        );
        assert!(
            status.iter().any(|k| k.key_id == "k2" && !k.retired),
            "{status:?}"
        );
        // Every ciphertext is now under k2: the new key alone opens everything…
        let k2_only = Keyring::parse(
            &new_ring
                .to_file_text()
                .lines()
                .filter(|l| l.starts_with("k2:"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .unwrap();
        let s2 = db.open_with(k2_only).await.unwrap();
        for i in 0..n {
            s2.get_tokens(&cid(&format!("c{i:03}")))
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(
            s2.get_app(&pid(), &AppId::parse("main").unwrap())
                .await
                .unwrap()
                .unwrap()
                .client_secret
                .expose(),
            "client-secret"
        );
        assert_eq!(
            s2.get_webhook("h")
                .await
                .unwrap()
                .unwrap()
                .signing_secret
                .expose(),
            "whsec-rotated"
        );
        assert_eq!(
            s2.consume_pending(&pending.state_hash, t0()).await.unwrap(),
            Some(pending)
        );
        // …and the old key alone is refused at open.
        let e = db.open_with(db.keys.clone()).await.unwrap_err().to_string();
        assert!(e.contains("k2"), "{e}");
    }

    pub async fn key_budget_refuses_before_nonce_limit(db: Arc<Db>) {
        let s = db.open().await;
        seeded(&*s, "c1").await;
        let raw = db.raw().await;
        sqlx::query("UPDATE store_keys SET encryptions = $1")
            .bind(tokenwarden_store::sql::KEY_REFUSE_AT)
            .execute(&raw)
            .await
            .unwrap();
        let s = db.open().await;
        let e = s
            .put_initial_tokens(&cid("c1"), &tokens("x", None))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("rotate"), "{e}");
        // Reads still work, and rotating restores writes.
        assert!(s.get_tokens(&cid("c1")).await.unwrap().is_some());
        rotate_keys(&*s, db.keys.with_new_key("k2").unwrap())
            .await
            .unwrap();
        s.put_initial_tokens(&cid("c1"), &tokens("x", None))
            .await
            .unwrap();
    }

    /// `n` events at `at`, of connection `c1` and of none in turn; their ids.
    async fn events_at(s: &dyn Store, n: usize, at: DateTime<Utc>, what: &str) -> Vec<i64> {
        let mut ids = Vec::new();
        for i in 0..n {
            let conn = (i % 2 == 0).then(|| cid("c1"));
            ids.push(
                s.append_event(&NewEvent::new(conn, at, "refreshed", format!("{what} {i}")))
                    .await
                    .unwrap(),
            );
        }
        ids
    }

    pub async fn retention_prunes_old_events_in_batches_and_cursors_survive(db: Arc<Db>) {
        let s = db.open().await;
        let cutoff = t0() - TimeDelta::days(30);
        let old = events_at(&*s, 10, t0() - TimeDelta::days(40), "old").await;
        let edge = events_at(&*s, 1, cutoff, "edge").await;
        let recent = events_at(&*s, 3, t0() - TimeDelta::hours(1), "recent").await;
        // 10 old rows in batches of 4: rounds of 4, 4 and 2.
        assert_eq!(s.prune_events(cutoff, 4).await.unwrap(), 10);
        let left: Vec<i64> = s
            .list_events(None, 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        let kept: Vec<i64> = edge.iter().chain(&recent).copied().collect();
        assert_eq!(
            left, kept,
            "older than the cutoff goes; at it or after stays"
        );
        // A cursor taken before the prune still pages on.
        let from_pruned = s.list_events(None, old[3], 100).await.unwrap();
        assert_eq!(from_pruned.iter().map(|e| e.id).collect::<Vec<_>>(), kept);
        assert_eq!(
            s.list_events(None, recent[0], 100)
                .await
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            recent[1..]
        );
        let of_c1 = s.list_events(Some(&cid("c1")), 0, 100).await.unwrap();
        assert_eq!(
            of_c1.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            ["edge 0", "recent 0", "recent 2"]
        );
        // Nothing more is old; an exact multiple of the batch ends too (rounds of 2, 2, 0).
        assert_eq!(s.prune_events(cutoff, 4).await.unwrap(), 0);
        assert_eq!(s.prune_events(t0(), 2).await.unwrap(), 4);
        // Even with every row gone, ids are not reused: a cursor never skips a new event.
        assert!(s.list_events(None, 0, 100).await.unwrap().is_empty());
        let next = events_at(&*s, 1, t0(), "new").await[0];
        assert!(next > recent[2], "{next} after {}", recent[2]);
        let s2 = db.open().await;
        assert!(events_at(&*s2, 1, t0(), "after reopening").await[0] > next);
    }

    pub async fn retention_prunes_finished_deliveries_never_pending_ones(db: Arc<Db>) {
        let s = db.open().await;
        s.put_webhook(&WebhookEndpoint {
            id: "hook1".into(),
            url: "https://hooks.example/tw".into(),
            signing_secret: Secret::new("whsec_signing_secret_value"),
            enabled: true,
            created_at: t0(),
        })
        .await
        .unwrap();
        let ttl = Duration::from_secs(60);
        // One delivery enqueued at `at`, claimed, then settled by `settle`.
        async fn delivery(s: &dyn Store, at: DateTime<Utc>, settle: &str) -> String {
            let id = s.enqueue_deliveries("{}", at).await.unwrap().remove(0);
            if settle == "untried" {
                return id;
            }
            let claimed = s
                .claim_due_deliveries(at, 10, Duration::from_secs(60))
                .await;
            assert_eq!(claimed.unwrap().len(), 1);
            match settle {
                "delivered" => s.mark_delivered(&id).await.unwrap(),
                "dead" => s.mark_failed(&id, "HTTP 410", None).await.unwrap(),
                "retrying" => s
                    .mark_failed(&id, "HTTP 503", Some(at + TimeDelta::days(3650)))
                    .await
                    .unwrap(),
                other => unreachable!("{other}"),
            }
            id
        }
        let long_ago = t0() - TimeDelta::days(40);
        let mut gone = Vec::new();
        for settle in ["delivered", "dead", "delivered", "dead", "delivered"] {
            gone.push(delivery(&*s, long_ago, settle).await);
        }
        let old_retrying = delivery(&*s, long_ago, "retrying").await;
        let recent_delivered = delivery(&*s, t0() - TimeDelta::hours(1), "delivered").await;
        let recent_dead = delivery(&*s, t0() - TimeDelta::hours(1), "dead").await;
        // Last, so that no claim above takes it.
        let old_untried = delivery(&*s, long_ago, "untried").await;

        let cutoff = t0() - TimeDelta::days(14);
        assert_eq!(s.prune_deliveries(cutoff, 2).await.unwrap(), 5);
        for id in &gone {
            assert_eq!(s.get_delivery(id).await.unwrap(), None, "{id}");
        }
        for (id, status) in [
            (&old_retrying, DeliveryStatus::Pending),
            (&old_untried, DeliveryStatus::Pending),
            (&recent_delivered, DeliveryStatus::Delivered),
            (&recent_dead, DeliveryStatus::Dead),
        ] {
            let d = s.get_delivery(id).await.unwrap();
            assert_eq!(d.map(|d| d.status), Some(status), "{id}");
        }
        assert_eq!(s.list_deliveries("hook1", 100).await.unwrap().len(), 4);
        // The old pending ones are still in the outbox: the untried one is due now, and the
        // retrying one when its time comes, under the same id.
        let due = s.claim_due_deliveries(t0(), 10, ttl).await.unwrap();
        assert_eq!(
            due.iter().map(|d| &d.id).collect::<Vec<_>>(),
            [&old_untried]
        );
        let later = s
            .claim_due_deliveries(long_ago + TimeDelta::days(3650), 10, ttl)
            .await
            .unwrap();
        assert_eq!(
            later.iter().map(|d| &d.id).collect::<Vec<_>>(),
            [&old_retrying]
        );
        // Once finished, an old one goes at the next prune.
        s.mark_delivered(&old_untried).await.unwrap();
        assert_eq!(s.prune_deliveries(cutoff, 2).await.unwrap(), 1);
        assert_eq!(s.get_delivery(&old_untried).await.unwrap(), None);
        assert_eq!(s.prune_deliveries(cutoff, 2).await.unwrap(), 0);
    }

    pub async fn retention_purges_expired_pending_authorizations(db: Arc<Db>) {
        let s = db.open().await;
        let pending = |state: &str, expires_at: DateTime<Utc>| PendingAuthorization {
            state_hash: Sha256Hex::of(state),
            provider: pid(),
            app: AppId::parse("main").unwrap(),
            connection: cid("c1"),
            redirect_uri: "https://tw.example/callback/snapchat".into(),
            pkce_verifier: Some(Secret::new("pkce-verifier-0123456789abcdefghijklmnop")),
            scopes: vec![],
            browser_hash: Sha256Hex::of("cookie"),
            created_at: expires_at - TimeDelta::minutes(10),
            expires_at,
            session: None,
            region: None,
        };
        for i in 0..7 {
            let at = t0() - TimeDelta::minutes(i);
            s.put_pending(&pending(&format!("expired-{i}"), at))
                .await
                .unwrap();
        }
        let live = pending("live", t0() + TimeDelta::minutes(5));
        s.put_pending(&live).await.unwrap();
        assert_eq!(s.purge_expired_pending(t0()).await.unwrap(), 7);
        assert_eq!(s.purge_expired_pending(t0()).await.unwrap(), 0);
        assert_eq!(
            s.consume_pending(&live.state_hash, t0()).await.unwrap(),
            Some(live)
        );
        assert_eq!(
            s.consume_pending(&Sha256Hex::of("expired-0"), t0() - TimeDelta::hours(1))
                .await
                .unwrap(),
            None,
            "an expired one is gone, not merely refused"
        );
    }

    pub async fn retention_by_two_replicas_at_once_deletes_each_row_once(db: Arc<Db>) {
        let (s1, s2) = (db.open().await, db.open().await);
        let old = t0() - TimeDelta::days(40);
        let n = 300;
        for chunk in 0..3 {
            let mut inserts = Vec::new();
            for i in 0..n / 3 {
                let s = s1.clone();
                inserts.push(tokio::spawn(async move {
                    s.append_event(&NewEvent::new(
                        None,
                        old,
                        "refreshed",
                        format!("{chunk}-{i}"),
                    ))
                    .await
                    .unwrap()
                }));
            }
            for h in inserts {
                h.await.unwrap();
            }
        }
        let keep = events_at(&*s1, 2, t0(), "recent").await;
        let cutoff = t0() - TimeDelta::days(30);
        let (a, b) = tokio::join!(s1.prune_events(cutoff, 7), s2.prune_events(cutoff, 7));
        let (a, b) = (a.unwrap(), b.unwrap());
        // One replica may stop early when the other holds the rows it would take; whatever is
        // left goes at the next pass. Never is a row counted twice.
        let rest = s1.prune_events(cutoff, 7).await.unwrap();
        assert_eq!(a + b + rest, n as u64, "{a} + {b} + {rest}");
        let left: Vec<i64> = s2
            .list_events(None, 0, 1000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, keep);
    }

    fn lane(key: &str, ms: u64) -> RateLane {
        RateLane {
            key: key.into(),
            interval: Duration::from_millis(ms),
        }
    }

    fn granted(slot: RateSlot) -> (Duration, bool, DateTime<Utc>) {
        match slot {
            RateSlot::Granted { wait, slowed, at } => (wait, slowed, at),
            RateSlot::Refused { would_wait } => panic!("refused: would wait {would_wait:?}"),
        }
    }

    pub async fn shared_rate_lanes_keep_one_schedule_across_replicas(db: Arc<Db>) {
        let stores = [db.open().await, db.open().await, db.open().await];
        let far = Duration::from_secs(600);
        // 30 callers on three replicas at once, on a 100 ms lane and (some) a 40 ms one.
        let mut handles = Vec::new();
        for i in 0..30 {
            let s = stores[i % 3].clone();
            handles.push(tokio::spawn(async move {
                let mut lanes = vec![lane("p/app/a", 100)];
                if i % 2 == 0 {
                    lanes.push(lane("p/conn/c", 40));
                }
                granted(s.take_rate_slot(&lanes, Duration::ZERO, far).await.unwrap()).2
            }));
        }
        let mut slots = Vec::new();
        for h in handles {
            slots.push(h.await.unwrap());
        }
        slots.sort();
        for pair in slots.windows(2) {
            assert!(
                pair[1] - pair[0] >= TimeDelta::milliseconds(100),
                "slots closer than the lane's spacing: {pair:?}"
            );
        }
        // A caller whose budget ends before the next free slot is refused and books nothing.
        let next = stores[0]
            .take_rate_slot(&[lane("p/app/a", 100)], Duration::ZERO, Duration::ZERO)
            .await
            .unwrap();
        let RateSlot::Refused { would_wait } = next else {
            panic!("{next:?}")
        };
        assert!(would_wait > Duration::from_secs(2), "{would_wait:?}");
        let (_, slowed, at) = granted(
            stores[1]
                .take_rate_slot(&[lane("p/app/a", 100)], Duration::ZERO, far)
                .await
                .unwrap(),
        );
        assert!(!slowed);
        assert_eq!(
            at - *slots.last().unwrap(),
            TimeDelta::milliseconds(100),
            "the refusal took no slot"
        );
        // A caller that must wait for its own reasons books no earlier than it asked.
        let (wait, _, _) = granted(
            stores[2]
                .take_rate_slot(&[lane("p/app/other", 100)], Duration::from_secs(5), far)
                .await
                .unwrap(),
        );
        assert!(wait >= Duration::from_secs(5), "{wait:?}");
        // No lanes: nothing to wait for.
        let (wait, ..) = granted(
            stores[0]
                .take_rate_slot(&[], Duration::ZERO, far)
                .await
                .unwrap(),
        );
        assert_eq!(wait, Duration::ZERO);
    }

    pub async fn rate_holds_are_seen_by_every_replica(db: Arc<Db>) {
        let (s1, s2) = (db.open().await, db.open().await);
        assert!(s2.rate_holds().await.unwrap().is_empty());
        let held = vec!["p/app/q".to_string(), "p/conn/c".to_string()];
        s1.hold_rate_lanes(&held, Duration::from_secs(30))
            .await
            .unwrap();
        // A shorter hold later does not shorten it.
        s1.hold_rate_lanes(&held[..1], Duration::from_secs(1))
            .await
            .unwrap();
        let seen = s2.rate_holds().await.unwrap();
        assert_eq!(
            seen.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["p/app/q", "p/conn/c"]
        );
        for (k, left) in &seen {
            assert!(
                *left > Duration::from_secs(25) && *left <= Duration::from_secs(30),
                "{k}: {left:?}"
            );
        }
        // A booked lane keeps its spacing and is held as well.
        let l = [lane("p/app/booked", 100)];
        granted(
            s1.take_rate_slot(&l, Duration::ZERO, Duration::from_secs(600))
                .await
                .unwrap(),
        );
        s2.hold_rate_lanes(&["p/app/booked".to_string()], Duration::from_secs(20))
            .await
            .unwrap();
        let r = s1
            .take_rate_slot(&l, Duration::ZERO, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(
            matches!(r, RateSlot::Refused { would_wait } if would_wait > Duration::from_secs(15)),
            "{r:?}"
        );
        // A hold that has passed is not listed.
        s1.hold_rate_lanes(&["p/conn/brief".to_string()], Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let keys: Vec<String> = s2
            .rate_holds()
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(!keys.contains(&"p/conn/brief".to_string()), "{keys:?}");
        assert_eq!(keys.len(), 3, "{keys:?}");
    }

    pub async fn shared_rate_lanes_follow_throttles_and_recover(db: Arc<Db>) {
        let (s1, s2) = (db.open().await, db.open().await);
        let far = Duration::from_secs(600);
        let l = [lane("p/app/t", 100)];
        let keys = vec!["p/app/t".to_string()];
        granted(s1.take_rate_slot(&l, Duration::ZERO, far).await.unwrap());
        // One replica is throttled: the other holds for the asked wait, at half the rate.
        s1.rate_feedback(
            &keys,
            RateFeedback::Throttled {
                hold: Duration::from_secs(30),
                min_factor: 1.0 / 64.0,
            },
        )
        .await
        .unwrap();
        let r = s2
            .take_rate_slot(&l, Duration::ZERO, Duration::from_secs(1))
            .await
            .unwrap();
        let RateSlot::Refused { would_wait } = r else {
            panic!("{r:?}")
        };
        assert!(would_wait > Duration::from_secs(25), "{would_wait:?}");
        let (_, slowed, a) = granted(s2.take_rate_slot(&l, Duration::ZERO, far).await.unwrap());
        let (_, _, b) = granted(s1.take_rate_slot(&l, Duration::ZERO, far).await.unwrap());
        assert!(slowed, "the lane runs at half its rate");
        assert_eq!(b - a, TimeDelta::milliseconds(200));
        // Unknown lanes are ignored; a usage warning slows further, never below the floor.
        s1.rate_feedback(
            &["p/app/unknown".to_string()],
            RateFeedback::Recovered { step: 0.5 },
        )
        .await
        .unwrap();
        for _ in 0..10 {
            s2.rate_feedback(
                &keys,
                RateFeedback::Slower {
                    by: 0.5,
                    min_factor: 0.25,
                },
            )
            .await
            .unwrap();
        }
        let (_, _, c) = granted(s1.take_rate_slot(&l, Duration::ZERO, far).await.unwrap());
        assert_eq!(
            c - b,
            TimeDelta::milliseconds(200),
            "booked at the old factor"
        );
        let (_, _, d) = granted(s1.take_rate_slot(&l, Duration::ZERO, far).await.unwrap());
        assert_eq!(d - c, TimeDelta::milliseconds(400), "a quarter of the rate");
        // Successes give the rate back, up to the full rate and no further.
        for _ in 0..5 {
            s2.rate_feedback(&keys, RateFeedback::Recovered { step: 0.5 })
                .await
                .unwrap();
        }
        let (_, slowed, e) = granted(s1.take_rate_slot(&l, Duration::ZERO, far).await.unwrap());
        assert!(!slowed);
        let (_, _, f) = granted(s1.take_rate_slot(&l, Duration::ZERO, far).await.unwrap());
        assert_eq!(e - d, TimeDelta::milliseconds(400));
        assert_eq!(f - e, TimeDelta::milliseconds(100));
        // Idle lanes are forgotten by the purge only once idle for an hour.
        assert_eq!(s1.purge_replica_state(t0(), t0()).await.unwrap(), 0);
    }

    pub async fn job_leases_have_one_holder_and_are_taken_over_when_expired(db: Arc<Db>) {
        let stores = [db.open().await, db.open().await, db.open().await];
        let ttl = Duration::from_secs(60);
        let mut handles = Vec::new();
        for i in 0..12 {
            let s = stores[i % 3].clone();
            handles.push(tokio::spawn(async move {
                s.take_job_lease("alerts", &format!("r{}", i % 3), ttl)
                    .await
                    .unwrap()
                    .then_some(i % 3)
            }));
        }
        let mut holders = HashSet::new();
        for h in handles {
            if let Some(w) = h.await.unwrap() {
                holders.insert(w);
            }
        }
        assert_eq!(holders.len(), 1, "one holder: {holders:?}");
        let holder = format!("r{}", holders.into_iter().next().unwrap());
        let other = if holder == "r0" { "r1" } else { "r0" };
        // The holder renews; another is refused; each name is its own lease.
        assert!(
            stores[0]
                .take_job_lease("alerts", &holder, ttl)
                .await
                .unwrap()
        );
        assert!(
            !stores[1]
                .take_job_lease("alerts", other, ttl)
                .await
                .unwrap()
        );
        assert!(
            stores[1]
                .take_job_lease("retention", other, ttl)
                .await
                .unwrap()
        );
        // Only the holder can give it up.
        stores[1].release_job_lease("alerts", other).await.unwrap();
        assert!(
            !stores[1]
                .take_job_lease("alerts", other, ttl)
                .await
                .unwrap()
        );
        stores[0]
            .release_job_lease("alerts", &holder)
            .await
            .unwrap();
        assert!(
            stores[1]
                .take_job_lease("alerts", other, ttl)
                .await
                .unwrap()
        );
        // A holder that stops renewing (died, paused) is taken over once its lease expires, and
        // cannot renew it afterwards.
        assert!(
            stores[2]
                .take_job_lease("crowd", "r2", Duration::from_millis(1))
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(stores[0].take_job_lease("crowd", "r0", ttl).await.unwrap());
        assert!(!stores[2].take_job_lease("crowd", "r2", ttl).await.unwrap());
    }

    pub async fn alerts_are_claimed_once(db: Arc<Db>) {
        let stores = [db.open().await, db.open().await, db.open().await];
        let mut handles = Vec::new();
        for i in 0..12 {
            let s = stores[i % 3].clone();
            handles.push(tokio::spawn(async move {
                s.claim_alert("reauth_required/c1/1700", &format!("r{i}"), t0())
                    .await
                    .unwrap()
            }));
        }
        let mut won = 0;
        for h in handles {
            won += usize::from(h.await.unwrap());
        }
        assert_eq!(won, 1);
        // Another episode of the same condition is another alert.
        assert!(
            stores[1]
                .claim_alert("reauth_required/c1/1800", "r1", t0())
                .await
                .unwrap()
        );
        // A claim given back (the send failed) can be taken again.
        stores[2]
            .unclaim_alert("reauth_required/c1/1700")
            .await
            .unwrap();
        assert!(
            stores[0]
                .claim_alert("reauth_required/c1/1700", "r0", t0())
                .await
                .unwrap()
        );
        // Old records go with the purge, and the alert could be sent again.
        let later = t0() + TimeDelta::days(100);
        assert_eq!(
            stores[0]
                .purge_replica_state(later, t0() + TimeDelta::days(1))
                .await
                .unwrap(),
            2
        );
        assert!(
            stores[0]
                .claim_alert("reauth_required/c1/1700", "r0", later)
                .await
                .unwrap()
        );
    }

    pub async fn dashboard_sessions_are_shared_and_end_when_idle_or_old(db: Arc<Db>) {
        let (s1, s2) = (db.open().await, db.open().await);
        let idle = TimeDelta::minutes(30);
        let session = |token: &str| DashboardSession {
            token_hash: Sha256Hex::of(token),
            who: "password".into(),
            created_at: t0(),
            expires_at: t0() + TimeDelta::hours(12),
            last_used: t0(),
        };
        s1.put_dashboard_session(&session("cookie-1"))
            .await
            .unwrap();
        // Signed in on one replica, served by the other; every use extends the idle timeout.
        let mut now = t0();
        while now + TimeDelta::minutes(29) < t0() + TimeDelta::hours(12) {
            now += TimeDelta::minutes(29);
            let got = s2
                .use_dashboard_session(&Sha256Hex::of("cookie-1"), now, idle)
                .await
                .unwrap();
            assert_eq!(got.map(|g| g.who), Some("password".to_string()), "{now}");
        }
        assert!(
            s1.use_dashboard_session(
                &Sha256Hex::of("cookie-1"),
                t0() + TimeDelta::hours(12),
                idle
            )
            .await
            .unwrap()
            .is_none(),
            "absolute end"
        );
        assert!(
            s1.use_dashboard_session(&Sha256Hex::of("cookie-1"), now, idle)
                .await
                .unwrap()
                .is_none(),
            "ended, not just hidden"
        );
        s1.put_dashboard_session(&session("cookie-2"))
            .await
            .unwrap();
        assert!(
            s2.use_dashboard_session(
                &Sha256Hex::of("cookie-2"),
                t0() + TimeDelta::minutes(31),
                idle
            )
            .await
            .unwrap()
            .is_none(),
            "idle 31 minutes"
        );
        s1.put_dashboard_session(&session("cookie-3"))
            .await
            .unwrap();
        assert!(
            s2.use_dashboard_session(&Sha256Hex::of("cookie-3"), t0(), idle)
                .await
                .unwrap()
                .is_some()
        );
        s2.end_dashboard_session(&Sha256Hex::of("cookie-3"))
            .await
            .unwrap();
        assert!(
            s1.use_dashboard_session(&Sha256Hex::of("cookie-3"), t0(), idle)
                .await
                .unwrap()
                .is_none(),
            "signed out everywhere"
        );
        assert!(
            s1.use_dashboard_session(&Sha256Hex::of("never"), t0(), idle)
                .await
                .unwrap()
                .is_none()
        );
        // Only the hash is stored.
        let raw = db.raw().await;
        let rows = sqlx::query("SELECT token_hash FROM dashboard_sessions")
            .fetch_all(&raw)
            .await
            .unwrap();
        for r in rows {
            let h: String = r.get("token_hash");
            assert!(!h.contains("cookie"), "{h}");
        }
        // Past their end, the purge deletes them.
        s1.put_dashboard_session(&session("cookie-4"))
            .await
            .unwrap();
        assert_eq!(
            s1.purge_replica_state(t0() + TimeDelta::hours(13), t0())
                .await
                .unwrap(),
            1
        );
    }

    pub async fn signin_failures_lock_a_key_for_every_replica(db: Arc<Db>) {
        let (s1, s2) = (db.open().await, db.open().await);
        let window = TimeDelta::seconds(60);
        let keys = |k: &[&str]| k.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        for i in 0..3 {
            assert_eq!(
                s2.signin_locked_until(&keys(&["addr:a"]), 3, window, t0())
                    .await
                    .unwrap(),
                None,
                "{i}"
            );
            let s = if i % 2 == 0 { &s1 } else { &s2 };
            s.record_signin_failure(&keys(&["addr:a", "key:k"]), t0() + TimeDelta::seconds(i))
                .await
                .unwrap();
        }
        let at = t0() + TimeDelta::seconds(15);
        // Locked until the oldest of the three counted failures is a minute old.
        assert_eq!(
            s2.signin_locked_until(&keys(&["addr:a"]), 3, window, at)
                .await
                .unwrap(),
            Some(t0() + TimeDelta::seconds(60))
        );
        assert_eq!(
            s1.signin_locked_until(&keys(&["addr:b", "key:k"]), 3, window, at)
                .await
                .unwrap(),
            Some(t0() + TimeDelta::seconds(60)),
            "the key id is locked whatever the address"
        );
        assert_eq!(
            s1.signin_locked_until(&keys(&["addr:b"]), 3, window, at)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            s1.signin_locked_until(&keys(&["addr:a"]), 3, window, t0() + TimeDelta::seconds(61))
                .await
                .unwrap(),
            None,
            "the oldest counted failure aged out"
        );
        s2.clear_signin_failures("addr:a").await.unwrap();
        assert_eq!(
            s1.signin_locked_until(&keys(&["addr:a"]), 3, window, at)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            s1.purge_replica_state(t0() + TimeDelta::hours(2), t0())
                .await
                .unwrap(),
            3,
            "the key id's failures"
        );
    }

    pub async fn a_replica_reloads_its_keys_for_a_key_it_lacks_and_says_what_to_do(db: Arc<Db>) {
        let (s1, s2) = (db.open().await, db.open().await);
        // Replica 1 rotates to k2 and writes under it; replica 2 still holds k1 only.
        let rotated = db.keys.with_new_key("k2").unwrap();
        s1.set_keyring(rotated.clone()).await.unwrap();
        let c = seeded(&*s1, "rotated").await;
        let e = s2.get_tokens(&c).await.unwrap_err();
        assert_eq!(e.missing_key_id(), Some("k2"), "{e}");
        assert!(e.to_string().contains("key k2"), "{e}");
        // With a key file to reload from that does not hold k2 either, it says where keys come
        // from and what to do.
        let file = Arc::new(std::sync::Mutex::new(db.keys.to_file_text().to_string()));
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (f, n) = (file.clone(), reads.clone());
        s2.set_key_loader(KeyLoader {
            source: "the key file /srv/tw/master.key".into(),
            load: Some(Arc::new(move || {
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Keyring::parse(&f.lock().unwrap()).map_err(|e| e.to_string())
            })),
        });
        let e = s2.get_tokens(&c).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("the key file /srv/tw/master.key")
                && text.contains("key k2 is not there")
                && text.contains("`k2:`"),
            "{text}"
        );
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
        for line in rotated
            .to_file_text()
            .lines()
            .filter(|l| !l.starts_with('#'))
        {
            let material = line.split_once(':').map_or(line, |(_, m)| m);
            assert!(!text.contains(material), "key material in an error: {text}");
        }
        // The key reaches this replica's key file: the next read reloads and decrypts.
        *file.lock().unwrap() = rotated.to_file_text().to_string();
        let got = s2.get_tokens(&c).await.unwrap().unwrap();
        assert_eq!(got.set.access_token.expose(), "at-rotated-0");
        assert!(s2.keyring().has("k2"));
        // And it writes under the newest key from then on.
        s2.put_initial_tokens(&c, &tokens("after", None))
            .await
            .unwrap();
        assert_eq!(
            s1.get_tokens(&c)
                .await
                .unwrap()
                .unwrap()
                .set
                .access_token
                .expose(),
            "after"
        );
    }

    pub async fn circuit_breakers_change_by_compare_and_swap(db: Arc<Db>) {
        use tokenwarden_core::breaker::BreakerState;
        let (s1, s2) = (db.open().await, db.open().await);
        let (rec, now) = s1.breaker("token_endpoint/p").await.unwrap();
        assert_eq!(rec, BreakerRecord::default(), "never used: closed");
        let open = BreakerState {
            failures: 3,
            step: 1,
            open_until: Some(
                DateTime::from_timestamp_millis(now.timestamp_millis() + 5000).unwrap(),
            ),
            trial_until: None,
        };
        // Two replicas decide on the same reading: one change wins.
        let closed = BreakerState::default();
        let (a, b) = tokio::join!(
            s1.put_breaker("token_endpoint/p", 0, &open),
            s2.put_breaker("token_endpoint/p", 0, &closed)
        );
        assert!(a.unwrap() ^ b.unwrap());
        let (rec, _) = s2.breaker("token_endpoint/p").await.unwrap();
        assert_eq!(rec.version, 1);
        let trial = BreakerState {
            trial_until: open.open_until,
            ..rec.state
        };
        assert!(s2.put_breaker("token_endpoint/p", 1, &trial).await.unwrap());
        assert!(
            !s1.put_breaker("token_endpoint/p", 1, &open).await.unwrap(),
            "stale"
        );
        let (rec, _) = s1.breaker("token_endpoint/p").await.unwrap();
        assert_eq!((rec.version, rec.state), (2, trial));
        // Each platform has its own.
        let (other, _) = s1.breaker("token_endpoint/q").await.unwrap();
        assert_eq!(other, BreakerRecord::default());
    }
}
