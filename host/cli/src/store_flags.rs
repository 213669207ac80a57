//! The flags of `trellis controller` and `trellis up` that say what the controller keeps: the
//! versions and history of each app, and how its JetStream buckets are replicated. The
//! defaults suit one nats-server; a cluster wants `--kv-replicas 3`.

use clap::builder::TypedValueParser;
use clap::Args;
use trellis_controller::store::StoreSettings;
use trellis_lattice::limits;

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "What the controller keeps")]
pub struct StoreFlags {
    /// Versions kept per app; a put past it prunes the oldest that is not deployed (and says
    /// so). Every version lives in the app's one store entry.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MAX_VERSIONS,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub max_versions: usize,
    /// Deploy-history entries kept per app (`trellis app history`); older ones are pruned.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MAX_HISTORY,
          value_parser = clap::value_parser!(u16).range(1..).map(usize::from))]
    pub max_history: usize,
    /// Servers holding a copy of each controller bucket (manifests, statuses, owners), when
    /// the controller creates them: 1 for one nats-server, 3 for a cluster of three or more.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5).map(usize::from))]
    pub kv_replicas: usize,
    /// Revisions kept per key in those buckets: the controller reads only the latest; more
    /// let an operator see earlier values with `nats kv history`.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=64).map(i64::from))]
    pub kv_history: i64,
}

impl StoreFlags {
    pub fn settings(&self) -> StoreSettings {
        StoreSettings {
            max_versions: self.max_versions,
            max_history: self.max_history,
            durability: trellis_bus::Durability {
                replicas: self.kv_replicas,
                history: self.kv_history,
            },
        }
    }
}
