//! `trellis`: deploy WebAssembly applications onto a lattice of hosts and keep them deployed.
//!
//! This file parses the command line and hands each command to its group in [`commands`]; the
//! flags and help texts are in [`args`], what every command prints alike in [`output`].

use std::process::ExitCode;

use clap::Parser;
use trellis_cli::failure::exit_code;

mod args;
mod commands;
mod output;

use args::{Cli, Cmd};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = matches!(cli.command, Cmd::App(_) | Cmd::Plugin(_) | Cmd::Get(_));
    if client {
        quiet_on_closed_pipe();
    }
    // Client commands print their answers; what the plugin runtime logs while they load plugins
    // (each plugin loaded) is the servers' news, not theirs: warnings and errors only.
    let default_filter = if client {
        "warn"
    } else {
        "info,async_nats=warn,cranelift=warn,wasmtime=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRELLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let logger = tracing_subscriber::fmt().with_env_filter(filter);
    // `up` keeps its log in a file, so that its status lines are all a newcomer reads.
    match up_log_file(&cli) {
        Ok(Some(file)) => logger
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init(),
        Ok(None) => logger.with_writer(std::io::stderr).init(),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The file `trellis up` logs into (this run's log: `DATA_DIR/up.log`, emptied at start), or
/// none when it shows its log live (`--show-logs`) or the command is not `up`.
fn up_log_file(cli: &Cli) -> anyhow::Result<Option<std::fs::File>> {
    use anyhow::Context;
    let Cmd::Up(args) = &cli.command else {
        return Ok(None);
    };
    if args.show_logs {
        return Ok(None);
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let path = commands::up::log_path(&args.data_dir);
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot write the log {}", path.display()))?;
    Ok(Some(file))
}

/// Ends the process quietly when its output is closed (`trellis get hosts | head`), as Unix
/// tools do, instead of panicking in `println!`. Rust ignores SIGPIPE so that a write returns
/// an error; for the commands that only print and exit, the default action is what a user
/// expects. The long-running ones (`up`, `controller`, `node`) keep Rust's default.
fn quiet_on_closed_pipe() {
    // SAFETY: called at start-up before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Up(args) => commands::up::run(args).await,
        Cmd::Controller(args) => commands::controller::run(args).await,
        Cmd::Node(args) => commands::node::run(args).await,
        Cmd::App(cmd) => commands::app::run(cmd).await,
        Cmd::Plugin(cmd) => commands::plugin::run(cmd).await,
        Cmd::Get(cmd) => commands::get::run(cmd).await,
    }
}
