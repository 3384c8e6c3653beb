//! Retention in the running daemon: history older than its retention is deleted when the daemon
//! starts and every hour of the clock's time after, recent history and pending deliveries stay,
//! the API's event cursor and the dashboard keep working on what is left, and a failing table is
//! logged and retried without stopping anything.
//!
//! The clock runs 3600 times faster than real time, so the daemon's hour is a real second.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenwarden_core::clock::{Clock, ScaledClock};
use tokenwarden_core::connection::{Connection, ConnectionState, Environment};
use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};
use tokenwarden_core::provider::Registry;
use tokenwarden_core::secret::Secret;
use tokenwarden_server::daemon::{Daemon, Running};
use tokenwarden_server::retention::Retention;
use tokenwarden_store::sql::SqlStore;
use tokenwarden_store::*;
use tokenwarden_testkit::logs::logs;

fn logged() -> String {
    logs().text()
}

struct World {
    d: Running,
    sql: Arc<SqlStore>,
    store: Arc<dyn Store>,
    clock: ScaledClock,
    http: reqwest::Client,
    admin: String,
    _dir: tempfile::TempDir,
}

/// A store with a scaled clock, seeded by `seed` before the daemon starts.
async fn world<F, Fut>(seed: F) -> World
where
    F: FnOnce(Arc<dyn Store>, Arc<SqlStore>, DateTime<Utc>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    logs();
    let clock = ScaledClock::new(Utc::now(), 3600.0);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("tw.db").display());
    let sql = Arc::new(
        SqlStore::open(&url, Keyring::generate("k1").unwrap())
            .await
            .unwrap(),
    );
    let store: Arc<dyn Store> = sql.clone();
    let (_, admin) = store
        .create_api_key(ApiKeyRole::Admin, "test", clock.now())
        .await
        .unwrap();
    store
        .put_webhook(&WebhookEndpoint {
            id: "hook1".into(),
            url: "https://hooks.example/tw".into(),
            signing_secret: Secret::new("whsec_retention_test_secret"),
            enabled: true,
            created_at: clock.now(),
        })
        .await
        .unwrap();
    seed(store.clone(), sql.clone(), clock.now()).await;
    let d = Daemon {
        listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        sandbox_listener: None,
        apps: vec![],
        store: store.clone(),
        providers: Registry::builtin().unwrap(),
        clock: Arc::new(clock),
        time_scale: 3600.0,
        public_url: None,
        owner: "test-replica".into(),
        key_file: None,
        probe_poll: Some(Duration::from_secs(3600)),
        webhooks: tokenwarden_server::webhooks::WebhookPolicy {
            allow_private: false,
        },
        retention: Retention::default(),
        cache: Default::default(),
        proxy_limits: Default::default(),
        http_threads: 0,
    }
    .start()
    .await
    .unwrap();
    World {
        d,
        sql,
        store,
        clock,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        admin: admin.expose().to_string(),
        _dir: dir,
    }
}

fn cid(s: &str) -> ConnectionId {
    ConnectionId::parse(s).unwrap()
}

async fn event(s: &dyn Store, conn: Option<&str>, at: DateTime<Utc>, message: &str) -> i64 {
    s.append_event(&NewEvent::new(
        conn.map(cid),
        at,
        "refreshed",
        message.to_string(),
    ))
    .await
    .unwrap()
}

/// One delivery enqueued at `at` and settled: `delivered`, `dead`, or `retrying` (pending, next
/// tried in ten years, so the outbox leaves it alone during the test).
///
/// Once the daemon runs, its outbox can claim a due delivery between the enqueue and the claim
/// here (it polls on its own; this failed CI once): that one is then the outbox's to settle, and
/// another is enqueued.
async fn delivery(s: &dyn Store, at: DateTime<Utc>, settle: &str) -> String {
    let mut ours = None;
    for _ in 0..20 {
        let id = s.enqueue_deliveries("{}", at).await.unwrap().remove(0);
        let claimed = s
            .claim_due_deliveries(at, 10, Duration::from_secs(60))
            .await
            .unwrap();
        if claimed.iter().any(|d| d.id == id) {
            ours = Some(id);
            break;
        }
    }
    let id = ours.expect("the daemon's outbox claimed every delivery enqueued here");
    match settle {
        "delivered" => s.mark_delivered(&id).await.unwrap(),
        "dead" => s.mark_failed(&id, "HTTP 410", None).await.unwrap(),
        _ => s
            .mark_failed(&id, "HTTP 503", Some(at + TimeDelta::days(3650)))
            .await
            .unwrap(),
    }
    id
}

