//! `trellis app rollout status|promote|abort NAME`, and following a rollout a deploy started.

use std::time::Duration;

use anyhow::bail;
use trellis_cli::client::ApiClient;
use trellis_lattice::api::{Rollout, RolloutAction, RolloutState};

use super::super::api_error;
use crate::args::{Connection, RolloutCmd};
use crate::output::{print_json, Output};

/// How often a followed rollout is asked for.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

pub async fn run(cmd: RolloutCmd) -> anyhow::Result<()> {
    match cmd {
        RolloutCmd::Status { conn, name, watch } => {
            let client = conn.client().await?;
            let json = conn.output == Output::Json;
            let rollout = get(&client, RolloutAction::Get, &name, None).await?;
            if watch && rollout.state.active() {
                return follow(&client, &name, json).await;
            }
            if json {
                print_json(&rollout)
            } else {
                print!("{}", render(&name, &rollout));
                Ok(())
            }
        }
        RolloutCmd::Promote { conn, name } => act(&conn, RolloutAction::Promote, &name, None).await,
        RolloutCmd::Abort { conn, name, reason } => {
            act(&conn, RolloutAction::Abort, &name, reason.as_deref()).await
        }
    }
}

async fn act(
    conn: &Connection,
    action: RolloutAction,
    name: &str,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let response = client.rollout(action, name, reason).await?;
    if conn.output == Output::Json {
        return print_json(&response);
    }
    if response.result != "success" {
        return Err(api_error(
            response.code,
            format!(
                "cannot {} the rollout of {name}: {}",
                action.word(),
                response.message
            ),
        ));
    }
    println!("{}", response.message);
    Ok(())
}

async fn get(
    client: &ApiClient,
    action: RolloutAction,
    name: &str,
    reason: Option<&str>,
) -> anyhow::Result<Rollout> {
    let response = client.rollout(action, name, reason).await?;
    match response.rollout {
        Some(rollout) if response.result == "success" => Ok(rollout),
        _ => Err(api_error(response.code, response.message)),
    }
}

/// Prints each step and change of state of `name`'s rollout until it ends; an error when it
/// rolled back. Stopping to follow (Ctrl-C) leaves the rollout going.
pub async fn follow(client: &ApiClient, name: &str, json: bool) -> anyhow::Result<()> {
    let mut shown_steps = 0usize;
    let mut last_line = String::new();
    loop {
        let rollout = get(client, RolloutAction::Get, name, None).await?;
        if json {
            let line = serde_json::to_string(&rollout)?;
            if line != last_line {
                println!("{line}");
                last_line = line;
            }
        } else {
            for step in rollout.steps.iter().skip(shown_steps) {
                println!(
                    "{name}: step {} ({}): {}",
                    step.step,
                    weights(&step.target),
                    step.message
                );
            }
            shown_steps = rollout.steps.len();
            let line = format!("{name}: {}: {}", rollout.state, rollout.message);
            if line != last_line {
                println!("{line}");
                last_line = line;
            }
        }
        match rollout.state {
            RolloutState::Done => return Ok(()),
            RolloutState::RolledBack => {
                bail!(
                    "the rollout of {name} to {} rolled back: {}",
                    rollout.to,
                    rollout.message
                )
            }
            _ => tokio::time::sleep(FOLLOW_EVERY).await,
        }
    }
}

fn weights(target: &trellis_lattice::api::RolloutTarget) -> String {
    let hosts = target
        .hosts
        .as_ref()
        .map(|h| format!(", new on {}={}", h.label, h.new_values.join(",")))
        .unwrap_or_default();
    format!(
        "{}% of requests to new, instances {}% new / {}% old{hosts}",
        target.traffic, target.new_instances, target.old_instances
    )
}

/// A rollout for people.
pub fn render(name: &str, r: &Rollout) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "app:       {name}");
    let _ = writeln!(out, "rollout:   {} → {} ({})", r.from, r.to, r.strategy);
    let _ = writeln!(out, "state:     {}", r.state);
    let _ = writeln!(out, "step:      {} ({})", r.step, weights(&r.target));
    let _ = writeln!(out, "message:   {}", r.message);
    if r.promoted {
        let _ = writeln!(out, "promoted:  past step {}", r.step);
    }
    if let Some(why) = &r.abort_requested {
        let _ = writeln!(out, "aborting:  {why}");
    }
    let _ = writeln!(out, "started:   {}", r.started_at.to_rfc3339());
    let _ = writeln!(out, "updated:   {}", r.updated_at.to_rfc3339());
    let figures = [("old", &r.old), ("new", &r.new)];
    if figures.iter().any(|(_, f)| f.is_some()) {
        let _ = writeln!(
            out,
            "\n{:<5} {:<12} {:>9} {:>8} {:>9} {:>8} {:>9}",
            "", "VERSION", "INSTANCES", "REQ/S", "FAILED", "ERRORS", "P99 MS"
        );
        for (which, f) in figures {
            if let Some(f) = f {
                let rate = if f.requests == 0 {
                    0.0
                } else {
                    f.failed as f64 * 100.0 / f.requests as f64
                };
                let _ = writeln!(
                    out,
                    "{which:<5} {:<12} {:>9} {:>8.1} {:>9} {:>7.1}% {:>9.0}",
                    f.version,
                    format!("{}/{}", f.instances, f.wanted),
                    f.requests_per_second,
                    f.failed,
                    rate,
                    f.p99_ms
                );
            }
        }
    }
    if !r.steps.is_empty() {
        let _ = writeln!(out, "\nsteps:");
        for s in &r.steps {
            let _ = writeln!(
                out,
                "  {:>3}  {}  {}  {}",
                s.step,
                s.at.format("%H:%M:%S"),
                weights(&s.target),
                s.message
            );
        }
    }
    out
}
