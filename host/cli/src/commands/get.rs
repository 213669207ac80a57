//! `trellis get hosts|inventory|links|config|snapshot`: what the lattice runs and holds, as its
//! hosts and the control interface tell it (and, for `snapshot`, as its controller's plugins see
//! it).

use std::collections::BTreeMap;

use anyhow::bail;
use trellis_cli::failure::Failure;
use trellis_lattice::api::{HostHealth, HostReport};

use crate::args::{Connection, GetCmd};
use crate::output::{print_json, Output};

pub async fn run(cmd: GetCmd) -> anyhow::Result<()> {
    match cmd {
        GetCmd::Hosts { conn } => hosts(&conn).await,
        GetCmd::Inventory { conn, host } => inventory(&conn, &host).await,
        GetCmd::Links { conn } => links(&conn).await,
        GetCmd::Config { conn, name } => config(&conn, name.as_deref()).await,
        GetCmd::Snapshot { conn } => snapshot(&conn).await,
    }
}

/// The lattice as plugins see it: the state file with `-o json`, a summary for people.
async fn snapshot(conn: &Connection) -> anyhow::Result<()> {
    let doc = conn.client().await?.snapshot().await?;
    if conn.output == Output::Json {
        return print_json(&doc);
    }
    let instances: u64 = doc.components.iter().map(|c| u64::from(c.count)).sum();
    println!(
        "{} hosts, {} component instances ({} components), {} providers, {} links, {} configs, traffic of {} components",
        doc.hosts.len(),
        instances,
        doc.components.iter().map(|c| &c.component_id).collect::<std::collections::BTreeSet<_>>().len(),
        doc.providers.len(),
        doc.links.len(),
        doc.configs.len(),
        doc.traffic.iter().map(|t| &t.component_id).collect::<std::collections::BTreeSet<_>>().len(),
    );
    println!("write it for `trellis plugin run --lattice FILE` with:  trellis get snapshot -o json > state.json");
    Ok(())
}

const GIB: f64 = (1u64 << 30) as f64;

/// How long `get hosts` waits for the controller's view of health: hosts answer pings within
/// a second, and a lattice without a controller should not make the listing slow.
const HEALTH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Every host that answers a ping, and every host the controller knows that does not (a
/// paused or lost one), with its health as the controller judges it, labels (without the
/// `hostcore.` ones), uptime, CPU use and free memory.
async fn hosts(conn: &Connection) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let (pinged, reports) = tokio::join!(
        client.hosts(),
        tokio::time::timeout(HEALTH_PATIENCE, client.host_reports(false))
    );
    let pinged = pinged?;
    // Without a controller (or an older one), health is unknown: shown as `-`.
    let mut reports: BTreeMap<String, HostReport> = match reports {
        Ok(Ok(r)) => r
            .hosts
            .into_iter()
            .map(|h| (h.host_id.clone(), h))
            .collect(),
        _ => BTreeMap::new(),
    };
    let mut rows: Vec<HostRow> = pinged
        .into_iter()
        .map(|host| {
            let report = reports.remove(&host.id);
            HostRow {
                health: report.as_ref().map(|r| r.health),
                last_seen_ms: report.as_ref().map(|r| r.last_seen_ms),
                answered: true,
                host,
            }
        })
        .collect();
    // What is left the controller knows of, but did not answer the ping.
    rows.extend(reports.into_values().map(|report| HostRow {
        health: Some(report.health),
        last_seen_ms: Some(report.last_seen_ms),
        answered: false,
        host: trellis_lattice::ctl::Host {
            id: report.host_id,
            friendly_name: report.friendly_name,
            resources: report.resources,
            ..Default::default()
        },
    }));
    rows.sort_by(|a, b| a.host.id.cmp(&b.host.id));
    if conn.output == Output::Json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!(
            "no hosts answered in lattice `{}`; start one with `trellis node` or `trellis up`",
            client.lattice()
        );
        return Ok(());
    }
    println!(
        "{:<58} {:<20} {:<11} {:>9} {:>18} {:>17}  LABELS",
        "HOST", "NAME", "HEALTH", "UPTIME", "CPU", "MEMORY FREE"
    );
    for row in rows {
        let h = &row.host;
        // Hosts that do not report them (wasmCloud's) show dashes.
        let (cpu, memory) = match &h.resources {
            Some(r) => (
                format!(
                    "{:.0}% of {} (own {:.0}%)",
                    r.cpu_use * 100.0,
                    r.cpus,
                    r.process_cpu_use * 100.0
                ),
                format!(
                    "{:.1}/{:.1} GiB",
                    r.memory_available_bytes as f64 / GIB,
                    r.memory_total_bytes as f64 / GIB
                ),
            ),
            None => ("-".into(), "-".into()),
        };
        let labels = h
            .labels
            .iter()
            .filter(|(k, _)| !k.starts_with("hostcore."))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let health = row.health.map_or("-".to_string(), |h| h.to_string());
        // A host that did not answer the ping has no uptime to show: how long it is silent.
        let uptime = match row.last_seen_ms {
            Some(ms) if !row.answered => format!("silent {}s", ms / 1000),
            _ => format!("{}s", h.uptime_seconds),
        };
        println!(
            "{:<58} {:<20} {health:<11} {uptime:>9} {cpu:>18} {memory:>17}  {labels}",
            h.id, h.friendly_name
        );
    }
    Ok(())
}

