//! `trellis app plan` for people: the commands a deploy would send, read like a diff.

use trellis_lattice::api::{PlanResponse, PlannedCommand};

/// The plan as text for people, one line per command.
pub fn render_plan(plan: &PlanResponse) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use trellis_lattice::api::GetResult;

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
            code: None,
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
