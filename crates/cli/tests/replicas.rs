//! Three `tokenwarden serve` processes on one PostgreSQL database, with rotating refresh tokens
//! at the (sandbox) platform: 300 concurrent token requests for an expired token, spread over the
//! three, cause exactly one refresh at the platform, and every caller gets the same working token;
//! proxied calls on all three share one rate budget, so the platform never sees more than its
//! limit in a second; a browser signed in on one is signed in on all; a refusal is alerted once, whichever replica watches, even after the
//! watching replica dies and another takes the watch over.
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/postgres` or `TOKENWARDEN_TEST_DATABASE_URL`.
//! It must be reachable; `scripts/test` starts it.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
use sqlx::Connection as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use tokenwarden_core::id::ConnectionId;
use tokenwarden_store::Keyring;

struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Database {
    admin: String,
    name: String,
    url: String,
}

impl Database {
    async fn fresh() -> Database {
        let admin = std::env::var("TOKENWARDEN_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is not reachable at {admin} ({e}). Start it with: \
                 pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start \
                 (scripts/test does this), or set TOKENWARDEN_TEST_DATABASE_URL."
                )
            });
        let name = format!("tw_replicas_{}", rand::random::<u64>() & 0xffff_ffff_ffff);
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        Database { admin, name, url }
    }

    async fn drop_db(&self) {
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut c)
            .await;
        }
    }
}

fn spawn(config: &Path, data: &Path, database: &str, key: &str) -> Replica {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(["--database", database])
        .env("TOKENWARDEN_MASTER_KEY", key)
        .env("NO_COLOR", "1")
        .env_remove("TOKENWARDEN_PROVIDERS_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("serve prints its address").unwrap();
        if let Some(rest) = line.strip_prefix("tokenwarden is serving on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Replica { child, base }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_on_one_postgres_refresh_an_expired_token_once() {
    // The platform, with rotating refresh tokens and no reuse grace: a second refresh with the
    // consumed refresh token would be refused and the connection would die.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sb = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = tokenwarden_sandbox::Sandbox::new(
        tokenwarden_sandbox::SandboxConfig::default(),
        Arc::new(tokenwarden_core::clock::SystemClock),
    );
    tokio::spawn(sandbox.serve(listener, std::future::pending()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(format!("{sb}/_sandbox/faults/snapchat/rotation"))
        .json(&serde_json::json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    let sink = AlertSink::start().await;
    let db = Database::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let providers = dir.path().join("providers");
    std::fs::create_dir(&providers).unwrap();
    let shipped = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["providers", "show", "snapchat"])
        .output()
        .unwrap();
    let moved = String::from_utf8(shipped.stdout)
        .unwrap()
        .replace("https://accounts.snapchat.com", &format!("{sb}/snapchat"))
        .replace("https://adsapi.snapchat.com", &format!("{sb}/snapchat"));
    std::fs::write(providers.join("snapchat.toml"), moved).unwrap();
    std::fs::write(dir.path().join("secret"), "demo-snapchat-secret\n").unwrap();
    let keys = Keyring::generate("k1").unwrap();
    let key_text = keys.to_file_text().to_string();
    let config = |redirect: Option<&str>| {
        let path = dir.path().join(format!("tw-{}.toml", redirect.is_some()));
        let mut text = format!(
            "providers_dir = {:?}\n# The emulator is plain http on loopback: allowed explicitly.\nallow_insecure_endpoints = true\n\n[[apps]]\nprovider = \"snapchat\"\nid = \"main\"\nclient_id = \"demo-snapchat\"\nclient_secret_file = {:?}\n",
            providers.display().to_string(),
            dir.path().join("secret").display().to_string()
        );
        if let Some(r) = redirect {
            text.push_str(&format!("redirect_uri = {r:?}\n"));
        }
        text.push_str(&format!(
            "\n[alerts]\nslack_webhook_url = {:?}\npoll_seconds = 1\n",
            sink.url
        ));
        std::fs::write(&path, text).unwrap();
        path
    };

    // The first replica's callback is the app's redirect URI; the others share it.
    let first = spawn(
        &config(None),
        &dir.path().join("data-0"),
        &db.url,
        &key_text,
    );
    let callback = format!("{}callback/snapchat", first.base);
    let shared = config(Some(&callback));
    let replicas = [
        first,
        spawn(&shared, &dir.path().join("data-1"), &db.url, &key_text),
        spawn(&shared, &dir.path().join("data-2"), &db.url, &key_text),
    ];
    let admin_key = std::fs::read_to_string(dir.path().join("data-0/admin.key"))
        .unwrap()
        .trim()
        .to_string();

    // Connect through the first replica.
    let r = http
        .post(format!(
            "{sb}/_sandbox/apps/snapchat/demo-snapchat/redirect-uris"
        ))
        .json(&serde_json::json!({ "redirect_uri": callback }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let minted: serde_json::Value = http
        .post(format!("{}v1/connect-sessions", replicas[0].base))
        .bearer_auth(admin_key.trim())
        .json(
            &serde_json::json!({"provider": "snapchat", "connection_id": "shared", "app": "main"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = minted["url"].as_str().expect("a connect session");
    let landing = tokenwarden_testkit::consent::approve(&http, link).await;
    assert_eq!(landing.response.status(), 303, "the callback completes");

    // The token expires (rewritten in the shared database: the platform's token still works,
    // so only a refresh can tell whether the replicas agree).
    let store = tokenwarden_store::open(&db.url, keys.clone())
        .await
        .unwrap();
    let id = ConnectionId::parse("shared").unwrap();
    let mut set = store.get_tokens(&id).await.unwrap().unwrap().set;
    let old_token = set.access_token.expose().to_string();
    set.expires_at = Some(chrono::Utc::now() - chrono::TimeDelta::minutes(1));
    store.put_initial_tokens(&id, &set).await.unwrap();
    let refreshes = || {
        let http = http.clone();
        let sb = sb.clone();
        async move {
            let v: serde_json::Value = http
                .get(format!("{sb}/_sandbox/counters"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["providers"]["snapchat"]["token_calls_by_grant_type"]["refresh_token"]
                .as_u64()
                .unwrap_or(0)
        }
    };
    assert_eq!(refreshes().await, 0);

    let calls = (0..300).map(|i| {
        let http = http.clone();
        let url = format!("{}v1/connections/shared/token", replicas[i % 3].base);
        let key = admin_key.clone();
        async move {
            let r = http.get(url).bearer_auth(key).send().await.unwrap();
            let status = r.status();
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(status, 200, "{v}");
            v["access_token"].as_str().unwrap().to_string()
        }
    });
    let tokens: std::collections::HashSet<String> =
        futures::future::join_all(calls).await.into_iter().collect();
    assert_eq!(tokens.len(), 1, "every caller got the one new token");
    let token = tokens.into_iter().next().unwrap();
    assert_ne!(token, old_token);
    assert_eq!(refreshes().await, 1, "exactly one refresh at the platform");
    // The token works at the platform, and the connection is healthy everywhere.
    let me = http
        .get(format!("{sb}/snapchat/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    for r in &replicas {
        let v: serde_json::Value = http
            .get(format!("{}v1/connections/shared", r.base))
            .bearer_auth(&admin_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["state"], "active", "{v}");
    }

    // Shared pacing: callers on all three replicas at once, four times what Snapchat allows per
    // token in a second. The replicas book their calls in one schedule on the database's clock,
    // so the platform sees no more than its limit in any second and throttles none of them
    // (paced apart, each replica would send its own 8 a second: 24 together).
    let r = http
        .post(format!("{sb}/_sandbox/counters/reset"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let calls = (0..40).map(|i| {
        let http = http.clone();
        let url = format!("{}proxy/shared/me", replicas[i % 3].base);
        let key = admin_key.clone();
        async move {
            let r = http
                .get(url)
                .bearer_auth(key)
                .header("tokenwarden-budget-ms", "120000")
                .send()
                .await
                .unwrap();
            let status = r.status();
            let kind = r.headers()["tokenwarden-kind"]
                .to_str()
                .unwrap()
                .to_string();
            (status, kind)
        }
    });
    for (status, kind) in futures::future::join_all(calls).await {
        assert_eq!((status.as_u16(), kind.as_str()), (200, "ok"));
    }
    let counters: serde_json::Value = http
        .get(format!("{sb}/_sandbox/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let snap = &counters["providers"]["snapchat"];
    assert_eq!(snap["api_calls"], 40, "{snap}");
    assert_eq!(snap["rate_limited_sent"], 0, "{snap}");
    let busiest = snap["busiest_second_api_calls"].as_u64().unwrap();
    assert!(
        busiest <= 10,
        "{busiest} calls in one second where Snapchat allows 10 per token: {snap}"
    );

    // A browser signed in on one replica is signed in on every replica (the session is in the
    // database).
    let origin = replicas[0].base.trim_end_matches('/').to_string();
    let r = http
        .post(format!("{}login", replicas[0].base))
        .header("origin", &origin)
        .form(&[("secret", admin_key.as_str()), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "signed in");
    let session = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    for r in &replicas {
        let page = http
            .get(format!("{}connections", r.base))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(
            page.status(),
            200,
            "{} serves the signed-in browser",
            r.base
        );
    }

    // One alert per condition: the platform revokes the grant and the next refresh is refused.
    // Every replica runs a notifier; one watches the database at a time and the alert is claimed
    // there, so the sink gets it once.
    let grants: serde_json::Value = http
        .get(format!("{sb}/_sandbox/grants?provider=snapchat"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let grant = grants["grants"].as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = http
        .post(format!("{sb}/_sandbox/grants/{grant}/revoke"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = http
        .post(format!("{}v1/connections/shared/refresh", replicas[1].base))
        .bearer_auth(&admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "the refusal is recorded");
    sink.wait_for(1).await;
    // The replicas that may hold the notifier's lease die; the last one takes the watch over
    // (its reading of the history starts before the refusal) and must not alert it again.
    let mut replicas = Vec::from(replicas);
    let last = replicas.pop().unwrap();
    drop(replicas);
    let last_owner = format!("-{}", last.child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let holder: Option<String> =
            sqlx::query_scalar("SELECT holder FROM job_leases WHERE name = 'alerts'")
                .fetch_optional(&mut sqlx::PgConnection::connect(&db.url).await.unwrap())
                .await
                .unwrap();
        if holder.is_some_and(|h| h.ends_with(&last_owner)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the surviving replica never took the notifier over"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // A few of its passes.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let texts = sink.texts();
    assert_eq!(texts.len(), 1, "one alert for one refusal: {texts:?}");
    assert!(
        texts[0].contains("`shared`") && texts[0].contains("needs re-authorization"),
        "{}",
        texts[0]
    );

    drop(last);
    drop(store);
    db.drop_db().await;
}

/// A Slack-compatible incoming webhook on loopback that keeps what it is sent.
struct AlertSink {
    url: String,
    got: Arc<std::sync::Mutex<Vec<String>>>,
}

impl AlertSink {
    async fn start() -> AlertSink {
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::Json<serde_json::Value>| {
                let keep = keep.clone();
                async move {
                    keep.lock()
                        .unwrap()
                        .push(body["text"].as_str().unwrap_or_default().to_string());
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        AlertSink { url, got }
    }

    fn texts(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.texts().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "no alert arrived: {:?}",
                self.texts()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
