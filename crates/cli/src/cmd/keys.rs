//! `tokenwarden keys`: the master keys that encrypt every stored secret.

use anyhow::{Context as _, Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use tokenwarden_core::clock::Clock as _;
use tokenwarden_store::{KeySource, Keyring};

/// Manage the master keys that encrypt tokens and secrets at rest.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Add a new master key and re-encrypt everything under it, while a running daemon keeps
    /// serving. The key file keeps the old keys too, so backups made before stay readable.
    Rotate(RotateArgs),
    /// Show which keys exist and how much each has been used (no key material).
    Status(Common),
    /// Create an API key for the daemon's /v1 API. It is printed once; only its hash is stored.
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    #[command(flatten)]
    common: Common,
    /// What the key may do: `admin` (everything) or `token_reader` (fetch tokens only).
    #[arg(long, default_value = "token_reader", value_parser = ["admin", "token_reader"])]
    role: String,
    /// A label for people (who or what uses the key).
    #[arg(long, default_value = "created from the command line")]
    label: String,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The daemon's data directory.
    #[arg(long, default_value = "tokenwarden-data", env = "TOKENWARDEN_DATA_DIR")]
    data_dir: PathBuf,
    /// The key file (default: master.key in the data directory).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Database URL (default: SQLite in the data directory).
    #[arg(long, env = "TOKENWARDEN_DATABASE_URL")]
    database: Option<String>,
}

#[derive(Debug, clap::Args)]
struct RotateArgs {
    #[command(flatten)]
    common: Common,
    /// Do not wait for a running daemon to load the new key (use only when none is running).
    #[arg(long)]
    no_wait: bool,
}

impl Common {
    fn key_file(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    fn database(&self) -> String {
        self.database.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rw",
                self.data_dir.join("tokenwarden.db").display()
            )
        })
    }

    fn keyring(&self) -> Result<Keyring> {
        let env = crate::settings::master_key();
        let (ring, source) =
            Keyring::from_env_or_file(env.as_ref().map(|k| k.expose()), &self.key_file(), false)?;
        if matches!(source, KeySource::Env) {
            bail!(
                "the master key comes from TOKENWARDEN_MASTER_KEY, which this command cannot change. \
                 Rotate with a key file instead (unset the variable; keys live in {})",
                self.key_file().display()
            );
        }
        Ok(ring)
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match args.command {
            Sub::Rotate(a) => rotate(a).await,
            Sub::Status(c) => status(&c).await,
            Sub::Create(a) => create(a).await,
        }
    })
}

async fn status(c: &Common) -> Result<ExitCode> {
    let ring = c.keyring()?;
    let store = tokenwarden_store::open(&c.database(), ring.clone())
        .await
        .context("cannot open the store")?;
    let keys = store.key_status().await?;
    print!("{}", status_table(&ring, &keys));
    Ok(ExitCode::SUCCESS)
}

/// `keys status` as a table: each key the database knows, whether it is the one new values are
/// sealed with, whether the key file holds it, and how far it is from the point where
/// tokenwarden stops encrypting with it (no key material).
fn status_table(ring: &Keyring, keys: &[tokenwarden_store::KeyStatus]) -> String {
    let limit = tokenwarden_store::sql::KEY_REFUSE_AT;
    let mut rows = vec![[
        "KEY".to_string(),
        "STATE".to_string(),
        "IN KEY FILE".to_string(),
        "ENCRYPTIONS".to_string(),
        "OF LIMIT".to_string(),
    ]];
    for k in keys {
        let state = if k.key_id == ring.current_id() {
            "current"
        } else if k.retired {
            "retired"
        } else {
            "in use"
        };
        rows.push([
            k.key_id.clone(),
            state.to_string(),
            if ring.has(&k.key_id) { "yes" } else { "no" }.to_string(),
            k.encryptions.to_string(),
            format!("{:.4}%", k.encryptions as f64 * 100.0 / limit as f64),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if keys.is_empty() {
        out.push_str("(the database has no keys yet: nothing has been encrypted)\n");
    }
    if let Some(missing) = keys.iter().find(|k| !k.retired && !ring.has(&k.key_id)) {
        out.push_str(&format!(
            "Key {} still encrypts some values but is not in the key file: those values cannot be read until it is restored.\n",
            missing.key_id
        ));
    }
    out.push_str(&format!(
        "New values are sealed with {}. A key stops encrypting at {limit} encryptions (well before the 2^32 nonce limit); `tokenwarden keys rotate` moves everything to a new key.\n",
        ring.current_id()
    ));
    out
}

async fn rotate(a: RotateArgs) -> Result<ExitCode> {
    let c = &a.common;
    let old = c.keyring()?;
    let store = tokenwarden_store::open(&c.database(), old.clone())
        .await
        .context("cannot open the store")?;
    let new_id = tokenwarden_store::crypto::new_key_id();
    let new = old.with_new_key(&new_id)?;
    let path = c.key_file();
    // The file first: a crash from here on leaves a file that opens both old and new values.
    new.write_file(&path)?;
    println!(
        "Added key {new_id} to {} (the old keys stay in the file).",
        path.display()
    );
    if !a.no_wait {
        let wait = tokenwarden_server::keyfile::KEY_FILE_POLL * 3;
        println!(
            "Waiting {} s for a running daemon to load it…",
            wait.as_secs()
        );
        tokio::time::sleep(wait).await;
    }
    let report = tokenwarden_store::rotate_keys(&*store, new).await?;
    println!(
        "Re-encrypted {} value(s) under {new_id}; {} were already under it, {} were rewritten by the daemon meanwhile.",
        report.reencrypted, report.already_current, report.raced
    );
    Ok(ExitCode::SUCCESS)
}

async fn create(a: CreateArgs) -> Result<ExitCode> {
    let c = &a.common;
    let store = tokenwarden_store::open(&c.database(), c.keyring()?)
        .await
        .context("cannot open the store")?;
    let role = if a.role == "admin" {
        tokenwarden_store::ApiKeyRole::Admin
    } else {
        tokenwarden_store::ApiKeyRole::TokenReader
    };
    let (info, key) = store
        .create_api_key(role, &a.label, tokenwarden_core::clock::SystemClock.now())
        .await?;
    eprintln!(
        "Created {} key {} ({}). It is shown once, below; only its hash is stored.",
        role.as_str(),
        info.id,
        info.label
    );
    println!("{}", key.expose());
    Ok(ExitCode::SUCCESS)
}
