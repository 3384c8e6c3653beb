//! Loads the provider registry: the shipped definitions plus a user's directory.

use anyhow::{Context, Result};
use std::path::Path;
use tokenwarden_core::provider::Registry;

/// The shipped definitions, plus every `*.toml` in `dir` when given.
pub fn load(dir: Option<&Path>) -> Result<Registry> {
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
    Ok(Registry::with_files(files)?)
}
