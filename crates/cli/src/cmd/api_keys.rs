//! `tokenwarden api-keys list|create|revoke`: the daemon's API keys through its REST API
//! (`/v1/api-keys`), with an admin API key.
//!
//! Named `api-keys`, not `keys`: `tokenwarden keys` is the master keyring (`rotate`, `status`),
//! which works on the data directory with no daemon running; mixing "list the API keys" into it
//! would make `keys list` and `keys status` describe different kinds of key. (`keys create`, which
//! writes an API key straight into the database, stays for the first key of a daemon that is not
//! running yet.)

use crate::cmd::remote::{Target, path_segment, printable};
use anyhow::Result;
use serde_json::{Value, json};
use std::process::ExitCode;

/// List, create and revoke the API keys of a running daemon (never shows a key after creation).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Every key: id, role, label, when it was created and revoked (the default).
    List,
    /// Make a key. It is printed once, alone on stdout; only its hash is stored.
    Create {
        /// What the key may do: `admin` (everything) or `token_reader` (fetch tokens only).
        #[arg(long, default_value = "token_reader", value_parser = ["admin", "token_reader"])]
        role: String,
        /// Who or what uses the key.
        #[arg(long, default_value = "created from the command line")]
        label: String,
    },
    /// Revoke a key at once (other replicas within their key cache's TTL, 5 s by default). The
    /// last live admin key cannot be revoked: create another first.
    Revoke {
        /// The key's id: the part after `tw_` and before the next `_`, as `list` shows it.
        id: String,
    },
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

/// Runs `api-keys`.
pub fn run(args: Args) -> Result<ExitCode> {
    let t = &args.target;
    match args.command.unwrap_or(Sub::List) {
        Sub::List => {
            let v = t.call(reqwest::Method::GET, "v1/api-keys")?;
            if t.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            // The key this command authenticates with, by its public id.
            let own = t
                .key()
                .ok()
                .and_then(|k| tokenwarden_store::api_key_id(&k).map(str::to_owned));
            println!(
                "{:<20} {:<13} {:<26} {:<26} LABEL",
                "ID", "ROLE", "CREATED", "REVOKED"
            );
            for k in v["api_keys"].as_array().into_iter().flatten() {
                let id = text(k, "id");
                let mine = if own.as_deref() == Some(id) {
                    "  (this key)"
                } else {
                    ""
                };
                println!(
                    "{:<20} {:<13} {:<26} {:<26} {}{mine}",
                    printable(id),
                    text(k, "role"),
                    text(k, "created_at"),
                    k["revoked_at"].as_str().unwrap_or("-"),
                    printable(text(k, "label"))
                );
            }
        }
        Sub::Create { role, label } => {
            let v = t.send(
                reqwest::Method::POST,
                "v1/api-keys",
                Some(&json!({"role": role, "label": label})),
            )?;
            if t.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("{}", text(&v, "key"));
            eprintln!(
                "Created {} key {}. The key above is not shown again; revoke it with `tokenwarden api-keys revoke {}`.",
                text(&v, "role"),
                printable(text(&v, "id")),
                printable(text(&v, "id"))
            );
        }
        Sub::Revoke { id } => {
            let id = path_segment("an API key", &id)?;
            let v = t.call(reqwest::Method::DELETE, &format!("v1/api-keys/{id}"))?;
            if t.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "Revoked {id} ({}, {}) at {}.",
                    text(&v, "role"),
                    printable(text(&v, "label")),
                    text(&v, "revoked_at")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
