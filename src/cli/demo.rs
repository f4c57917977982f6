//! `verdict demo`.

use clap::Args;
use verdict::demo;

#[derive(Args)]
pub struct DemoArgs {
    /// A running coordinator's URL, or every node of a cluster, comma-separated.
    #[arg(long, requires = "banks")]
    coordinator: Option<String>,
    /// A running bank's URL: give two (alice's, then bob's), with --coordinator.
    #[arg(long = "bank", requires = "coordinator")]
    banks: Vec<String>,
}

impl DemoArgs {
    fn running(self) -> anyhow::Result<Option<demo::Running>> {
        let Some(coordinator) = self.coordinator else {
            return Ok(None);
        };
        let banks: [String; 2] = self.banks.try_into().map_err(|banks: Vec<String>| {
            anyhow::anyhow!(
                "give two --bank URLs (alice's and bob's), not {}",
                banks.len()
            )
        })?;
        Ok(Some(demo::Running { coordinator, banks }))
    }
}

/// Runs the demo on processes of its own, or through the deployment named.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    demo::run(args.running()?).await
}
