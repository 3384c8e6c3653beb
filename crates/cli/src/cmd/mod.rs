//! One module per subcommand.

pub mod api_keys;
pub mod diagnose;
pub mod keys;
pub mod manual;
pub mod providers;
pub mod remote;
pub mod serve;
pub mod webhooks;
