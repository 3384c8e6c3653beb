//! What the fuzz targets share: every provider definition loaded once, and inputs read as a
//! `curl -i` paste so the seed corpus is the repository's own example responses.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use tokenwarden_core::provider::{Provider, Registry};
use tokenwarden_core::raw_http;

/// The repository's `providers/` directory.
pub fn providers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../providers")
}

/// Every `providers/*.toml` (but `_common.toml`, which the registry always holds), as
/// `(path, text)`, sorted by path.
pub fn provider_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(providers_dir())
        .expect("the providers/ directory is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "_common.toml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("a definition is readable");
            (p.display().to_string(), text)
        })
        .collect();
    files.sort();
    files
}

/// The shipped definitions, each replaced by its file in `providers/` (so a definition added there
/// is fuzzed even before it is embedded), in id order.
pub static PROVIDERS: LazyLock<Vec<Arc<Provider>>> = LazyLock::new(|| {
    let files = provider_files();
    let n = files.len();
    let reg = Registry::with_files(files).expect("every providers/*.toml loads");
    let all: Vec<Arc<Provider>> = reg.iter().cloned().collect();
    assert!(
        all.len() >= n && !all.is_empty(),
        "every file in providers/ is a definition"
    );
    all
});

/// The provider `selector` picks (any byte picks one).
pub fn provider(selector: u8) -> &'static Provider {
    &PROVIDERS[usize::from(selector) % PROVIDERS.len()]
}

/// A response to feed a parser: status, headers, body.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Reads `text` as `curl -i` prints a response; what is not one is a body sent with `status`.
pub fn response(status: u16, text: &[u8]) -> Response {
    match raw_http::parse(text) {
        Ok(r) => Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        },
        Err(_) => Response {
            status,
            headers: Vec::new(),
            body: text.to_vec(),
        },
    }
}
