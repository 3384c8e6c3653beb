//! Secrets never reach a log line: the whole connect → token → refresh → failure story runs with
//! every crate logging at TRACE into a buffer, which must contain no access token, refresh token,
//! client secret or API key.

use chrono::{DateTime, TimeDelta};
use std::io::Write;
use std::sync::{Arc, Mutex};
use tokenwarden_core::clock::{Clock, FakeClock};
use tokenwarden_core::provider::Registry;
use tokenwarden_server::daemon::Daemon;
use tokenwarden_store::{ApiKeyRole, Keyring};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_is_logged_at_any_level() {
    let logs = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    // Global, not thread-local: the server's handlers run on the runtime's worker threads.
    tracing::subscriber::set_global_default(subscriber).expect("the only test in this binary");

    let clock = FakeClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("tw.db").display());
    let store = tokenwarden_store::open(&url, Keyring::generate("k1").unwrap())
        .await
        .unwrap();
    let (_, key) = store
        .create_api_key(ApiKeyRole::Admin, "test", clock.now())
        .await
        .unwrap();
    let key = key.expose().to_string();
    let d = Daemon {
        listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        sandbox_listener: Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
        apps: vec![],
        store,
        providers: Registry::builtin().unwrap(),
        clock: Arc::new(clock.clone()),
        time_scale: 1.0,
        public_url: None,
        owner: "logs".into(),
        key_file: None,
        probe_poll: Some(std::time::Duration::from_secs(3600)),
    }
    .start()
    .await
    .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut seen: Vec<String> = vec![key.clone()];
    for p in ["snapchat", "tiktok", "tiktok-business", "threads", "meta"] {
        seen.push(format!("demo-{p}-secret"));
        let r = http
            .get(format!("{}connect/{p}?connection_id=logs-{p}", d.base))
            .send()
            .await
            .unwrap();
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let authorize = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let mut form: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
        form.push(("decision".into(), "approve".into()));
        let r = http
            .post(format!(
                "{}{}",
                authorize.origin().ascii_serialization(),
                authorize.path()
            ))
            .form(&form)
            .send()
            .await
            .unwrap();
        let callback = r.headers()["location"].to_str().unwrap().to_string();
        http.get(&callback)
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        // The code and state are secrets of the flow too.
        let cb = url::Url::parse(&callback).unwrap();
        seen.extend(
            cb.query_pairs()
                .filter(|(k, _)| k != "iss")
                .map(|(_, v)| v.into_owned()),
        );
    }
    for _ in 0..3 {
        clock.advance(TimeDelta::hours(3));
        for p in ["snapchat", "tiktok"] {
            let v: serde_json::Value = http
                .get(format!("{}v1/connections/logs-{p}/token", d.base))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            seen.push(v["access_token"].as_str().unwrap().to_string());
        }
    }
    // Failures log too: an outage during refresh, then a revoked grant.
    let sandbox = d.sandbox_base.clone().unwrap();
    http.post(format!("{sandbox}/_sandbox/faults/snapchat/outage"))
        .json(&serde_json::json!({"for": "10m"}))
        .send()
        .await
        .unwrap();
    clock.advance(TimeDelta::hours(3));
    http.get(format!("{}v1/connections/logs-snapchat/token", d.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let grants: serde_json::Value = http
        .get(format!("{sandbox}/_sandbox/grants?provider=tiktok"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let grant = grants["grants"][0]["id"].as_str().unwrap().to_string();
    http.post(format!("{sandbox}/_sandbox/grants/{grant}/revoke"))
        .send()
        .await
        .unwrap();
    clock.advance(TimeDelta::hours(3));
    http.get(format!("{}v1/connections/logs-tiktok/token", d.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    // Every stored token set, refresh tokens included.
    for p in ["snapchat", "tiktok", "tiktok-business", "threads", "meta"] {
        if let Some(t) = d
            .state
            .store
            .get_tokens(&format!("logs-{p}").parse().unwrap())
            .await
            .unwrap()
        {
            seen.push(t.set.access_token.expose().to_string());
            if let Some(r) = &t.set.refresh_token {
                seen.push(r.expose().to_string());
            }
        }
    }
    d.stop().await;

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        text.len() > 1000,
        "the scenario logged something at trace level ({} bytes)",
        text.len()
    );
    for secret in seen.iter().filter(|s| s.len() >= 8) {
        assert!(
            !text.contains(secret.as_str()),
            "a secret reached the logs: …{}",
            &secret[secret.len() - 4..]
        );
    }
}
