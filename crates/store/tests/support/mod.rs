//! Test harness: a fresh database per test on each backend, dropped afterwards.
#![allow(dead_code)]

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Connection as _;
use std::sync::Arc;
use tokenwarden_core::connection::{Connection, ConnectionState, Environment};
use tokenwarden_core::id::{AppId, ConnectionId, ProviderId};
use tokenwarden_core::secret::Secret;
use tokenwarden_core::token::TokenSet;
use tokenwarden_store::{Keyring, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// One test's database.
#[derive(Debug)]
pub struct Db {
    pub kind: Kind,
    pub url: String,
    pub keys: Keyring,
    dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

pub const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn pg_admin_url() -> String {
    std::env::var("TOKENWARDEN_TEST_DATABASE_URL").unwrap_or_else(|_| PG_DEFAULT.to_string())
}

fn with_database(admin: &str, db: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin, None),
    };
    let rest = base.split_once("://").map(|(_, r)| r).unwrap_or(base);
    let base = match rest.find('/') {
        Some(_) => &base[..base.rfind('/').unwrap()],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

impl Db {
    /// A fresh database, or `None` when PostgreSQL is skipped on purpose.
    pub async fn fresh(kind: Kind) -> Option<Db> {
        let keys = Keyring::generate("k1").unwrap();
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("tw.db").display());
                Some(Db {
                    kind,
                    url,
                    keys,
                    dir: Some(dir),
                    pg: None,
                })
            }
            Kind::Postgres => {
                if std::env::var("TOKENWARDEN_SKIP_POSTGRES").as_deref() == Ok("1") {
                    // Written to the real stderr (`eprintln!` is captured by libtest) so the skip
                    // shows even when the test passes.
                    use std::io::Write;
                    let _ = std::io::stderr().write_all(
                        b"\n!!!!! SKIPPING a PostgreSQL store test: TOKENWARDEN_SKIP_POSTGRES=1 !!!!!\n",
                    );
                    return None;
                }
                let admin = pg_admin_url();
                let mut c = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is not reachable at {admin} ({e}).\n\
                         Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
                         or point TOKENWARDEN_TEST_DATABASE_URL at a server, or set TOKENWARDEN_SKIP_POSTGRES=1 to skip."
                    )
                });
                let name = format!("tw_test_{}", hex::encode(rand::random::<[u8; 6]>()));
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut c)
                    .await
                    .unwrap();
                c.close().await.ok();
                let url = with_database(&admin, &name);
                Some(Db {
                    kind,
                    url,
                    keys,
                    dir: None,
                    pg: Some((admin, name)),
                })
            }
        }
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        tokenwarden_store::open(&self.url, self.keys.clone())
            .await
            .unwrap()
    }

    pub async fn open_with(
        &self,
        keys: Keyring,
    ) -> Result<Arc<dyn Store>, tokenwarden_store::StoreError> {
        tokenwarden_store::open(&self.url, keys).await
    }

    /// A raw pool for tampering and scanning.
    pub async fn raw(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(&self.url)
            .await
            .unwrap()
    }

    /// The SQLite files (main + WAL), when SQLite.
    pub fn sqlite_files(&self) -> Vec<std::path::PathBuf> {
        let d = self.dir.as_ref().expect("sqlite");
        ["tw.db", "tw.db-wal"]
            .iter()
            .map(|f| d.path().join(f))
            .filter(|p| p.exists())
            .collect()
    }

    pub async fn drop_db(&self) {
        if let Some((admin, name)) = &self.pg
            && let Ok(mut c) = sqlx::PgConnection::connect(admin).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut c)
                .await;
        }
    }
}

/// Runs `case` on a fresh database of `kind`, dropping it afterwards even if the case panics.
pub async fn run<F, Fut>(kind: Kind, case: F)
where
    F: FnOnce(Arc<Db>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(db) = Db::fresh(kind).await else {
        return;
    };
    let db = Arc::new(db);
    let outcome = tokio::spawn(case(db.clone())).await;
    db.drop_db().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

pub mod hex {
    pub fn encode(b: impl AsRef<[u8]>) -> String {
        b.as_ref().iter().map(|x| format!("{x:02x}")).collect()
    }
}

pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_790_000_000_123).unwrap()
}

pub fn cid(s: &str) -> ConnectionId {
    ConnectionId::parse(s).unwrap()
}

pub fn connection(id: &str) -> Connection {
    Connection {
        id: cid(id),
        provider: ProviderId::parse("snapchat").unwrap(),
        app: AppId::parse("main").unwrap(),
        state: ConnectionState::Active,
        environment: Environment::Production,
        region: None,
        api_base: "https://adsapi.snapchat.com".into(),
        account_ids: vec!["acct-1".into(), "acct-2".into()],
        account: None,
        end_user: None,
        scopes: vec!["snapchat-marketing-api".into()],
        problems: vec![],
        created_at: t0(),
        updated_at: t0(),
    }
}

pub fn tokens(access: &str, refresh: Option<&str>) -> TokenSet {
    TokenSet {
        access_token: Secret::new(access),
        refresh_token: refresh.map(Secret::new),
        token_type: Some("Bearer".into()),
        scopes: vec!["a".into(), "b".into()],
        issued_at: t0(),
        expires_at: Some(t0() + TimeDelta::hours(1)),
        refresh_expires_at: None,
        token_secret: None,
    }
}

/// A connection with an initial token set.
pub async fn seeded(store: &dyn Store, id: &str) -> ConnectionId {
    store.put_connection(&connection(id)).await.unwrap();
    store
        .put_initial_tokens(
            &cid(id),
            &tokens(&format!("at-{id}-0"), Some(&format!("rt-{id}-0"))),
        )
        .await
        .unwrap();
    cid(id)
}
