//! `trellis node`: a lattice host of this process, or many simulated ones.

use std::collections::BTreeMap;
use std::time::Duration;

use trellis_node::{Node, NodeConfig};

use crate::args::NodeArgs;

/// `trellis node`: one node, or `--simulate N` hosts that run no wasm, until Ctrl-C.
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let nats = args.conn.nats.resolve()?;
    // What the device description says, then the flags (which win on the same key).
    let mut labels = match &args.device {
        Some(path) => trellis_node::device::load(path)?,
        None => BTreeMap::new(),
    };
    labels.extend(args.labels);
    if let Some(hosts) = args.simulate {
        let sim = trellis_sim::SimLattice::start_with_options(
            trellis_sim::SimConfig {
                nats_url: nats.url.clone(),
                lattice: nats.lattice.clone(),
                hosts,
                heartbeat_interval: Duration::from_secs(args.heartbeat.max(1)),
                labels,
                jetstream_domain: args.domain.clone(),
                ..trellis_sim::SimConfig::default()
            },
            nats.options().await?,
        )
        .await?;
        println!(
            "{} simulated hosts joined lattice {}; Ctrl-C to stop",
            sim.running(),
            nats.lattice
        );
        tokio::signal::ctrl_c().await?;
        return sim.stop().await;
    }
    let mut config = NodeConfig {
        nats_url: nats.url.clone(),
        lattice: nats.lattice.clone(),
        labels,
        heartbeat_interval: Duration::from_secs(args.heartbeat.max(1)),
        friendly_name: args.name,
        jetstream_domain: args.domain,
        ..NodeConfig::default()
    };
    args.sandbox.apply(&mut config);
    let node = Node::start_with_options(config, nats.options().await?).await?;
    println!(
        "node {} joined lattice {}; Ctrl-C to stop",
        node.host_id(),
        nats.lattice
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = node.stopped() => {}
    }
    node.stop().await
}
