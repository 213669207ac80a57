//! `trellis app …`: storing manifests and reading them back, deploying, watching and rolling
//! back apps, and planning a deploy without sending it.

mod plan;
mod rollout;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use trellis_cli::client::{load_manifest_file, ApiClient};
use trellis_cli::failure::Failure;
use trellis_lattice::api::{
    DeleteResult, DeployResult, GetResult, PutResult, RolloutAction, StatusType,
};
use trellis_lattice::ErrorCode;

use super::api_error;
use crate::args::{AppCmd, Connection};
use crate::output::{print_json, print_progress, Output};

pub async fn run(cmd: AppCmd) -> anyhow::Result<()> {
    match cmd {
        AppCmd::Validate {
            conn,
            file,
            plugins,
            cache,
        } => validate(&conn, &file, plugins.as_deref(), cache.dir()).await,
        AppCmd::Rollout(cmd) => rollout::run(cmd).await,
        AppCmd::Put { conn, file } => put(&conn, &file).await,
        AppCmd::Deploy {
            conn,
            app,
            version,
            no_wait,
            timeout,
        } => {
            let timeout = Duration::from_secs(timeout);
            deploy(&conn, &app, version.as_deref(), no_wait, timeout).await
        }
        AppCmd::Undeploy {
            conn,
            name,
            keep_running,
        } => undeploy(&conn, &name, keep_running).await,
        AppCmd::Status {
            conn,
            name,
            watch: true,
        } => watch(&conn, &name).await,
        AppCmd::Status {
            conn,
            name,
            watch: false,
        } => status(&conn, &name).await,
        AppCmd::List { conn } => list(&conn).await,
        AppCmd::Get {
            conn,
            name,
            version,
        } => get(&conn, &name, version.as_deref()).await,
        AppCmd::Versions { conn, name } => versions(&conn, &name).await,
        AppCmd::Delete {
            conn,
            name,
            version,
        } => delete(&conn, &name, version.as_deref()).await,
        AppCmd::History { conn, name } => history(&conn, &name).await,
        AppCmd::Plan {
            conn,
            name,
            version,
        } => plan(&conn, &name, version.as_deref()).await,
        AppCmd::Rollback {
            conn,
            name,
            no_wait,
            timeout,
        } => {
            let timeout = Duration::from_secs(timeout);
            rollback(&conn, &name, no_wait, timeout).await
        }
    }
}

/// The controller's findings about a manifest, like a compiler's; an error if `put` would
/// refuse it.
async fn validate(
    conn: &Connection,
    file: &Path,
    plugins: Option<&Path>,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read manifest {}", file.display()))?;
    let response = match plugins {
        Some(dir) => {
            let (response, refused) = trellis_cli::validate::offline(dir, &text, cache_dir)?;
            for (file, why) in refused {
                eprintln!("warning: plugin {} not loaded (a controller would not load it either): {why}", file.display());
            }
            response
        }
        None => conn.client().await.map_err(|e| {
            e.context("no controller to validate with: give the plugin folder to validate offline (`--plugins DIR`)")
        })?.validate(&text).await?,
    };
    if conn.output == Output::Json {
        print_json(&response)?;
    } else {
        print!("{}", trellis_cli::validate::render(file, &response));
    }
    if !response.valid {
        bail!("{} has errors: `put` would refuse it", file.display());
    }
    Ok(())
}

/// Stores a manifest file as a new version of its app.
async fn put(conn: &Connection, file: &Path) -> anyhow::Result<()> {
    let manifest = load_manifest_file(file)?;
    let client = conn.client().await?;
    let resp = client.put(&manifest).await?;
    if conn.output == Output::Json {
        print_json(&resp)?;
    }
    if resp.result == PutResult::Error {
        return Err(api_error(
            resp.code,
            format!("{}: {}", file.display(), resp.message),
        ));
    }
    if conn.output == Output::Table {
        println!(
            "put {} version {} ({} versions stored)",
            resp.name, resp.current_version, resp.total_versions
        );
        if !resp.pruned.is_empty() {
            println!(
                "pruned the oldest version(s) {} (the store keeps the newest --max-versions)",
                resp.pruned.join(", ")
            );
        }
    }
    Ok(())
}

/// Puts a manifest file and deploys the version it holds (or `version`). A version already
/// stored is deployed as it is. Returns the app name.
pub async fn put_and_deploy(
    client: &ApiClient,
    path: &Path,
    version: Option<&str>,
) -> anyhow::Result<String> {
    let manifest = load_manifest_file(path)?;
    let name = manifest.name().to_string();
    let put = client.put(&manifest).await?;
    match put.result {
        // That version is stored already: deploy it.
        PutResult::Error if put.code == Some(ErrorCode::Exists) => {}
        PutResult::Error => {
            return Err(api_error(
                put.code,
                format!("{}: {}", path.display(), put.message),
            ))
        }
        _ => {}
    }
    let version = version.map(String::from).or_else(|| {
        let v = manifest.version();
        (!v.is_empty()).then(|| v.to_string())
    });
    let deployed = client.deploy(&name, version.as_deref()).await?;
    if deployed.result != DeployResult::Acknowledged {
        return Err(api_error(
            deployed.code,
            format!("cannot deploy {name}: {}", deployed.message),
        ));
    }
    Ok(name)
}

