//! `trellis get links|config`: the lattice-wide state the control interface holds.

use crate::{print_json, Connection, Output};

/// Every link: which source calls which target through which WIT interfaces, with its configs.
pub async fn links(conn: &Connection) -> anyhow::Result<()> {
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
pub async fn config(conn: &Connection, name: Option<&str>) -> anyhow::Result<()> {
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
