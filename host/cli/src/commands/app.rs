//! `trellis app get|versions|delete|history|plan|rollback`: reading and removing what the
//! manifest store holds, planning a deploy and rolling one back.

use anyhow::bail;
use trellis_cli::failure::Failure;
use trellis_lattice::api::{DeleteResult, DeployResult, GetResult, PlanResponse, PlannedCommand};

use super::api_error;
use crate::{print_json, Connection, Output};

/// Prints one stored manifest: YAML for people (ready to edit and `app put` again), JSON with
/// `-o json`.
pub async fn get(conn: &Connection, name: &str, version: Option<&str>) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let resp = client.get(name, version).await?;
    match resp.result {
        GetResult::Success => {}
        GetResult::NotFound => {
            let hint = match version {
                Some(_) => format!("`trellis app versions {name}` lists its versions"),
                None => "`trellis app list` lists the stored apps".to_string(),
            };
            return Err(Failure::NotFound.error(format!("{}; {hint}", resp.message)));
        }
        GetResult::Error => bail!("cannot read app {name}: {}", resp.message),
    }
    let Some(manifest) = resp.manifest else {
        bail!("the controller found app {name} but sent no manifest");
    };
    if conn.output == Output::Json {
        return print_json(&manifest);
    }
    print!("{}", serde_yaml_ng::to_string(&manifest)?);
    Ok(())
}

/// Every stored version of an app, oldest first, and which one is deployed.
pub async fn versions(conn: &Connection, name: &str) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let resp = client.versions(name).await?;
    match resp.result {
        GetResult::Success => {}
        GetResult::NotFound => {
            return Err(Failure::NotFound.error(format!(
                "{}; `trellis app list` lists the stored apps",
                resp.message
            )))
        }
        GetResult::Error => bail!("cannot list the versions of {name}: {}", resp.message),
    }
    if conn.output == Output::Json {
        return print_json(&resp.versions);
    }
    println!("{:<24} DEPLOYED", "VERSION");
    for v in &resp.versions {
        println!("{:<24} {}", v.version, if v.deployed { "yes" } else { "" });
    }
    Ok(())
}

/// Deletes one version, or the app with every version. Deleting what is deployed undeploys it.
pub async fn delete(conn: &Connection, name: &str, version: Option<&str>) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let resp = client.delete(name, version).await?;
    if conn.output == Output::Json {
        print_json(&resp)?;
    }
    match resp.result {
        DeleteResult::Deleted => {}
        DeleteResult::Noop => {
            let what = match version {
                Some(v) => format!("app {name} has no version {v}"),
                None => format!("app {name} does not exist"),
            };
            return Err(Failure::NotFound.error(format!(
                "{what}: nothing deleted; `trellis app list` lists the stored apps"
            )));
        }
        DeleteResult::Error => {
            return Err(api_error(format!(
                "cannot delete app {name}: {}",
                resp.message
            )))
        }
    }
    if conn.output == Output::Table {
        println!("{}", resp.message);
        if resp.undeploy {
            println!("it was deployed: the controller is removing what it ran");
        }
    }
    Ok(())
}

/// Which version was deployed when, oldest first.
pub async fn history(conn: &Connection, name: &str) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let resp = client.history(name).await?;
    match resp.result {
        GetResult::Success => {}
        GetResult::NotFound => {
            return Err(Failure::NotFound.error(format!(
                "{}; `trellis app list` lists the stored apps",
                resp.message
            )))
        }
        GetResult::Error => bail!("cannot read the history of {name}: {}", resp.message),
    }
    if conn.output == Output::Json {
        return print_json(&resp.history);
    }
    if resp.history.is_empty() {
        println!("app {name} has never been deployed");
        return Ok(());
    }
    println!("{:<32} EVENT", "AT");
    for entry in &resp.history {
        let event = match &entry.version {
            Some(v) => format!("deployed {v}"),
            None => "undeployed".to_string(),
        };
        println!("{:<32} {event}", entry.at);
    }
    Ok(())
}

/// Shows what deploying a version would do now, like a diff: `+` what would start, be scaled
/// or put, `-` what would stop or be deleted. Nothing is sent to the lattice.
pub async fn plan(conn: &Connection, name: &str, version: Option<&str>) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let resp = client.plan(name, version).await?;
    match resp.result {
        GetResult::Success => {}
        GetResult::NotFound => return Err(Failure::NotFound.error(resp.message)),
        GetResult::Error => bail!("cannot plan app {name}: {}", resp.message),
    }
    if conn.output == Output::Json {
        return print_json(&resp);
    }
    print!("{}", render_plan(&resp));
    Ok(())
}