/// Deploys a manifest file (put, then deploy) or a stored app, and waits until it is deployed
/// unless `no_wait`.
async fn deploy(
    conn: &Connection,
    app: &str,
    version: Option<&str>,
    no_wait: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let path = Path::new(app);
    let name = if path.is_file() {
        put_and_deploy(&client, path, version).await?
    } else {
        let resp = client.deploy(app, version).await?;
        if resp.result != DeployResult::Acknowledged {
            return Err(api_error(
                resp.code,
                format!("cannot deploy {app}: {}", resp.message),
            ));
        }
        app.to_string()
    };
    let json = conn.output == Output::Json;
    // A version with a rollout policy starts a rollout rather than replacing the app.
    let rolling = client
        .rollout(RolloutAction::Get, &name, None)
        .await
        .ok()
        .and_then(|r| r.rollout)
        .filter(|r| r.state.active());
    if let Some(r) = rolling {
        if !json {
            println!(
                "rolling {name} out from {} to {} ({}); `trellis app rollout status {name}` shows it, `… abort {name}` stops it",
                r.from, r.to, r.strategy
            );
        }
        if no_wait {
            return Ok(());
        }
        return rollout::follow(&client, &name, json).await;
    }
    if no_wait {
        println!("deploying {name}");
        return Ok(());
    }
    let status = client
        .wait_deployed(&name, timeout, |s| {
            if !json {
                print_progress(&name, s)
            }
        })
        .await?;
    if json {
        print_json(&status)?;
    }
    Ok(())
}

async fn undeploy(conn: &Connection, name: &str, keep_running: bool) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let resp = client.undeploy(name, keep_running).await?;
    if resp.result != DeployResult::Acknowledged {
        return Err(api_error(
            resp.code,
            format!("cannot undeploy {name}: {}", resp.message),
        ));
    }
    println!("{}", resp.message);
    Ok(())
}

/// `app status --watch`: every change, per scaler, until the app is deployed or failed.
async fn watch(conn: &Connection, name: &str) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let json = conn.output == Output::Json;
    client
        .wait_deployed(name, Duration::from_secs(24 * 3600), |s| {
            if json {
                let _ = print_json(s);
            } else {
                print_progress(name, s);
                for scaler in &s.scalers {
                    println!(
                        "    {:<28} {:<12} {}",
                        scaler.id,
                        format!("{:?}", scaler.info.status_type).to_lowercase(),
                        scaler.info.message
                    );
                }
            }
        })
        .await?;
    Ok(())
}

/// The app's status and each scaler's; a failed app is an error (exit code 5).
async fn status(conn: &Connection, name: &str) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let resp = client.status(name).await?;
    let Some(status) = resp.status else {
        return Err(api_error(resp.code, resp.message));
    };
    let failed = status.info.status_type == StatusType::Failed;
    if conn.output == Output::Json {
        print_json(&status)?;
        if failed {
            return Err(Failure::AppFailed.error(format!("app {name} failed")));
        }
        return Ok(());
    }
    print_progress(name, &status);
    println!(
        "{:<28} {:<14} {:<12} MESSAGE",
        "SCALER", "COMPONENT", "STATUS"
    );
    for s in &status.scalers {
        println!(
            "{:<28} {:<14} {:<12} {}",
            s.id,
            s.name,
            format!("{:?}", s.info.status_type).to_lowercase(),
            s.info.message
        );
    }
    if failed {
        return Err(Failure::AppFailed.error(format!("app {name} failed: {}", status.info.message)));
    }
    Ok(())
}

/// Every stored app: its latest and deployed versions and its status.
async fn list(conn: &Connection) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let apps = client.list().await?;
    if conn.output == Output::Json {
        return print_json(&apps);
    }
    println!("{:<20} {:<14} {:<14} STATUS", "NAME", "LATEST", "DEPLOYED");
    for a in apps {
        println!(
            "{:<20} {:<14} {:<14} {}",
            a.name,
            a.version,
            a.deployed_version.unwrap_or_else(|| "-".into()),
            format!("{:?}", a.detailed_status.info.status_type).to_lowercase()
        );
    }
    Ok(())
}

/// Prints one stored manifest: YAML for people (ready to edit and `app put` again), JSON with
/// `-o json`.
async fn get(conn: &Connection, name: &str, version: Option<&str>) -> anyhow::Result<()> {
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
async fn versions(conn: &Connection, name: &str) -> anyhow::Result<()> {
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
async fn delete(conn: &Connection, name: &str, version: Option<&str>) -> anyhow::Result<()> {
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
            return Err(api_error(
                resp.code,
                format!("cannot delete app {name}: {}", resp.message),
            ))
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
async fn history(conn: &Connection, name: &str) -> anyhow::Result<()> {
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
async fn plan(conn: &Connection, name: &str, version: Option<&str>) -> anyhow::Result<()> {
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
    print!("{}", plan::render_plan(&resp));
    Ok(())
}

/// Deploys the version deployed before the current one, and waits like `app deploy`.
async fn rollback(
    conn: &Connection,
    name: &str,
    no_wait: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let resp = client.rollback(name).await?;
    if resp.result != DeployResult::Acknowledged {
        return Err(api_error(
            resp.code,
            format!("cannot roll {name} back: {}", resp.message),
        ));
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
                print_progress(name, s)
            }
        })
        .await?;
    if json {
        print_json(&status)?;
    }
    Ok(())
}
