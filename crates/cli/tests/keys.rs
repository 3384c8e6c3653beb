//! `tokenwarden keys rotate` re-encrypts everything under a new key, and the key file keeps
//! opening the data afterwards; a missing key is a clear error.

#![allow(
    clippy::disallowed_methods,
    reason = "tests and benchmarks may read the wall clock"
)]
use std::process::Command;
use tokenwarden_core::id::{AppId, ProviderId};
use tokenwarden_core::secret::Secret;
use tokenwarden_store::{App, Keyring};

fn tokenwarden(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("TOKENWARDEN_MASTER_KEY")
        .env_remove("TOKENWARDEN_DATA_DIR")
        .env_remove("TOKENWARDEN_DATABASE_URL")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_adds_a_key_and_reencrypts_everything() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("master.key");
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("tokenwarden.db").display()
    );
    let (ring, _) = Keyring::from_env_or_file(None, &key_file, true).unwrap();
    let old_id = ring.current_id().to_string();
    {
        let store = tokenwarden_store::open(&db, ring).await.unwrap();
        let now = chrono::Utc::now();
        let app = App {
            provider: ProviderId::parse("snapchat").unwrap(),
            id: AppId::parse("demo").unwrap(),
            client_id: "cid".into(),
            client_secret: Secret::new("the-client-secret-value"),
            redirect_uri: "http://127.0.0.1:1/callback/snapchat".into(),
            developer_token: Some(Secret::new("the-developer-token-value")),
            user_agent: None,
            refresh_token_ends_after: None,
            identity: None,
            environment: tokenwarden_core::connection::Environment::Production,
            region: None,
            created_at: now,
            updated_at: now,
        };
        store.put_app(&app).await.unwrap();
    }
    let out = tokenwarden(&[
        "keys",
        "rotate",
        "--no-wait",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("Re-encrypted"), "{said}");
    assert!(!said.contains("the-client-secret-value"));
    assert!(!said.contains("the-developer-token-value"));

    let (after, _) = Keyring::from_env_or_file(None, &key_file, false).unwrap();
    assert_ne!(after.current_id(), old_id, "a new current key");
    assert!(after.has(&old_id), "the old key stays in the file");
    let store = tokenwarden_store::open(&db, after.clone()).await.unwrap();
    let app = store
        .get_app(
            &ProviderId::parse("snapchat").unwrap(),
            &AppId::parse("demo").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(app.client_secret.expose(), "the-client-secret-value");
    assert_eq!(
        app.developer_token.as_ref().map(Secret::expose),
        Some("the-developer-token-value"),
        "the developer token is re-encrypted and still opens"
    );
    let status = store.key_status().await.unwrap();
    assert!(!status.is_empty());
    drop(store);

    // `keys status` is a table a person reads: a header, one row per key, no Rust structs.
    let out = tokenwarden(&["keys", "status", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "KEY",
            "STATE",
            "IN",
            "KEY",
            "FILE",
            "ENCRYPTIONS",
            "OF",
            "LIMIT"
        ],
        "{table}"
    );
    let row = |id: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("a row for {id}: {table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let new_row = row(after.current_id());
    assert_eq!(&new_row[1..3], ["current", "yes"], "{table}");
    assert!(new_row[3].parse::<u64>().unwrap() >= 1, "{table}");
    assert!(new_row[4].ends_with('%'), "{table}");
    let old_row = row(&old_id);
    assert_eq!(old_row[2], "yes", "{table}");
    assert!(matches!(old_row[1], "retired" | "in"), "{table}");
    for debug in ["KeyStatus", "{", "key_id:"] {
        assert!(!table.contains(debug), "{table}");
    }
}

#[test]
fn a_missing_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokenwarden(&[
        "keys",
        "rotate",
        "--no-wait",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no master key"), "{err}");
}
