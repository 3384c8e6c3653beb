//! Most of the server's integration tests, as modules of one test binary: one link instead of
//! one per file, and the harness in `support` compiled once. Run one file's tests with
//! `cargo test -p tokenwarden-server --test it FILE::` (e.g. `--test it oidc_peer::`).
//!
//! The tests that read process-wide state keep binaries of their own (`tests/*.rs`): those that
//! capture the log lines (one global subscriber per process, whose lines another test's would
//! mix with) and `metrics.rs` (one global recorder, whose counters another test's calls would
//! move).

#[path = "../support/mod.rs"]
mod support;

mod alerts;
mod api_words;
mod breaker;
mod broken_rows;
mod browser;
mod cache;
mod connect_sessions;
mod crowd;
mod linkedin_pinterest;
mod oidc_peer;
mod openapi;
mod platform_facts;
mod refresh_once;
mod serve;
mod webhooks;
