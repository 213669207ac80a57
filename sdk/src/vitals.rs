//! How hosts are doing and how much traffic components get (contract 0.2.0): what policies of
//! load (autoscaling, keeping work off busy or flapping hosts) decide on. Read through
//! [`Lattice::host_vitals`](crate::Lattice::host_vitals) and
//! [`Lattice::component_traffic`](crate::Lattice::component_traffic); staged in unit tests with
//! [`TestLattice`](crate::testing::TestLattice)'s `with_vitals`, `with_health` and
//! `with_traffic`.

/// A host's health as the controller judges it from its heartbeats, with hysteresis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Health {
    /// Heartbeats arrive as expected.
    #[default]
    Healthy,
    /// Missed heartbeats lately, or came back lately after being unreachable: it keeps what it
    /// runs, and the controller's ranking passes it over while a healthy host fits.
    Suspect,
}

/// How a host is doing. Resources are zero where the host does not report them (`reported`
/// false: wasmCloud hosts).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostVitals {
    /// The host these vitals are for.
    pub host_id: String,
    /// The controller's judgement of the host from its heartbeats.
    pub health: Health,
    /// Whether the host reports its resources; when false (wasmCloud hosts) the resource
    /// figures are zero and mean nothing.
    pub reported: bool,
    /// CPUs the host's process may use.
    pub cpus: u32,
    /// Share of the machine's CPU time in use, 0–1.
    pub cpu_use: f64,
    /// Share of the machine's CPU time the host's own process used (its components' work),
    /// 0–1: tells hosts apart where several share a machine.
    pub process_cpu_use: f64,
    /// Total memory of the host's machine, in bytes.
    pub memory_total_bytes: u64,
    /// Memory available for new work without swapping.
    pub memory_available_bytes: u64,
    /// Instances of anything running there.
    pub instances: u64,
}

impl HostVitals {
    /// A healthy host that reports no resources.
    pub fn unreported(host_id: &str) -> Self {
        Self {
            host_id: host_id.to_string(),
            ..Self::default()
        }
    }

    /// A healthy host reporting these resources (`cpu_use` 0–1).
    pub fn reporting(
        host_id: &str,
        cpus: u32,
        cpu_use: f64,
        memory_total_bytes: u64,
        memory_available_bytes: u64,
    ) -> Self {
        Self {
            host_id: host_id.to_string(),
            reported: true,
            cpus,
            cpu_use,
            memory_total_bytes,
            memory_available_bytes,
            ..Self::default()
        }
    }

    /// Free CPU, in CPUs (`cpus × (1 − cpu_use)`); 0 when unreported.
    pub fn free_cpus(&self) -> f64 {
        f64::from(self.cpus) * (1.0 - self.cpu_use.clamp(0.0, 1.0))
    }
}

/// A component's requests on one host over the host's recent window (10 s on trellis nodes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Traffic {
    /// The host that measured these figures.
    pub host_id: String,
    /// Requests being served or waiting for an instance now.
    pub in_flight: u32,
    /// Requests per second over the window.
    pub requests_per_second: f64,
    /// Median time to an answer, in milliseconds.
    pub p50_ms: f64,
    /// 99th-percentile time to an answer, in milliseconds.
    pub p99_ms: f64,
    /// Share of requests answered with a server error (5xx), 0–1.
    pub error_rate: f64,
    /// How many seconds the figures cover (10 on trellis nodes).
    pub window_seconds: u32,
}

impl Traffic {
    /// `requests_per_second` and `in_flight` on `host_id` (the rest zero): enough for most tests.
    pub fn on(host_id: &str, requests_per_second: f64, in_flight: u32) -> Self {
        Self {
            host_id: host_id.to_string(),
            requests_per_second,
            in_flight,
            window_seconds: 10,
            ..Self::default()
        }
    }
}
