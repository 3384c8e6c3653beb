//! `tokenwarden api-keys …` and `tokenwarden webhooks …` against `serve --sandbox`, through the
//! REST API like `connections` (issue 15, item 5).

mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use support::Daemon;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The key's public id (`tw_<id>_<secret>`).
fn key_id(key: &str) -> &str {
    key.strip_prefix("tw_").unwrap().split('_').next().unwrap()
}

fn status_with(d: &Daemon, key: &str, path: &str) -> u16 {
    reqwest::blocking::Client::new()
        .get(format!("{}{path}", d.base))
        .bearer_auth(key)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn api_keys_list_create_and_revoke() {
    let data = tempfile::tempdir().unwrap();
    let d = Daemon::start(data.path());
    let dir = data.path();
    let admin = std::fs::read_to_string(dir.join("admin.key")).unwrap();
    let admin = admin.trim();

    let list = d.ok(dir, &["api-keys"]);
    assert!(
        list.contains(&format!("{} ", key_id(admin))) && list.contains("(this key)"),
        "{list}"
    );
    assert!(!list.contains(admin), "list never shows a key");

    let out = d.cli(
        dir,
        &[
            "api-keys",
            "create",
            "--role",
            "token_reader",
            "--label",
            "reporting job",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let reader = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        reader.starts_with("tw_"),
        "only the key on stdout: {reader}"
    );
    assert!(stderr(&out).contains("not shown again"));
    assert_eq!(status_with(&d, &reader, "v1/connections"), 403, "a reader");
    assert_eq!(
        status_with(&d, &reader, "v1/connections/nope/token"),
        404,
        "a live key"
    );

    let v: serde_json::Value = serde_json::from_str(&d.ok(dir, &["api-keys", "--json"])).unwrap();
    let mine = v["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key_id(&reader))
        .expect("the new key is listed");
    assert_eq!(mine["role"], "token_reader");
    assert_eq!(mine["label"], "reporting job");
    assert!(mine["revoked_at"].is_null());
    assert!(!v.to_string().contains(&reader));

    let said = d.ok(dir, &["api-keys", "revoke", key_id(&reader)]);
    assert!(
        said.starts_with(&format!("Revoked {}", key_id(&reader))),
        "{said}"
    );
    assert_eq!(
        status_with(&d, &reader, "v1/connections/nope/token"),
        401,
        "refused at once"
    );
    // Again: the same answer, not an error.
    let again = d.ok(dir, &["api-keys", "revoke", key_id(&reader)]);
    assert_eq!(again, said);

    let out = d.cli(dir, &["api-keys", "revoke", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not_found"), "{}", stderr(&out));
    let out = d.cli(dir, &["api-keys", "revoke", "../connections"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not an API key id"),
        "{}",
        stderr(&out)
    );

    // The only admin key stays: without it nobody could manage the daemon.
    let out = d.cli(dir, &["api-keys", "revoke", key_id(admin)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("last_admin_key"), "{}", stderr(&out));
    assert_eq!(status_with(&d, admin, "v1/connections"), 200);

    // With a second admin key, the first can go.
    let second = d.ok(dir, &["api-keys", "create", "--role", "admin"]);
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["api-keys", "revoke", key_id(admin), "--url", &d.base])
        .args(["--api-key", &second])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status_with(&d, admin, "v1/connections"), 401);

    // A token-reader key may not manage keys.
    let out = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["api-keys", "--url", &d.base, "--api-key", &reader])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    d.stop();
}

/// A webhook receiver on loopback: answers 200 and hands each body over.
fn receiver() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&body).to_string());
        }
    });
    (url, rx)
}

fn deliveries(d: &Daemon, dir: &Path, id: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&d.ok(dir, &["webhooks", "deliveries", id, "--json"])).unwrap();
    v["deliveries"].as_array().cloned().unwrap_or_default()
}

#[test]
fn webhooks_list_create_deliveries_and_delete() {
    let data = tempfile::tempdir().unwrap();
    let d = Daemon::start(data.path());
    let dir = data.path();
    assert!(d.ok(dir, &["webhooks"]).starts_with("No webhook endpoints"));

    let (url, bodies) = receiver();
    let out = d.cli(dir, &["webhooks", "create", &url]);
    assert!(out.status.success(), "{}", stderr(&out));
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        secret.starts_with("whsec_"),
        "only the secret on stdout: {secret}"
    );
    let note = stderr(&out);
    let id = note
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(',')
        .to_string();
    assert!(id.starts_with("wh_"), "{note}");

    let list = d.ok(dir, &["webhooks", "list"]);
    assert!(
        list.contains(&id) && list.contains(&url) && list.contains("yes"),
        "{list}"
    );
    assert!(!list.contains(&secret), "list never shows a secret");
    assert!(
        d.ok(dir, &["webhooks", "deliveries", &id])
            .starts_with("No deliveries")
    );

    // A state change: the grant is revoked at the platform and the next refresh finds out.
    d.connect("snapchat");
    let http = reqwest::blocking::Client::new();
    let grants: serde_json::Value = http
        .get(format!("{}/_sandbox/grants?provider=snapchat", d.sandbox))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let grant = grants["grants"][0]["id"].as_str().unwrap().to_string();
    let r = http
        .post(format!("{}/_sandbox/grants/{grant}/revoke", d.sandbox))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let token = d.ok(dir, &["token", "snapchat-1"]);
    assert_eq!(
        d.cli(dir, &["connections", "refresh", "snapchat-1"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(d.state(dir, "snapchat-1"), "reauth_required");

    let body = bodies
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the receiver is called");
    assert!(
        body.contains("reauth_required") || body.contains("state_changed"),
        "{body}"
    );
    assert!(!body.contains(&token));
    // The log says so once the daemon has recorded the answer.
    let mut delivered = Vec::new();
    for _ in 0..600 {
        delivered = deliveries(&d, dir, &id);
        if delivered.iter().any(|x| x["status"] == "delivered") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        delivered.iter().any(|x| x["status"] == "delivered"),
        "{delivered:?}"
    );
    let table = d.ok(dir, &["webhooks", "deliveries", &id, "--limit", "5"]);
    assert!(
        table.contains("delivered") && table.contains("STATUS"),
        "{table}"
    );

    let out = d.cli(dir, &["webhooks", "deliveries", &id, "--limit", "0"]);
    assert!(
        !out.status.success(),
        "a limit out of range is refused by name"
    );
    assert!(stderr(&out).contains("--limit"));

    assert_eq!(
        d.ok(dir, &["webhooks", "delete", &id]),
        format!("Deleted {id}.")
    );
    let out = d.cli(dir, &["webhooks", "delete", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not_found"));
    let out = d.cli(dir, &["webhooks", "create", "ftp://example.com/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bad_webhook_url"), "{}", stderr(&out));
    d.stop();
}
