//! `tokenwarden webhooks list|create|delete|deliveries`: the daemon's webhook endpoints through
//! its REST API (`/v1/webhooks`), with an admin API key.

use crate::cmd::remote::{Target, path_segment, printable};
use anyhow::Result;
use serde_json::{Value, json};
use std::process::ExitCode;

/// Add, list and remove webhook endpoints of a running daemon, and read their delivery log.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Every endpoint: id, whether it is enabled, its URL (the default; never the secrets).
    List,
    /// Add an endpoint. Its signing secret is printed once, alone on stdout: keep it to verify
    /// the `webhook-signature` header. The URL must be https on a public address unless the
    /// daemon allows private ones (`[webhooks] allow_private`).
    Create {
        /// Where state changes are posted.
        #[arg(value_name = "URL")]
        endpoint: String,
        /// Add it switched off.
        #[arg(long)]
        disabled: bool,
    },
    /// Remove an endpoint and its delivery log.
    Delete {
        /// The endpoint id (`wh_…`).
        id: String,
    },
    /// The endpoint's delivery log, newest first: status, attempts, next attempt, last error.
    Deliveries {
        /// The endpoint id (`wh_…`).
        id: String,
        /// How many deliveries (1 to 500).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=500))]
        limit: i64,
    },
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

/// Runs `webhooks`.
pub fn run(args: Args) -> Result<ExitCode> {
    let t = &args.target;
    match args.command.unwrap_or(Sub::List) {
        Sub::List => {
            let v = t.call(reqwest::Method::GET, "v1/webhooks")?;
            if t.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let list = v["webhooks"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!(
                    "No webhook endpoints. Add one with `tokenwarden webhooks create URL`; it receives every state change."
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<22} {:<8} {:<26} URL", "ID", "ENABLED", "CREATED");
            for w in list {
                let enabled = if w["enabled"] == Value::Bool(true) {
                    "yes"
                } else {
                    "no"
                };
                println!(
                    "{:<22} {:<8} {:<26} {}",
                    printable(text(&w, "id")),
                    enabled,
                    text(&w, "created_at"),
                    printable(text(&w, "url"))
                );
            }
        }
        Sub::Create { endpoint, disabled } => {
            let v = t.send(
                reqwest::Method::POST,
                "v1/webhooks",
                Some(&json!({"url": endpoint, "enabled": !disabled})),
            )?;
            if t.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("{}", text(&v, "secret"));
            eprintln!(
                "Created {} for {} ({}). The signing secret above verifies the webhook-signature header and is not shown again.",
                printable(text(&v, "id")),
                printable(text(&v, "url")),
                if disabled { "disabled" } else { "enabled" }
            );
        }
        Sub::Delete { id } => {
            let id = path_segment("a webhook", &id)?;
            let v = t.call(reqwest::Method::DELETE, &format!("v1/webhooks/{id}"))?;
            if t.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("Deleted {id}.");
            }
        }
        Sub::Deliveries { id, limit } => {
            let id = path_segment("a webhook", &id)?;
            let v = t.call(
                reqwest::Method::GET,
                &format!("v1/webhooks/{id}/deliveries?limit={limit}"),
            )?;
            if t.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let list = v["deliveries"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("No deliveries to {id} yet: one is made for every state change.");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<8} {:<22} {:<10} {:<8} {:<26} LAST ERROR",
                "ID", "TYPE", "STATUS", "ATTEMPTS", "NEXT ATTEMPT"
            );
            for d in list {
                println!(
                    "{:<8} {:<22} {:<10} {:<8} {:<26} {}",
                    d["id"].to_string(),
                    printable(text(&d, "type")),
                    printable(text(&d, "status")),
                    d["attempts"].to_string(),
                    text(&d, "next_attempt_at"),
                    printable(text(&d, "last_error"))
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
