//! SIGTERM, as systemd, Docker and Kubernetes send it, stops `serve` the way Ctrl-C does: the
//! refresh in flight finishes, its answer is stored and handed to the caller, the lease is
//! released, and the process exits 0 (it used to die on the spot with 143).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_refresh_in_flight_finish_and_store_its_answer() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args([
            "serve",
            "--sandbox",
            "--listen",
            "127.0.0.1:0",
            "--sandbox-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .env("NO_COLOR", "1")
        .env_remove("TOKENWARDEN_MASTER_KEY")
        .env_remove("TOKENWARDEN_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut base, mut sandbox, mut link) = (String::new(), String::new(), String::new());
    loop {
        let line = lines.next().expect("serve prints its banner").unwrap();
        if let Some(rest) = line.strip_prefix("tokenwarden is serving on ") {
            let mut words = rest.split_whitespace();
            base = words.next().unwrap().to_string();
            sandbox = rest
                .split("sandbox platforms at ")
                .nth(1)
                .unwrap()
                .split([',', ' '])
                .next()
                .unwrap()
                .to_string();
        }
        if line.contains("/connect/s/") && line.trim_end().ends_with("(tiktok demo)") {
            link = line.split_whitespace().next().unwrap().to_string();
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            let _ = out_tx.send(l);
        }
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Connect TikTok Login Kit (rotating refresh tokens, no reuse grace) with the banner's link.
    let landing = tokenwarden_testkit::consent::approve(&http, &link).await;
    assert_eq!(landing.response.status(), 303);
    let key = std::fs::read_to_string(data.path().join("admin.key")).unwrap();
    let key = key.trim().to_string();
    let before: serde_json::Value = http
        .get(format!("{base}v1/connections/tiktok-1/token"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let before = before["access_token"].as_str().unwrap().to_string();

    // The platform answers the refresh slowly; SIGTERM arrives while it is in flight.
    let r = http
        .post(format!("{sandbox}/_sandbox/faults/tiktok/latency"))
        .json(&serde_json::json!({"latency": "2s", "for": "1m"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let refresh = tokio::spawn({
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        async move {
            let r = http
                .post(format!("{base}v1/connections/tiktok-1/refresh"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    });
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        data.path().join("tokenwarden.db").display()
    ))
    .await
    .unwrap();
    let lease = || async {
        sqlx::query_as::<_, (Option<String>, i64)>(
            "SELECT lease_owner, version FROM token_sets WHERE connection_id = 'tiktok-1'",
        )
        .fetch_one(&db)
        .await
        .unwrap()
    };
    let (_, version_before) = lease().await;
    for attempt in 0.. {
        assert!(attempt < 2000, "the refresh never took its lease");
        if lease().await.0.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let (status, body) = refresh.await.unwrap();
    assert_eq!(status, 200, "the caller gets its answer: {body}");
    let after = body["access_token"].as_str().unwrap();
    assert_ne!(after, before);
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "exits 0 on SIGTERM: {exit:?}");
    let printed: Vec<String> = out_rx.try_iter().collect();
    assert!(
        printed.iter().any(|l| l.starts_with("Stopping (SIGTERM)")),
        "{printed:?}"
    );
    // Stored, one version on, and no lease left behind for the next start to wait out.
    let (owner, version) = lease().await;
    assert_eq!(version, version_before + 1);
    assert_eq!(owner, None);
}
