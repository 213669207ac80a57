//! `trellis app get|versions|delete|history`: reading and removing what the manifest store holds.

use anyhow::bail;
use trellis_cli::failure::Failure;
use trellis_lattice::api::{DeleteResult, GetResult};

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