/// A line of `get hosts`: the host as it answered a ping (or as the controller last heard of
/// it), with the controller's judgement of its health.
#[derive(serde::Serialize)]
struct HostRow {
    #[serde(flatten)]
    host: trellis_lattice::ctl::Host,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<HostHealth>,
    /// Milliseconds since the controller last heard from the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen_ms: Option<u64>,
    /// Whether the host answered the ping (one that did not is listed from the controller's
    /// knowledge, without labels or uptime).
    answered: bool,
}

/// What runs on the one host whose id starts with `host`.
async fn inventory(conn: &Connection, host: &str) -> anyhow::Result<()> {
    let client = conn.client().await?;
    // A whole id is asked directly: the host answers at once, with no second of gathering
    // pings. Only a prefix (or a host that does not answer) needs the list of hosts.
    if let Ok(inventory) = client.inventory(host).await {
        return print_inventory(conn, &inventory);
    }
    let hosts = client.hosts().await?;
    let matching: Vec<_> = hosts.iter().filter(|h| h.id.starts_with(host)).collect();
    let id = match matching.as_slice() {
        [one] => one.id.clone(),
        [] => {
            return Err(Failure::NotFound.error(format!(
                "no host of lattice `{}` has an id starting with `{host}`; see `trellis get hosts`",
                client.lattice()
            )))
        }
        _ => bail!(
            "`{host}` names {} hosts; give more of the id",
            matching.len()
        ),
    };
    let inventory = client.inventory(&id).await?;
    print_inventory(conn, &inventory)
}

fn print_inventory(
    conn: &Connection,
    inventory: &trellis_lattice::ctl::HostInventory,
) -> anyhow::Result<()> {
    if conn.output == Output::Json {
        return print_json(inventory);
    }
    println!("host {} ({})", inventory.host_id, inventory.friendly_name);
    println!(
        "{:<10} {:<28} {:>6} {:>8} {:>9} {:>6}  IMAGE",
        "KIND", "ID", "COUNT", "REQ/S", "P99 MS", "ERR%"
    );
    for c in &inventory.components {
        // Over the node's last 10 s; dashes when nothing was asked of it.
        let (rate, p99, errors) = match &c.traffic {
            Some(t) => (
                format!("{:.1}", t.requests_per_second),
                format!("{:.1}", t.p99_ms),
                format!("{:.1}", t.error_rate * 100.0),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<10} {:<28} {:>6} {rate:>8} {p99:>9} {errors:>6}  {}",
            "component", c.id, c.max_instances, c.image_ref
        );
    }
    for p in &inventory.providers {
        println!(
            "{:<10} {:<28} {:>6} {:>8} {:>9} {:>6}  {}",
            "provider",
            p.id,
            "-",
            "",
            "",
            "",
            p.image_ref.clone().unwrap_or_default()
        );
    }
    Ok(())
}

/// Every link: which source calls which target through which WIT interfaces, with its configs.
async fn links(conn: &Connection) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let mut links = client.links().await?;
    links.sort_by(|a, b| {
        (&a.source_id, &a.name, &a.target).cmp(&(&b.source_id, &b.name, &b.target))
    });
    if conn.output == Output::Json {
        return print_json(&links);
    }
    if links.is_empty() {
        println!("no links in lattice `{}`", client.lattice());
        return Ok(());
    }
    println!(
        "{:<24} {:<24} {:<10} {:<36} CONFIG",
        "SOURCE", "TARGET", "NAME", "INTERFACES"
    );
    for link in &links {
        let interfaces = format!(
            "{}:{}/{}",
            link.wit_namespace,
            link.wit_package,
            link.interfaces.join(",")
        );
        let mut config = Vec::new();
        if !link.source_config.is_empty() {
            config.push(format!("source={}", link.source_config.join(",")));
        }
        if !link.target_config.is_empty() {
            config.push(format!("target={}", link.target_config.join(",")));
        }
        println!(
            "{:<24} {:<24} {:<10} {:<36} {}",
            link.source_id,
            link.target,
            link.name,
            interfaces,
            config.join(" ")
        );
    }
    Ok(())
}

/// One named config's keys and values, or (without a name) the names of every config.
async fn config(conn: &Connection, name: Option<&str>) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let Some(name) = name else {
        let names = client.config_names().await?;
        if conn.output == Output::Json {
            return print_json(&names);
        }
        if names.is_empty() {
            println!("no configs in lattice `{}`", client.lattice());
        }
        for name in names {
            println!("{name}");
        }
        return Ok(());
    };
    let values = client.config(name).await?;
    if conn.output == Output::Json {
        return print_json(&values);
    }
    let width = values.keys().map(|k| k.len()).max().unwrap_or(3).max(3);
    println!("{:<width$}  VALUE", "KEY");
    for (key, value) in &values {
        println!("{key:<width$}  {value}");
    }
    Ok(())
}
