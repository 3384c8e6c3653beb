//! cli
/// args
#[derive(clap::Args, Debug)]
pub struct SandboxArgs {}
/// run
pub async fn run(_a: SandboxArgs) -> anyhow::Result<()> { Ok(()) }
