//! What every `trellis` command prints in the same way: the `-o` formats, JSON for scripts, and
//! an app's progress line while it deploys. Each command's own table is in its command file.

use clap::ValueEnum;
use trellis_lattice::api::Status;

/// The `-o` flag: tables for people, JSON for scripts.
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `  NAME: STATE[: MESSAGE]`, printed for each new status while waiting for a deploy.
pub fn print_progress(name: &str, status: &Status) {
    let state = format!("{:?}", status.info.status_type).to_lowercase();
    if status.info.message.is_empty() {
        println!("  {name}: {state}");
    } else {
        println!("  {name}: {state}: {}", status.info.message);
    }
}
