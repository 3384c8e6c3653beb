//! Log capture for the whole test binary.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Every log line written since [`logs`] was first called, as the `fmt` layer writes them (no
/// colours).
#[derive(Clone, Default, Debug)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Panics, naming the value, when any of `secrets` appears in the logs. An empty value is
    /// a mistake in the test (it is in every text), so it panics too.
    pub fn assert_free_of<S: AsRef<str>>(&self, secrets: &[S]) {
        let text = self.text();
        for s in secrets {
            let s = s.as_ref();
            assert!(!s.is_empty(), "an empty secret proves nothing");
            assert!(!text.contains(s), "logged: {s}");
        }
    }
}

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// The binary's log capture, installed as the global subscriber at TRACE on first use. Panics
/// if another global subscriber was installed first.
pub fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("one global subscriber per test binary: use testkit::logs() only");
        logs
    })
}
