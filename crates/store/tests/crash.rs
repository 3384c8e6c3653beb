//! Crash test (hardening rule 13): a child process commits token sets in a loop and prints each
//! acknowledged version; the parent SIGKILLs it at random moments, reopens the database and checks
//! that every acknowledged write is there and that the database opens cleanly. The child is this
//! same test binary, re-executed with `CHILD_ENV` set, running the ignored `crash_child_entry`.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;
use tokenwarden_store::Keyring;

const CHILD_ENV: &str = "TOKENWARDEN_CRASH_CHILD_URL";
const KEY_ENV: &str = "TOKENWARDEN_CRASH_CHILD_KEYFILE";

/// The child's body; ignored so that a normal run does not count it as a passing test.
#[test]
#[ignore = "run only as the child process of the crash test"]
fn crash_child_entry() {
    let url = std::env::var(CHILD_ENV).expect("child mode needs the database URL");
    let key_file = std::env::var(KEY_ENV).expect("child mode needs the key file");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let (keys, _) =
            Keyring::from_env_or_file(None, std::path::Path::new(&key_file), false).unwrap();
        let store = tokenwarden_store::open(&url, keys).await.unwrap();
        let c = cid("crashy");
        if store.get_connection(&c).await.unwrap().is_none() {
            store.put_connection(&connection("crashy")).await.unwrap();
            store
                .put_initial_tokens(&c, &tokens("at-initial", Some("rt")))
                .await
                .unwrap();
        }
        let pid = std::process::id();
        for i in 0u64.. {
            // Alternate the two write paths: a lease + fenced commit, and a re-authorization.
            let set = tokens(&format!("acked-{pid}-{i}"), Some(&format!("rt-{pid}-{i}")));
            let stored = if i % 5 == 4 {
                store.put_initial_tokens(&c, &set).await.unwrap()
            } else {
                // A stable owner: a restarted child takes back the lease its killed predecessor held,
                // as a restarted replica with the same id would.
                let owner = "crash-child";
                let lease = store
                    .acquire_refresh_lease(&c, owner, Duration::from_secs(30))
                    .await
                    .unwrap()
                    .expect("only this child writes");
                store.commit_refresh(&lease, &set, None).await.unwrap()
            };
            // Printed only after the write returned: this line is the acknowledgement.
            println!("ACK {} acked-{pid}-{i}", stored.version);
        }
    });
}

async fn crash_rounds(db: &Db, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("master.key");
    db.keys.write_file(&key_file).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut total_acks = 0usize;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &db.url)
            .env(KEY_ENV, &key_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Kill at a random moment after the first acknowledged write, however long the child
        // took to start on a busy machine.
        let stdout = child.stdout.take().unwrap();
        let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            let mut first = Some(first_tx);
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                if line.starts_with("ACK ")
                    && let Some(tx) = first.take()
                {
                    let _ = tx.send(());
                }
                out.push_str(&line);
                out.push('\n');
            }
            out
        });
        let started = first_rx.recv_timeout(Duration::from_secs(120)).is_ok();
        if started {
            tokio::time::sleep(Duration::from_millis(rand::random_range(50..600))).await;
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let out = reader.join().unwrap();
        let acks: Vec<(i64, String)> = out
            .lines()
            .filter_map(|l| l.strip_prefix("ACK "))
            .map(|l| {
                let (v, tok) = l.split_once(' ').unwrap();
                (v.parse().unwrap(), tok.to_string())
            })
            .collect();
        assert!(
            !acks.is_empty(),
            "round {round}: the child acknowledged no write before it was killed"
        );
        total_acks += acks.len();
        eprintln!(
            "{:?} crash round {round}: {} acknowledged writes before SIGKILL",
            db.kind,
            acks.len()
        );

        let store = db.open().await; // opens cleanly: migrations, key check
        let stored = store.get_tokens(&cid("crashy")).await.unwrap();
        if let Some((v, tok)) = acks.last() {
            let stored = stored.expect("acknowledged token set is there");
            assert!(
                stored.version >= *v,
                "round {round}: acknowledged version {v} lost; database has {}",
                stored.version
            );
            if stored.version == *v {
                assert_eq!(stored.set.access_token.expose(), tok, "round {round}");
            }
            // One more write may have committed without being acknowledged, never more.
            assert!(
                stored.version <= v + 1,
                "round {round}: {} > {v} + 1",
                stored.version
            );
        }
        if db.kind == Kind::Sqlite {
            let raw = db.raw().await;
            let check: String = sqlx::Row::get(
                &sqlx::query("PRAGMA integrity_check")
                    .fetch_one(&raw)
                    .await
                    .unwrap(),
                0,
            );
            assert_eq!(check, "ok", "round {round}");
            raw.close().await;
        }
    }
    eprintln!(
        "{:?}: {total_acks} acknowledged writes over {rounds} SIGKILLs, none lost",
        db.kind
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_loses_an_acknowledged_write_sqlite() {
    run(Kind::Sqlite, |db| async move { crash_rounds(&db, 6).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_loses_an_acknowledged_write_postgres() {
    run(
        Kind::Postgres,
        |db| async move { crash_rounds(&db, 4).await },
    )
    .await;
}
