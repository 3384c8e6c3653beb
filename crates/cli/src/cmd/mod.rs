//! One module per subcommand.

pub mod diagnose;
pub mod keys;
pub mod providers;
pub mod remote;
pub mod serve;