fn pending(state: &str, expires_at: DateTime<Utc>) -> PendingAuthorization {
    PendingAuthorization {
        state_hash: Sha256Hex::of(state),
        provider: ProviderId::parse("snapchat").unwrap(),
        app: AppId::parse("main").unwrap(),
        connection: cid("c1"),
        redirect_uri: "https://tw.example/callback/snapchat".into(),
        pkce_verifier: Some(Secret::new("pkce-verifier-retention-0123456789abcdef")),
        scopes: vec![],
        browser_hash: Sha256Hex::of("cookie"),
        created_at: expires_at - TimeDelta::minutes(10),
        expires_at,
        session: None,
        region: None,
    }
}

/// Whether `p` is still stored (looked at without consuming it).
async fn pending_rows(sql: &SqlStore, p: &PendingAuthorization) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM pending_authorizations WHERE state_hash = $1")
        .bind(p.state_hash.as_str())
        .fetch_one(sql.pool())
        .await
        .unwrap()
        .get("n")
}

/// Waits (up to a minute of real time) until `done` holds; panics with `what` otherwise.
async fn until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1200 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("waited a minute for: {what}");
}

async fn event_ids(s: &dyn Store) -> Vec<i64> {
    s.list_events(None, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect()
}

impl World {
    async fn api(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.d.base))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn text(&self, path: &str, cookie: Option<&str>) -> (u16, String) {
        let mut r = self
            .http
            .get(format!("{}{path}", self.d.base))
            .bearer_auth(&self.admin);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The pruned-rows counter of `table` on `/metrics` (the recorder is shared by the tests of
    /// this binary, so it is at least what this test deleted).
    async fn pruned_metric(&self, table: &str) -> u64 {
        let (status, text) = self.text("metrics", None).await;
        assert_eq!(status, 200);
        let prefix = format!("tokenwarden_retention_pruned_total{{table=\"{table}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map_or(0, |v| v.trim().parse().unwrap())
    }
}

fn ids_of(v: &Value) -> Vec<i64> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

#[derive(Default)]
struct Seeded {
    old_events: Vec<i64>,
    recent_events: Vec<i64>,
    old_finished: Vec<String>,
    old_retrying: String,
    recent_delivered: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_history_goes_at_start_and_every_hour_and_recent_and_pending_stay() {
    let seeded = Arc::new(Mutex::new(Seeded::default()));
    let expired = pending("expired-state", Utc::now() - TimeDelta::days(1));
    let live = pending("live-state", Utc::now() + TimeDelta::days(3650));
    let w = world({
        let (seeded, expired, live) = (seeded.clone(), expired.clone(), live.clone());
        |s: Arc<dyn Store>, _, now| async move {
            let long_ago = now - TimeDelta::days(40);
            let mut out = Seeded::default();
            s.put_connection(&Connection {
                id: cid("c1"),
                provider: ProviderId::parse("snapchat").unwrap(),
                app: AppId::parse("demo").unwrap(),
                state: ConnectionState::Active,
                environment: Environment::Production,
                region: None,
                api_base: "https://adsapi.snapchat.com".into(),
                account_ids: vec![],
                account: None,
                end_user: None,
                scopes: vec![],
                problems: vec![],
                created_at: long_ago,
                updated_at: long_ago,
            })
            .await
            .unwrap();
            for (i, conn) in [Some("c1"), None, Some("c1")].into_iter().enumerate() {
                out.old_events
                    .push(event(&*s, conn, long_ago, &format!("forgotten refresh {i}")).await);
            }
            for (i, conn) in [Some("c1"), None].into_iter().enumerate() {
                let at = now - TimeDelta::hours(1);
                out.recent_events
                    .push(event(&*s, conn, at, &format!("recent refresh {i}")).await);
            }
            out.old_finished = vec![
                delivery(&*s, long_ago, "delivered").await,
                delivery(&*s, long_ago, "dead").await,
            ];
            out.old_retrying = delivery(&*s, long_ago, "retrying").await;
            out.recent_delivered = delivery(&*s, now - TimeDelta::hours(1), "delivered").await;
            s.put_pending(&expired).await.unwrap();
            s.put_pending(&live).await.unwrap();
            *seeded.lock().unwrap() = out;
        }
    })
    .await;
    let seeded = std::mem::take(&mut *seeded.lock().unwrap());
    let s = &*w.store;

    // The pass at start.
    until("the old events to go", || async {
        event_ids(s).await == seeded.recent_events
    })
    .await;
    until("the old finished deliveries to go", || async {
        s.list_deliveries("hook1", 100).await.unwrap().len() == 2
    })
    .await;
    for id in &seeded.old_finished {
        assert_eq!(s.get_delivery(id).await.unwrap(), None, "{id}");
    }
    let retrying = s.get_delivery(&seeded.old_retrying).await.unwrap().unwrap();
    assert_eq!(retrying.status, DeliveryStatus::Pending, "pending stays");
    assert!(
        s.get_delivery(&seeded.recent_delivered)
            .await
            .unwrap()
            .is_some()
    );
    until("the expired authorization to go", || async {
        pending_rows(&w.sql, &expired).await == 0
    })
    .await;
    assert_eq!(pending_rows(&w.sql, &live).await, 1);

    // The API's cursor still pages from an id that was pruned, and ids are not reused.
    let (status, all) = w.api("v1/events?after=0").await;
    assert_eq!(status, 200);
    assert_eq!(ids_of(&all), seeded.recent_events);
    let (_, from_pruned) = w
        .api(&format!("v1/events?after={}", seeded.old_events[1]))
        .await;
    assert_eq!(ids_of(&from_pruned), seeded.recent_events);
    let (_, of_c1) = w.api("v1/connections/c1/events").await;
    assert_eq!(ids_of(&of_c1), seeded.recent_events[..1]);
    let newer = event(s, None, w.clock.now(), "a refresh after the prune").await;
    assert!(newer > seeded.recent_events[1]);
    let (_, after_last) = w
        .api(&format!("v1/events?after={}", seeded.recent_events[1]))
        .await;
    assert_eq!(ids_of(&after_last), [newer]);

    // The dashboard shows what is left.
    let r = w
        .http
        .post(format!("{}login", w.d.base))
        .form(&[("secret", w.admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (status, _) = w.text("", Some(&cookie)).await;
    assert_eq!(status, 200, "the overview");
    let (status, page) = w.text("connections/c1", Some(&cookie)).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("recent refresh 0"), "{page}");
    assert!(!page.contains("forgotten refresh"), "{page}");

    // An hour of the daemon's time later, what has aged out since goes too.
    let aged = event(
        s,
        Some("c1"),
        w.clock.now() - TimeDelta::days(31),
        "aged out",
    )
    .await;
    let aged_delivery = delivery(s, w.clock.now() - TimeDelta::days(15), "delivered").await;
    until("the next pass", || async {
        !event_ids(s).await.contains(&aged)
            && s.get_delivery(&aged_delivery).await.unwrap().is_none()
    })
    .await;
    assert_eq!(
        event_ids(s).await,
        [seeded.recent_events.clone(), vec![newer]].concat()
    );
    assert!(
        s.get_delivery(&seeded.old_retrying)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        s.consume_pending(&live.state_hash, w.clock.now())
            .await
            .unwrap()
            .map(|p| p.state_hash),
        Some(live.state_hash.clone()),
        "a live authorization stays"
    );

    // Counted by table, and said in one line.
    assert!(w.pruned_metric("events").await >= 4);
    assert!(w.pruned_metric("webhook_deliveries").await >= 3);
    assert!(w.pruned_metric("pending_authorizations").await >= 1);
    let text = logged();
    assert!(
        text.lines().any(|l| l.contains("retention: deleted")
            && l.contains("events=3")
            && l.contains("webhook_deliveries=2")
            && l.contains("pending_authorizations=1")),
        "{text}"
    );
    for secret in [
        "whsec_retention_test_secret",
        "pkce-verifier-retention",
        &w.admin,
    ] {
        assert!(!text.contains(secret), "a secret reached the logs");
    }
    w.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_table_is_logged_and_retried_next_period_without_stopping_the_daemon() {
    let old = Arc::new(Mutex::new((0, String::new())));
    let w = world({
        let old = old.clone();
        |s: Arc<dyn Store>, sql: Arc<SqlStore>, now| async move {
            let long_ago = now - TimeDelta::days(40);
            let e = event(&*s, None, long_ago, "old").await;
            let d = delivery(&*s, long_ago, "dead").await;
            *old.lock().unwrap() = (e, d);
            // The events table is away when the daemon starts (as if locked or damaged).
            sqlx::query("ALTER TABLE events RENAME TO events_away")
                .execute(sql.pool())
                .await
                .unwrap();
        }
    })
    .await;
    let (old_event, old_delivery) = old.lock().unwrap().clone();
    let s = &*w.store;
    // The other tables are pruned all the same.
    until("the old delivery to go", || async {
        s.get_delivery(&old_delivery).await.unwrap().is_none()
    })
    .await;
    until("the failure to be logged", || async {
        logged().lines().any(|l| {
            l.contains("WARN")
                && l.contains("retention: could not delete old rows")
                && l.contains("table=\"events\"")
        })
    })
    .await;
    // Once the table is back, the next period prunes it, and the daemon served throughout.
    sqlx::query("ALTER TABLE events_away RENAME TO events")
        .execute(w.sql.pool())
        .await
        .unwrap();
    until("the old event to go", || async {
        !event_ids(s).await.contains(&old_event)
    })
    .await;
    let (status, _) = w.text("healthz", None).await;
    assert_eq!(status, 200);
    let (status, events) = w.api("v1/events?after=0").await;
    assert_eq!((status, ids_of(&events)), (200, vec![]));
    w.d.stop().await;
}
