//! The real wasmCloud programs the conformance suite runs beside trellis: a wasmCloud 1.x host
//! (wasmcloud-host 0.27.1), wadm 0.21.1 and wash 0.39, built from crates.io by
//! `scripts/conformance.sh`, which passes their paths in the environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::process::{ProcessLattice, HEARTBEAT_SECS};

/// The wasmCloud host runner (`conformance/src/bin/wasmcloud-host-runner.rs`).
pub const HOST_ENV: &str = "TRELLIS_CONFORMANCE_HOST";
/// The wadm runner (`conformance/src/bin/wadm-runner.rs`).
pub const WADM_ENV: &str = "TRELLIS_CONFORMANCE_WADM";
/// `wash`, as `cargo install wash-cli` leaves it.
pub const WASH_ENV: &str = "TRELLIS_CONFORMANCE_WASH";

/// The program named by `env`; a clear panic when the suite was not started by its script.
pub fn program(env: &str) -> PathBuf {
    match std::env::var(env) {
        Ok(path) if Path::new(&path).exists() => PathBuf::from(path),
        Ok(path) => panic!("{env}={path} does not exist: run scripts/conformance.sh"),
        Err(_) => panic!(
            "{env} is not set: run scripts/conformance.sh, which builds the real programs and sets it"
        ),
    }
}

/// The nats-server address in the `host:port` form wadm and wash take.
fn nats_host_port(lattice: &ProcessLattice) -> String {
    lattice.nats.url().trim_start_matches("nats://").to_string()
}

/// Starts a wasmCloud host on the lattice (heartbeats as often as trellis nodes' in this suite,
/// so a trellis controller's host timeout applies alike); returns its index and host id.
pub async fn add_wasmcloud_host(
    lattice: &mut ProcessLattice,
    labels: &[(&str, &str)],
) -> anyhow::Result<(usize, String)> {
    let n = lattice
        .procs
        .iter()
        .filter(|p| p.name.starts_with("wasmcloud-host"))
        .count();
    let mut args = vec![
        "--nats-url".to_string(),
        lattice.nats.url(),
        "--lattice".into(),
        lattice.lattice.clone(),
        "--heartbeat-secs".into(),
        HEARTBEAT_SECS.to_string(),
    ];
    for (key, value) in labels {
        args.push("--label".into());
        args.push(format!("{key}={value}"));
    }
    let env = [("RUST_LOG", "info,wasmtime=warn,cranelift=warn".to_string())];
    let (index, line) = lattice
        .add_program(
            &format!("wasmcloud-host-{n}"),
            &program(HOST_ENV),
            &args,
            &env,
            "host-id ",
        )
        .await?;
    let host_id = line
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("no host id in {line:?}"))?
        .to_string();
    lattice.procs[index].host_id = Some(host_id.clone());
    Ok((index, host_id))
}

/// Starts wadm on the lattice's nats-server, with its defaults otherwise; returns its index.
pub async fn add_wadm(lattice: &mut ProcessLattice) -> anyhow::Result<usize> {
    let args = vec!["--nats-server".to_string(), nats_host_port(lattice)];
    let env = [("RUST_LOG", "info".to_string())];
    let (index, _) = lattice
        .add_program("wadm", &program(WADM_ENV), &args, &env, "wadm started")
        .await?;
    // wadm reads the lattice's state from its events; give its consumers a moment to exist.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(index)
}

/// Runs `wash {args}` against the lattice; returns its exit code and output.
pub async fn wash(lattice: &ProcessLattice, args: &[&str]) -> anyhow::Result<(i32, String)> {
    let (host, port) = nats_host_port(lattice)
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .context("nats address without a port")?;
    let home = lattice.dir().join("wash-home");
    std::fs::create_dir_all(&home)?;
    let mut command = tokio::process::Command::new(program(WASH_ENV));
    command
        .args(args)
        .env("WASMCLOUD_CTL_HOST", &host)
        .env("WASMCLOUD_CTL_PORT", &port)
        .env("WASMCLOUD_NATS_HOST", &host)
        .env("WASMCLOUD_NATS_PORT", &port)
        .env("WASMCLOUD_LATTICE", &lattice.lattice)
        // wash keeps contexts and keys under HOME: the test's own, not the user's.
        .env("HOME", &home)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .with_context(|| format!("`wash {}` ran over 60 s", args.join(" ")))??;
    Ok((
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    ))
}

/// App `name` at `version` as a wasmCloud user writes it: the echo component (`instances` of it,
/// image at `image`) behind the host's built-in HTTP server on `address`. Runs unchanged on
/// wasmCloud hosts and trellis nodes, under wadm and under trellis.
pub fn wasmcloud_echo_app(
    name: &str,
    version: &str,
    image: &Path,
    instances: u32,
    address: &str,
) -> String {
    // The HTTP server's entry continues the echo-only manifest's component list.
    crate::echo_only(name, version, image, instances)
        + &format!(
            r#"    - name: http
      type: capability
      properties:
        image: wasmcloud+builtin://http-server
      traits:
        - type: spreadscaler
          properties:
            instances: 1
        - type: link
          properties:
            target:
              name: echo
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source:
              config:
                - name: {name}-http
                  properties:
                    address: {address}
"#
        )
}
