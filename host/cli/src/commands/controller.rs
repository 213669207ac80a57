//! `trellis controller`: a controller for one or more lattices, and the parts `trellis up`
//! shares with it (the config file's plugin settings, the HTTP API).

use std::time::Duration;

use trellis_cli::connect::{ConnectArgs, NatsSettings};
use trellis_controller::{Controller, ControllerConfig};

use crate::args::ControllerArgs;

/// `trellis controller`: runs until Ctrl-C, with the HTTP API if --http asks for it.
pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let nats = args.conn.nats.resolve()?;
    let api_prefix = args.conn.api.api_prefix.clone();
    let mut lattices = vec![nats.lattice.clone()];
    lattices.extend(args.also.iter().cloned());
    let mut config = ControllerConfig {
        nats_url: nats.url.clone(),
        lattices,
        plugin_dir: args.plugins.clone(),
        store: args.store.settings(),
        api_prefix: api_prefix.clone(),
        jetstream_domain: args.domain.clone(),
        ..ControllerConfig::default()
    };
    config.settings.host_timeout = Duration::from_secs(args.host_timeout);
    config.settings.health.suspect_after_missed = args.suspect_after;
    config.settings.health.healthy_after = args.healthy_after;
    if config.settings.health.suspect_silence() >= config.settings.host_timeout {
        anyhow::bail!(
            "--suspect-after {} heartbeats is not shorter than --host-timeout {}s: a host would be \
             forgotten before it is ever suspect; lower --suspect-after or raise --host-timeout",
            args.suspect_after,
            args.host_timeout
        );
    }
    config.settings.sweep_interval = Duration::from_secs(args.sweep_interval);
    apply_plugin_settings(&mut config, &args.conn.nats)?;
    config.runtime.cache_dir = args.cache.dir();
    let http = match args.http {
        Some(address) => {
            let token = args.http_token.clone();
            Some(serve_http(&nats, address, token, Some(api_prefix)).await?)
        }
        None => None,
    };
    let controller = Controller::start_with_options(config, nats.options().await?).await?;
    if let Some(http) = &http {
        println!("HTTP API and dashboard on {}", http.url());
    }
    println!("controller running; Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    if let Some(http) = http {
        http.stop().await;
    }
    controller.stop().await;
    Ok(())
}

/// The config file's `[plugins]` (folder, deadline and memory limits, per plugin or for all)
/// and `[placement]` (the ranking shortlist),
/// the same for `trellis up` as for `trellis controller`.
pub fn apply_plugin_settings(
    config: &mut ControllerConfig,
    conn: &ConnectArgs,
) -> anyhow::Result<()> {
    if let Some(file) = conn.config_file()? {
        let (base, per_plugin) = file.limits()?;
        config.runtime.default_limits = base;
        config.runtime.per_plugin = per_plugin;
        config.runtime.shortlist = file.placement.shortlist()?;
        config.runtime.default_policy = file.placement.default_policy.clone();
        if let Some(dir) = file.plugins.dir {
            config.plugin_dir = dir;
        }
    }
    Ok(())
}

/// Serves the HTTP API and dashboard of the lattice (trellis-http) on a NATS connection of its own.
/// `api_prefix`: the controllers' (`None`: wadm's default).
pub async fn serve_http(
    settings: &NatsSettings,
    address: std::net::SocketAddr,
    token: Option<String>,
    api_prefix: Option<String>,
) -> anyhow::Result<trellis_http::HttpServer> {
    let client = settings.connect().await?;
    let config = trellis_http::HttpConfig {
        address,
        token,
        lattice: settings.lattice.clone(),
        api_prefix,
    };
    trellis_http::HttpServer::start(config, client).await
}