/// The plan as text for people, one line per command.
fn render_plan(plan: &PlanResponse) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "plan: deploy {} {}", plan.name, plan.version);
    if plan.commands.is_empty() {
        let _ = writeln!(
            out,
            "no changes: the lattice already runs what {} {} asks for",
            plan.name, plan.version
        );
    }
    let (mut adds, mut removes, mut held) = (0, 0, 0);
    for command in &plan.commands {
        let (sign, what) = describe_command(command);
        match sign {
            '+' => adds += 1,
            _ => removes += 1,
        }
        let note = if command.held {
            held += 1;
            "  (in flight: a deploy would not send it again yet)"
        } else {
            ""
        };
        let _ = writeln!(out, "{sign} {what}  [{}]{note}", command.scaler);
    }
    if !plan.commands.is_empty() {
        let _ = writeln!(
            out,
            "{} commands: {adds} to start, scale or put, {removes} to stop or delete{}",
            plan.commands.len(),
            if held > 0 {
                format!(", {held} already in flight")
            } else {
                String::new()
            }
        );
    }
    if !plan.scalers.is_empty() {
        let _ = writeln!(out, "then:");
        for s in &plan.scalers {
            let state = format!("{:?}", s.info.status_type).to_lowercase();
            let _ = writeln!(out, "  {:<28} {:<12} {}", s.id, state, s.info.message);
        }
    }
    out
}

/// `+` or `-`, and the command in words, from its control-interface subject and body.
fn describe_command(command: &PlannedCommand) -> (char, String) {
    let body = &command.body;
    let text = |key: &str| body[key].as_str().unwrap_or("?").to_string();
    // wasmbus.ctl.v1.{lattice}.{noun}.{verb}[.{host or name}]
    let parts: Vec<&str> = command.subject.splitn(6, '.').collect();
    let (noun, verb, last) = (
        parts.get(4).copied().unwrap_or_default(),
        parts
            .get(5)
            .map(|rest| rest.split_once('.').map_or(*rest, |(v, _)| v))
            .unwrap_or_default(),
        parts
            .get(5)
            .and_then(|rest| rest.split_once('.'))
            .map(|(_, x)| x)
            .unwrap_or_default(),
    );
    match (noun, verb) {
        ("component", "scale") => {
            let count = body["count"]
                .as_u64()
                .or(body["max_instances"].as_u64())
                .unwrap_or(0);
            if count == 0 {
                (
                    '-',
                    format!("stop component {} on {last}", text("component_id")),
                )
            } else {
                (
                    '+',
                    format!(
                        "scale component {} to {count} on {last} ({})",
                        text("component_id"),
                        text("component_ref")
                    ),
                )
            }
        }
        ("provider", "start") => (
            '+',
            format!(
                "start provider {} on {last} ({})",
                text("provider_id"),
                text("provider_ref")
            ),
        ),
        ("provider", "stop") => (
            '-',
            format!("stop provider {} on {last}", text("provider_id")),
        ),
        ("link", "put") => (
            '+',
            format!(
                "put link {} → {} ({}:{}/{}, name {})",
                text("source_id"),
                text("target"),
                text("wit_namespace"),
                text("wit_package"),
                body["interfaces"]
                    .as_array()
                    .map(|i| i
                        .iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default(),
                text("name")
            ),
        ),
        ("link", "del") => (
            '-',
            format!(
                "delete link from {} ({}:{}, name {})",
                text("source_id"),
                text("wit_namespace"),
                text("wit_package"),
                text("name")
            ),
        ),
        ("config", "put") => ('+', format!("put config {last}")),
        ("config", "del") => ('-', format!("delete config {last}")),
        _ => ('+', format!("send {} {body}", command.subject)),
    }
}

/// Deploys the version deployed before the current one, and waits like `app deploy`.
pub async fn rollback(
    conn: &Connection,
    name: &str,
    no_wait: bool,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let resp = client.rollback(name).await?;
    if resp.result != DeployResult::Acknowledged {
        return Err(api_error(format!(
            "cannot roll {name} back: {}",
            resp.message
        )));
    }
    let json = conn.output == Output::Json;
    if !json {
        println!("{}", resp.message);
    }
    if no_wait {
        if json {
            print_json(&resp)?;
        }
        return Ok(());
    }
    let status = client
        .wait_deployed(name, timeout, |s| {
            if !json {
                crate::print_progress(name, s)
            }
        })
        .await?;
    if json {
        print_json(&status)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn command(subject: &str, body: serde_json::Value) -> PlannedCommand {
        PlannedCommand {
            scaler: "spreadscaler-web-0".into(),
            subject: subject.into(),
            body,
            held: false,
        }
    }

    #[test]
    fn commands_read_like_a_diff() {
        let scale = command(
            "wasmbus.ctl.v1.default.component.scale.NHOST",
            json!({"component_id": "shop-web", "component_ref": "file:///w.wasm", "count": 2, "host_id": "NHOST"}),
        );
        assert_eq!(
            describe_command(&scale),
            (
                '+',
                "scale component shop-web to 2 on NHOST (file:///w.wasm)".into()
            )
        );
        let stop = command(
            "wasmbus.ctl.v1.default.component.scale.NHOST",
            json!({"component_id": "shop-web", "count": 0}),
        );
        assert_eq!(describe_command(&stop).0, '-');
        let config = command("wasmbus.ctl.v1.default.config.del.web-http", json!({}));
        assert_eq!(
            describe_command(&config),
            ('-', "delete config web-http".into())
        );
        let plan = PlanResponse {
            result: GetResult::Success,
            message: String::new(),
            name: "shop".into(),
            version: "v2".into(),
            commands: vec![scale, stop],
            scalers: Vec::new(),
        };
        let text = render_plan(&plan);
        assert!(
            text.contains("2 commands: 1 to start, scale or put, 1 to stop or delete"),
            "{text}"
        );
    }
}
