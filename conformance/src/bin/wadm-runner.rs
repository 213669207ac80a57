//! wadm 0.21.1 as its own binary would run it: the `wadm` crate's `start_wadm` with the crate's
//! command-line configuration (`wadm-runner --help` lists it; `WADM_NATS_SERVER` etc. work too).

use anyhow::Context as _;
use clap::Parser;
use wadm::config::WadmConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    trellis_conformance_runners::init_logging();
    let mut tasks = wadm::start_wadm(WadmConfig::parse())
        .await
        .context("starting wadm")?;
    println!("wadm started");
    tokio::select! {
        Some(done) = tasks.join_next() => done.context("a wadm task panicked")?.context("a wadm task failed")?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
