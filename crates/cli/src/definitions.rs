//! Loads the provider registry: the shipped definitions plus a user's directory.

use crate::config::{self, ALLOW_INSECURE_ENDPOINTS};
use anyhow::{Context, Result};
use std::path::Path;
use tokenwarden_core::provider::{Endpoints, Registry};

/// Whether definitions may use plain-http endpoints, from `TOKENWARDEN_ALLOW_INSECURE_ENDPOINTS`
/// over `file` (the configuration file's `allow_insecure_endpoints`, when there is one).
pub fn endpoints(file: Option<bool>) -> Result<Endpoints> {
    config::endpoints(
        file,
        crate::settings::env(ALLOW_INSECURE_ENDPOINTS).as_deref(),
    )
}

/// The shipped definitions, plus every `*.toml` in `dir` when given; plain-http endpoints only
/// when `TOKENWARDEN_ALLOW_INSECURE_ENDPOINTS` allows them.
pub fn load(dir: Option<&Path>) -> Result<Registry> {
    load_allowing(dir, endpoints(None)?)
}

/// [`load`], with the endpoints `endpoints` allows.
pub fn load_allowing(dir: Option<&Path>, endpoints: Endpoints) -> Result<Registry> {
    let Some(dir) = dir else {
        return Ok(Registry::builtin()?);
    };
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the providers directory {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            files.push((path.display().to_string(), text));
        }
    }
    files.sort();
    Ok(Registry::with_files_allowing(files, endpoints)?)
}
