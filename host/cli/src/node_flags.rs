//! The flags of `trellis node` and `trellis up` that bound what components may use: where file
//! images may come from, and time, memory, counts and sizes. Each limit defaults to the node's
//! named constant (`trellis_node::limits`), where its reason is written; operators of small
//! devices lower them, operators of big machines raise them.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use trellis_node::limits::{self, Limits};
use trellis_node::NodeConfig;

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "What components may use")]
pub struct NodeFlags {
    /// Read file images (`file://…` or a path) from this folder (repeat for several; in
    /// TRELLIS_ALLOW_IMAGES, separate them with `:`). `trellis node` reads no file image
    /// without it (OCI and built-in images need none); `trellis up` also allows its current
    /// folder and the folder of the manifest it deploys.
    #[arg(
        long = "allow-images",
        value_name = "DIR",
        env = "TRELLIS_ALLOW_IMAGES",
        value_delimiter = ':'
    )]
    pub allow_images: Vec<PathBuf>,
    /// Seconds one request may take before its instance is stopped (a component's
    /// `request_timeout_ms` config sets its own, up to 600 s).
    #[arg(long, value_name = "SECS", default_value_t = limits::DEFAULT_REQUEST_TIMEOUT.as_secs())]
    pub request_timeout: u64,
    /// MiB one instance may have in all its memories together.
    #[arg(long, value_name = "MIB", default_value_t = limits::DEFAULT_INSTANCE_MEMORY >> 20)]
    pub instance_memory: usize,
    /// Instances (all components' scale counts together) this node runs at once.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MAX_NODE_INSTANCES)]
    pub max_instances: u32,
    /// Requests one component may have in flight on this node, running or waiting.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: usize,
    /// MiB of request body the node hands a component (413 past it).
    #[arg(long, value_name = "MIB", default_value_t = limits::DEFAULT_MAX_REQUEST_BODY >> 20)]
    pub max_request_body: u64,
    /// Open connections one HTTP listener accepts.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// MiB each key-value bucket the node creates for components may hold.
    #[arg(long, value_name = "MIB", default_value_t = limits::DEFAULT_KV_BUCKET_MAX_BYTES >> 20)]
    pub kv_bucket_size: i64,
    /// MiB of the largest component image the node reads, from a file or a registry.
    #[arg(long, value_name = "MIB", default_value_t = NodeConfig::default().max_image_bytes >> 20)]
    pub max_image_size: u64,
    /// Seconds the HTTP server holds a request for a component that runs on no node, while an
    /// instance starts (an app an autoscaler scaled to zero); 0 answers 503 at once.
    #[arg(long, value_name = "SECS", default_value_t = limits::DEFAULT_HOLD_FOR_INSTANCE.as_secs())]
    pub hold_for_instance: u64,
    /// Seconds one pull from a registry may take.
    #[arg(long, value_name = "SECS", default_value_t = NodeConfig::default().image_pull_timeout.as_secs())]
    pub image_pull_timeout: u64,
}

impl NodeFlags {
    /// Sets the limits of `config` from the flags, and adds the allowed image folders.
    pub fn apply(&self, config: &mut NodeConfig) {
        config
            .allowed_image_dirs
            .extend(self.allow_images.iter().cloned());
        config.limits = Limits {
            request_timeout: Duration::from_secs(self.request_timeout.max(1)),
            instance_memory: self.instance_memory.saturating_mul(1 << 20),
            max_node_instances: self.max_instances,
            max_concurrent_requests: self.max_concurrent_requests.max(1),
            max_request_body: self.max_request_body.saturating_mul(1 << 20),
            max_connections: self.max_connections.max(1),
            kv_bucket_max_bytes: self.kv_bucket_size.saturating_mul(1 << 20),
            hold_for_instance: Duration::from_secs(self.hold_for_instance),
            ..config.limits.clone()
        };
        config.max_image_bytes = self.max_image_size.saturating_mul(1 << 20);
        config.image_pull_timeout = Duration::from_secs(self.image_pull_timeout.max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: NodeFlags,
    }

    #[test]
    fn defaults_are_the_nodes_own() {
        let mut config = NodeConfig::default();
        Cli::parse_from(["node"]).flags.apply(&mut config);
        assert_eq!(config.limits, Limits::default());
        assert_eq!(
            config.max_image_bytes,
            NodeConfig::default().max_image_bytes
        );
        assert_eq!(
            config.image_pull_timeout,
            NodeConfig::default().image_pull_timeout
        );
    }

    #[test]
    fn flags_set_the_limits() {
        let mut config = NodeConfig::default();
        Cli::parse_from([
            "node",
            "--request-timeout",
            "5",
            "--instance-memory",
            "32",
            "--max-instances",
            "8",
            "--max-request-body",
            "1",
            "--allow-images",
            "/srv/images",
        ])
        .flags
        .apply(&mut config);
        assert_eq!(
            config.allowed_image_dirs,
            [std::path::PathBuf::from("/srv/images")]
        );
        assert_eq!(config.limits.request_timeout, Duration::from_secs(5));
        assert_eq!(config.limits.instance_memory, 32 << 20);
        assert_eq!(config.limits.max_node_instances, 8);
        assert_eq!(config.limits.max_request_body, 1 << 20);
    }
}
