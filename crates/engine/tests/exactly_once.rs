//! The token service against the sandbox and a real store: exactly one refresh under a crowd,
//! across two replicas; refusals, outages and recovery turn into the right state.

use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;
use tokenwarden_core::clock::{Clock, FakeClock};
use tokenwarden_core::connection::{Connection, ConnectionState, Environment};
use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};
use tokenwarden_core::provider::Registry;
use tokenwarden_core::secret::Secret;
use tokenwarden_engine::{CacheConfig, CachedStore, TokenFailure, TokenService};
use tokenwarden_oauth::{AppCredentials, OAuthClient};
use tokenwarden_sandbox::{Sandbox, SandboxConfig};
use tokenwarden_store::{App, Keyring, Store};
use tokenwarden_testkit::consent::{self, Decision};

const REDIRECT: &str = "http://127.0.0.1:9/callback";

struct World {
    base: String,
    clock: FakeClock,
    http: reqwest::Client,
    registry: Arc<Registry>,
    replicas: Vec<Arc<TokenService>>,
    store: Arc<dyn Store>,
    /// The database and its keys, for another handle on it.
    url: String,
    keys: Keyring,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn world(replicas: usize) -> World {
    world_with(replicas, None).await
}

/// Each replica with its own caches in front of its own pool, when `cache` is given.
async fn world_with(replicas: usize, cache: Option<CacheConfig>) -> World {
    let clock = FakeClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let config = SandboxConfig {
        demo_redirect_uris: vec![REDIRECT.into()],
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::new(config, Arc::new(clock.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sandbox.serve(listener, async {
        let _ = stopped.await;
    }));
    let mut registry = Registry::builtin().unwrap();
    let ids: Vec<String> = registry.iter().map(|p| p.spec.id.to_string()).collect();
    for id in ids {
        let moved = registry
            .get(&id)
            .unwrap()
            .with_origin(&url::Url::parse(&format!("{base}/{id}")).unwrap());
        registry.replace(moved);
    }
    let registry = Arc::new(registry);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("tw.db").display());
    let keys = Keyring::generate("k1").unwrap();
    let mut services = Vec::new();
    let mut first_store = None;
    for r in 0..replicas {
        // Each replica has its own pool on the one database, as separate processes would.
        let store = tokenwarden_store::open(&url, keys.clone()).await.unwrap();
        first_store.get_or_insert_with(|| store.clone());
        let oauth = OAuthClient::new(Arc::new(clock.clone())).unwrap();
        let service = TokenService::new(
            store.clone(),
            oauth,
            registry.clone(),
            Arc::new(clock.clone()),
            format!("replica-{r}"),
        );
        services.push(Arc::new(match cache {
            Some(config) => {
                service.with_cache(CachedStore::new(store, Arc::new(clock.clone()), config))
            }
            None => service,
        }));
    }
    World {
        base,
        clock,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        registry,
        replicas: services,
        store: first_store.unwrap(),
        url,
        keys,
        _dir: dir,
        _stop: stop,
    }
}

impl World {
    fn creds(&self, provider: &str) -> AppCredentials {
        AppCredentials {
            client_id: format!("demo-{provider}"),
            client_secret: Secret::new(format!("demo-{provider}-secret")),
            redirect_uri: REDIRECT.into(),
            user_agent: None,
        }
    }

    /// Connects through the sandbox's scripted approval and stores the connection.
    async fn connect(&self, provider: &str, id: &str) -> ConnectionId {
        let p = self.registry.get(provider).unwrap();
        let oauth = OAuthClient::new(Arc::new(self.clock.clone())).unwrap();
        let url = oauth.authorize_url(p, &self.creds(provider), "st", &[], None);
        let back = consent::answer(&self.http, &url, Decision::Approve).await;
        let code = consent::code_in(&back, &p.spec.authorize.callback_code_params).unwrap();
        let grant = oauth
            .exchange_code(p, &self.creds(provider), &Secret::new(code), None)
            .await
            .unwrap();
        let now = self.clock.now();
        let pid = ProviderId::parse(provider).unwrap();
        let app_id = AppId::parse("demo").unwrap();
        let c = self.creds(provider);
        self.store
            .put_app(&App {
                provider: pid.clone(),
                id: app_id.clone(),
                client_id: c.client_id,
                client_secret: c.client_secret,
                redirect_uri: c.redirect_uri,
                developer_token: None,
                user_agent: None,
                refresh_token_ends_after: None,
                identity: None,
                environment: tokenwarden_core::connection::Environment::Production,
                region: None,
                created_at: now,
                updated_at: now,
            })
            .await
            .unwrap();
        let cid = ConnectionId::parse(id).unwrap();
        let conn = Connection {
            id: cid.clone(),
            provider: pid,
            app: app_id,
            state: ConnectionState::Active,
            environment: Environment::Production,
            region: None,
            api_base: p.spec.api.base_url.to_string(),
            account_ids: grant.account_ids.clone(),
            account: None,
            end_user: None,
            scopes: grant.tokens.scopes.clone(),
            problems: vec![],
            created_at: now,
            updated_at: now,
        };
        self.store.put_connection(&conn).await.unwrap();
        self.store
            .put_initial_tokens(&cid, &grant.tokens)
            .await
            .unwrap();
        cid
    }

    async fn refreshes(&self, provider: &str) -> u64 {
        let v: serde_json::Value = self
            .http
            .get(format!("{}/_sandbox/counters", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["providers"][provider]["token_calls_by_grant_type"]["refresh_token"]
            .as_u64()
            .unwrap_or(0)
    }

    async fn admin(&self, path: &str, body: serde_json::Value) {
        let r = self
            .http
            .post(format!("{}/_sandbox{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }

    async fn grant_id(&self, provider: &str) -> String {
        let v: serde_json::Value = self
            .http
            .get(format!("{}/_sandbox/grants?provider={provider}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["grants"].as_array().unwrap().last().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn state(&self, id: &ConnectionId) -> ConnectionState {
        self.store.get_connection(id).await.unwrap().unwrap().state
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_callers_on_an_expired_token_cause_one_refresh_across_two_replicas() {
    let w = world(2).await;
    let id = w.connect("tiktok", "creator-1").await;
    let before = w.store.get_tokens(&id).await.unwrap().unwrap();
    w.clock.advance(TimeDelta::hours(3));
    assert!(before.set.is_expired(w.now()));

    let mut tasks = Vec::new();
    for i in 0..200 {
        let svc = w.replicas[i % 2].clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move { svc.token(&id).await }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in futures::future::join_all(tasks).await {
        let issued = t
            .unwrap()
            .unwrap_or_else(|e| panic!("every caller gets a token: {e}"));
        assert!(!issued.tokens.is_expired(w.now()));
        tokens.insert(issued.tokens.access_token.expose().to_string());
    }
    assert_eq!(tokens.len(), 1, "everyone got the one refreshed token");
    assert_eq!(
        w.refreshes("tiktok").await,
        1,
        "exactly one refresh at the platform"
    );
    assert_eq!(w.state(&id).await, ConnectionState::Active);

    // A burst of 401s on the token that was already replaced causes no refresh ...
    let stale = before.set.access_token.expose().to_string();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let svc = w.replicas[i % 2].clone();
        let (id, stale) = (id.clone(), stale.clone());
        tasks.push(tokio::spawn(async move { svc.replace(&id, &stale).await }));
    }
    for t in futures::future::join_all(tasks).await {
        t.unwrap().unwrap();
    }
    assert_eq!(w.refreshes("tiktok").await, 1);

    // ... and a burst on the current token causes exactly one more.
    let current = tokens.into_iter().next().unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let svc = w.replicas[i % 2].clone();
        let (id, current) = (id.clone(), current.clone());
        tasks.push(tokio::spawn(
            async move { svc.replace(&id, &current).await },
        ));
    }
    for t in futures::future::join_all(tasks).await {
        let issued = t.unwrap().unwrap();
        assert_ne!(issued.tokens.access_token.expose(), current);
    }
    assert_eq!(
        w.refreshes("tiktok").await,
        2,
        "one refresh per rejected token"
    );
    // The rotated refresh token is the one stored, so the grant still works.
    w.clock.advance(TimeDelta::hours(3));
    w.replicas[0].token(&id).await.unwrap();
}

#[tokio::test]
async fn a_revoked_grant_is_reauth_required_at_once() {
    let w = world(1).await;
    let id = w.connect("snapchat", "snap-main").await;
    let grant = w.grant_id("snapchat").await;
    w.admin(&format!("/grants/{grant}/revoke"), serde_json::json!({}))
        .await;
    w.clock.advance(TimeDelta::hours(2));
    let e = w.replicas[0].token(&id).await.unwrap_err();
    assert!(matches!(e, TokenFailure::ReauthRequired { .. }), "{e:?}");
    assert_eq!(w.state(&id).await, ConnectionState::ReauthRequired);
    let events = w.store.list_events(Some(&id), 0, 100).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == "reauth_required")
            .count(),
        1
    );
    // Later callers are told at once, without another call to the platform.
    let before = w.refreshes("snapchat").await;
    assert!(matches!(
        w.replicas[0].token(&id).await,
        Err(TokenFailure::ReauthRequired { .. })
    ));
    assert_eq!(w.refreshes("snapchat").await, before);
}

#[tokio::test]
async fn an_outage_degrades_and_recovery_reactivates() {
    let w = world(1).await;
    let id = w.connect("snapchat", "snap-outage").await;
    w.clock.advance(TimeDelta::minutes(58));
    w.admin(
        "/faults/snapchat/outage",
        serde_json::json!({"for": "10m", "mode": "html", "status": 503}),
    )
    .await;
    // Inside the margin but not expired: the caller still gets the current token.
    let issued = w.replicas[0].token(&id).await.unwrap();
    assert!(!issued.refreshed);
    assert_eq!(w.state(&id).await, ConnectionState::Degraded);
    w.clock.advance(TimeDelta::minutes(3));
    let e = w.replicas[0].token(&id).await.unwrap_err();
    assert!(matches!(e, TokenFailure::Unavailable { .. }), "{e:?}");
    assert_eq!(
        w.state(&id).await,
        ConnectionState::Degraded,
        "a transient failure never marks it dead"
    );
    w.clock.advance(TimeDelta::minutes(10));
    let issued = w.replicas[0].token(&id).await.unwrap();
    assert!(issued.refreshed);
    let conn = w.store.get_connection(&id).await.unwrap().unwrap();
    assert_eq!(conn.state, ConnectionState::Active);
    assert!(conn.problems.is_empty(), "{:?}", conn.problems);
}

/// Issue 24 item 2: replica A's refresh stalls past its lease and then fails; meanwhile replica B
/// refreshed. A's failure concerns a token that is no longer the current one: it is not recorded
/// (no `degraded`, no `refresh_failing`, no `refresh_failed` event), and A's caller gets B's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_that_arrives_after_a_newer_success_changes_nothing() {
    let w = world(1).await;
    let id = w.connect("snapchat", "snap-stale").await;
    let a = Arc::new(
        TokenService::new(
            w.store.clone(),
            OAuthClient::new(Arc::new(w.clock.clone())).unwrap(),
            w.registry.clone(),
            Arc::new(w.clock.clone()),
            "replica-a",
        )
        .with_lease_ttl(std::time::Duration::from_millis(300)),
    );
    // A's call is slow and ends in an outage answer (both faults last one sandbox minute; the
    // answer is decided by the time the call arrived).
    w.admin(
        "/faults/snapchat/latency",
        serde_json::json!({"latency": "2s", "for": "1m"}),
    )
    .await;
    w.admin(
        "/faults/snapchat/outage",
        serde_json::json!({"for": "1m", "mode": "platform", "status": 503}),
    )
    .await;
    let stalled = tokio::spawn({
        let (a, id) = (a.clone(), id.clone());
        async move { a.refresh_now(&id).await }
    });
    let raw = tokenwarden_store::sql::SqlStore::open(&w.url, w.keys.clone())
        .await
        .unwrap();
    until_leased_by(&raw, &id, "replica-a").await;
    // A's lease is on the database's clock: let it lapse for real (A's call takes 2 s).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    w.clock.advance(TimeDelta::minutes(5));
    let b = w.replicas[0].refresh_now(&id).await.unwrap();
    assert!(b.refreshed, "B refreshed while A was stalled");
    let from_a = stalled.await.unwrap();
    let from_a = from_a.expect("A's caller gets the newer token");
    assert_eq!(from_a.version, b.version);
    let conn = w.store.get_connection(&id).await.unwrap().unwrap();
    assert_eq!(conn.state, ConnectionState::Active);
    assert!(conn.problems.is_empty(), "{:?}", conn.problems);
    let kinds: Vec<String> = w
        .store
        .list_events(Some(&id), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        !kinds.iter().any(|k| k == "refresh_failed"),
        "no failure event: {kinds:?}"
    );
}

/// Waits (bounded) until `owner` holds the refresh lease of `id`: its refresh is under way (what
/// follows the lease before the platform call only reads).
async fn until_leased_by(raw: &tokenwarden_store::sql::SqlStore, id: &ConnectionId, owner: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let holder: Option<String> =
            sqlx::query_scalar("SELECT lease_owner FROM token_sets WHERE connection_id = $1")
                .bind(id.as_str())
                .fetch_one(raw.pool())
                .await
                .unwrap();
        if holder.as_deref() == Some(owner) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{owner} never took the lease"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Sets `PRAGMA query_only` on every pooled connection of `store` (the pragma is per connection):
/// the database refuses writes as a read-only one does.
async fn refuse_writes(store: &tokenwarden_store::sql::SqlStore, on: bool) {
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = store.pool().acquire().await.unwrap();
        sqlx::query(&format!(
            "PRAGMA query_only = {}",
            if on { "ON" } else { "OFF" }
        ))
        .execute(&mut *c)
        .await
        .unwrap();
        held.push(c);
    }
}

/// Issue 24 item 1: the database stops taking writes while TikTok Login Kit (rotating refresh
/// tokens, no reuse grace) answers a refresh. The answer is held in memory and served, no second
/// refresh spends the old refresh token meanwhile, and it is stored once writes succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_the_database_cannot_store_is_held_served_and_stored_later() {
    let w = world(1).await;
    let id = w.connect("tiktok", "tt-full").await;
    let other = w.connect("tiktok", "tt-other").await;
    let raw = Arc::new(
        tokenwarden_store::sql::SqlStore::open(&w.url, w.keys.clone())
            .await
            .unwrap(),
    );
    let store: Arc<dyn Store> = raw.clone();
    let service = Arc::new(TokenService::new(
        store.clone(),
        OAuthClient::new(Arc::new(w.clock.clone())).unwrap(),
        w.registry.clone(),
        Arc::new(w.clock.clone()),
        "replica-full",
    ));
    let before = store.get_tokens(&id).await.unwrap().unwrap();
    let refreshes = w.refreshes("tiktok").await;
    // The platform answers slowly; the database stops taking writes while it does.
    w.admin(
        "/faults/tiktok/latency",
        serde_json::json!({"latency": "1500ms", "for": "1m"}),
    )
    .await;
    let first = tokio::spawn({
        let (service, id) = (service.clone(), id.clone());
        async move { service.refresh_now(&id).await }
    });
    until_leased_by(&raw, &id, "replica-full").await;
    refuse_writes(&raw, true).await;
    w.clock.advance(TimeDelta::minutes(2));
    let first = first.await.unwrap().expect("the new token is served");
    assert!(first.refreshed);
    assert_ne!(
        first.tokens.access_token.expose(),
        before.set.access_token.expose()
    );
    assert_eq!(w.refreshes("tiktok").await, refreshes + 1);
    // Nothing was stored yet; callers get the new token.
    assert_eq!(
        store.get_tokens(&id).await.unwrap().unwrap().version,
        before.version
    );
    let served = service.token(&id).await.unwrap();
    assert_eq!(
        served.tokens.access_token.expose(),
        first.tokens.access_token.expose()
    );
    // Forced refreshes, of this connection and of another, do not reach the platform.
    let again = service.refresh_now(&id).await.unwrap();
    assert_eq!(
        again.tokens.access_token.expose(),
        first.tokens.access_token.expose()
    );
    let e = service.refresh_now(&other).await.unwrap_err();
    assert!(
        matches!(e, TokenFailure::Unavailable { .. } | TokenFailure::Store(_)),
        "{e:?}"
    );
    assert_eq!(
        w.refreshes("tiktok").await,
        refreshes + 1,
        "no refresh token was spent while the database refused writes"
    );
    // Space is back: the held set is stored, and the next refresh uses its refresh token.
    refuse_writes(&raw, false).await;
    service.commit_held_sets().await;
    let stored = store.get_tokens(&id).await.unwrap().unwrap();
    assert_eq!(stored.version, before.version + 1);
    assert_eq!(
        stored.set.access_token.expose(),
        first.tokens.access_token.expose()
    );
    assert_eq!(
        stored
            .set
            .refresh_token
            .as_ref()
            .map(|t| t.expose().to_string()),
        first
            .tokens
            .refresh_token
            .as_ref()
            .map(|t| t.expose().to_string())
    );
    let next = service.refresh_now(&id).await.unwrap();
    assert!(next.refreshed, "the stored refresh token is the live one");
    assert_eq!(w.refreshes("tiktok").await, refreshes + 2);
    assert_eq!(w.state(&id).await, ConnectionState::Active);
    assert_eq!(w.state(&other).await, ConnectionState::Active);
}

#[tokio::test]
async fn a_rotated_app_secret_is_an_app_problem_not_a_dead_connection() {
    let w = world(1).await;
    let id = w.connect("snapchat", "snap-app").await;
    w.admin(
        "/apps/snapchat/demo-snapchat/rotate-secret",
        serde_json::json!({}),
    )
    .await;
    w.clock.advance(TimeDelta::hours(2));
    let e = w.replicas[0].token(&id).await.unwrap_err();
    assert!(matches!(e, TokenFailure::AppMisconfigured { .. }), "{e:?}");
    assert_ne!(w.state(&id).await, ConnectionState::ReauthRequired);
    let problems = w
        .store
        .app_problems(
            &ProviderId::parse("snapchat").unwrap(),
            &AppId::parse("demo").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(problems.len(), 1);
}

#[tokio::test]
async fn unrenewable_tokens_are_served_and_threads_waits_for_24_hours() {
    let w = world(1).await;
    let tb = w.connect("tiktok-business", "advertiser-1").await;
    w.clock.advance(TimeDelta::days(400));
    assert!(
        !w.replicas[0].token(&tb).await.unwrap().refreshed,
        "advertiser tokens live until revoked"
    );

    let th = w.connect("threads", "profile-1").await;
    let first = w.replicas[0].refresh_now(&th).await.unwrap();
    assert!(
        !first.refreshed,
        "a Threads token younger than 24 h is not refreshed"
    );
    w.clock.advance(TimeDelta::days(50));
    let later = w.replicas[0].token(&th).await.unwrap();
    assert!(later.refreshed, "past the margin it is");
    w.clock.advance(TimeDelta::days(50));
    let much_later = w.replicas[0].token(&th).await.unwrap();
    assert!(
        much_later.refreshed && !much_later.tokens.is_expired(w.now()),
        "valid beyond 60 days"
    );
    assert_eq!(
        w.refreshes("threads").await,
        0,
        "Threads refreshes are not refresh_token grants"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_caches_a_crowd_still_refreshes_once_and_a_refusal_is_never_served_from_memory() {
    let w = world_with(2, Some(CacheConfig::default())).await;
    let id = w.connect("tiktok", "cached-1").await;
    // Both replicas hold the token.
    let first = w.replicas[0].token(&id).await.unwrap();
    let same = w.replicas[1].token(&id).await.unwrap();
    assert_eq!(first.version, same.version);

    // Expired: a crowd over both replicas still causes exactly one refresh.
    w.clock.advance(TimeDelta::hours(3));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let svc = w.replicas[i % 2].clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move { svc.token(&id).await }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in futures::future::join_all(tasks).await {
        let issued = t.unwrap().unwrap();
        assert!(!issued.tokens.is_expired(w.now()));
        tokens.insert(issued.tokens.access_token.expose().to_string());
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(w.refreshes("tiktok").await, 1);

    // Both hold the new token again; the grant is revoked and replica 0 learns it on a refresh.
    w.replicas[0].token(&id).await.unwrap();
    w.replicas[1].token(&id).await.unwrap();
    let grant = w.grant_id("tiktok").await;
    w.admin(&format!("/grants/{grant}/revoke"), serde_json::json!({}))
        .await;
    let e = w.replicas[0].refresh_now(&id).await.unwrap_err();
    assert!(matches!(e, TokenFailure::ReauthRequired { .. }), "{e:?}");
    // The replica that wrote the refusal never serves the token again…
    assert!(matches!(
        w.replicas[0].token(&id).await,
        Err(TokenFailure::ReauthRequired { .. })
    ));
    // …the other serves what it holds until its entry ages out (one second), then refuses too.
    assert!(w.replicas[1].token(&id).await.is_ok(), "within the TTL");
    w.clock.advance(TimeDelta::seconds(1));
    assert!(matches!(
        w.replicas[1].token(&id).await,
        Err(TokenFailure::ReauthRequired { .. })
    ));
}

/// Who marked the current token version's refresh as sent, if anyone (the raw row).
async fn sent_by(raw: &tokenwarden_store::sql::SqlStore, id: &ConnectionId) -> Option<String> {
    sqlx::query_scalar("SELECT refresh_sent_by FROM token_sets WHERE connection_id = $1")
        .bind(id.as_str())
        .fetch_one(raw.pool())
        .await
        .unwrap()
}

/// Issue 14: replica A sends TikTok Login Kit's refresh (rotation, no reuse grace); the platform
/// rotates and its answer is late (A paused, or the network slow) past A's lease. Replica B takes
/// the lapsed lease and finds A's refresh unsettled: it does not spend the same refresh token (a
/// reuse the platform refuses, which would mark a live connection reauth_required) but waits, and
/// A's late answer is stored. The platform sees one refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_waits_for_another_holders_unsettled_refresh_instead_of_reusing_its_token() {
    let w = world(1).await;
    let id = w.connect("tiktok", "tt-late").await;
    let raw = tokenwarden_store::sql::SqlStore::open(&w.url, w.keys.clone())
        .await
        .unwrap();
    let replica = |name: &str| {
        Arc::new(
            TokenService::new(
                w.store.clone(),
                OAuthClient::new(Arc::new(w.clock.clone())).unwrap(),
                w.registry.clone(),
                Arc::new(w.clock.clone()),
                name,
            )
            .with_lease_ttl(std::time::Duration::from_millis(400)),
        )
    };
    let (a, b) = (replica("replica-a"), replica("replica-b"));
    let before = w.refreshes("tiktok").await;
    // The platform acts at once and answers 3 s later.
    w.admin(
        "/faults/tiktok/latency",
        serde_json::json!({"latency": "3s", "for": "1m", "after": true}),
    )
    .await;
    let first = tokio::spawn({
        let (a, id) = (a.clone(), id.clone());
        async move { a.refresh_now(&id).await }
    });
    // A marked its refresh sent before calling; then its lease lapses on the database clock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sent_by(&raw, &id).await.as_deref() != Some("replica-a") {
        assert!(std::time::Instant::now() < deadline, "A never sent");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    // B, forced (as the scheduler or a caller that saw the token refused would be), waits.
    let from_b = b.refresh_now(&id).await;
    assert!(
        matches!(from_b, Err(TokenFailure::Unavailable { .. })),
        "B must wait for A's answer, not refresh: {from_b:?}"
    );
    // A caller who just wants a token gets the one still valid meanwhile.
    let served = b.token(&id).await.expect("the current token still serves");
    assert!(!served.refreshed);
    assert_eq!(sent_by(&raw, &id).await.as_deref(), Some("replica-a"));
    let from_a = first.await.unwrap().expect("A's late answer is stored");
    assert!(from_a.refreshed);
    assert_eq!(w.refreshes("tiktok").await, before + 1, "one refresh");
    assert_eq!(w.state(&id).await, ConnectionState::Active);
    assert_eq!(sent_by(&raw, &id).await, None, "settled by the commit");
    let after = b.token(&id).await.unwrap();
    assert_eq!(after.version, from_a.version);
}

/// The other half: a holder that marked its refresh sent and then died before its request
/// reached the platform blocks nobody for ever. Once the patience is spent, the next holder sends
/// the same refresh token, which the platform accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_senders_mark_is_waited_for_only_until_the_patience_ends() {
    let w = world(1).await;
    let id = w.connect("tiktok", "tt-dead").await;
    let raw = tokenwarden_store::sql::SqlStore::open(&w.url, w.keys.clone())
        .await
        .unwrap();
    // A replica that took the lease, marked the send and was killed before the call left.
    let gone = w
        .store
        .acquire_refresh_lease(&id, "replica-gone", std::time::Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    assert!(w.store.mark_refresh_sent(&gone).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let b = TokenService::new(
        w.store.clone(),
        OAuthClient::new(Arc::new(w.clock.clone())).unwrap(),
        w.registry.clone(),
        Arc::new(w.clock.clone()),
        "replica-b",
    )
    .with_sent_patience(std::time::Duration::from_millis(1500));
    let before = w.refreshes("tiktok").await;
    assert!(matches!(
        b.refresh_now(&id).await,
        Err(TokenFailure::Unavailable { .. })
    ));
    assert_eq!(w.refreshes("tiktok").await, before, "waited, did not call");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let issued = b
        .refresh_now(&id)
        .await
        .expect("refreshed once the patience ended");
    assert!(issued.refreshed);
    assert_eq!(w.refreshes("tiktok").await, before + 1);
    assert_eq!(w.state(&id).await, ConnectionState::Active);
    assert_eq!(sent_by(&raw, &id).await, None);
}
