//! The state machine has one home (issue 14): no product code outside `crates/engine/src/state.rs`
//! writes a connection's state directly; everything else says what it found through
//! `tokenwarden_engine::States`. (The store defines `set_state`, and tests may set up states.)

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_the_engine_state_module_writes_a_connection_state() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for krate in std::fs::read_dir(crates).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(
        files.len() > 20,
        "found the sources ({} files)",
        files.len()
    );
    let allowed = |p: &Path| {
        p.ends_with("engine/src/state.rs")
            // The store defines it; the cache forwards it to the store.
            || p.starts_with(crates.join("store"))
            || p.ends_with("engine/src/cache.rs")
    };
    let mut offenders = Vec::new();
    for f in &files {
        if allowed(f) {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.contains(".set_state(") {
                offenders.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "a connection's state is written only through tokenwarden_engine::States:\n{}",
        offenders.join("\n")
    );
}
