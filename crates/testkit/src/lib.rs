//! What the tests of every crate share (a dev-dependency only; nothing here ships):
//!
//! - [`logs`]: every log line of the test binary, at TRACE, for tests that prove no secret is
//!   logged. The subscriber is process-wide (the daemon's handlers run on the runtime's worker
//!   threads, which a thread-local subscriber would miss), so it is installed once per binary.
//! - [`consent`]: the connect step a person does in a browser, done over HTTP against the
//!   sandbox's consent page: open a connect link, approve (or deny), come back to the callback.
//! - [`daemon`] (feature `daemon`): the daemon on loopback with the sandbox in-process, a fresh
//!   database and API keys, which the server's, the proxy's and the client's tests wrap.

pub mod consent;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod logs;
