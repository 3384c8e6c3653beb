//! One module per subcommand.

pub mod diagnose;
pub mod providers;
pub mod serve;
