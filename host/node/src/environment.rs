//! What a component sees of the lattice besides its requests: its runtime config, what it may
//! reach (its grants), its identity and its deadline. A guest reads it through `crate::guest`
//! (`wasi:config`, `wasi:keyvalue`, `wasi:logging`).
//!
//! Runtime config is the component's named configs (`properties.config` in the manifest, sent
//! as config names in `component.scale`) read from `CONFIGDATA_{lattice}` and merged in order,
//! later names winning. On top of them the node adds what only it knows, under keys no named
//! config can clash with by accident:
//! - `trellis.host.id`: the node's host id;
//! - `trellis.host.label.{name}`: each of the node's labels (e.g. `trellis.host.label.region`),
//!   so that one component spread over several nodes can tell where it runs.
//!
//! Two keys of the merged config are settings the node reads, not only the component:
//! - `allowed_outbound_hosts`: the hosts it may send HTTP requests to ([`crate::grants`]);
//! - `request_timeout_ms`: how long one of its requests may take, up to the node's bound
//!   ([`crate::limits::MAX_REQUEST_TIMEOUT`]; default: the node's `request_timeout`).
//!
//! An environment is computed when a component is scaled and again whenever a config, a link
//! or a label changes, and handed to each request as an immutable snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use trellis_bus::lattice_data::ConfigValues;

use crate::grants::{Grants, OutboundHosts, ALLOWED_HOSTS_KEY};
use crate::limits::MAX_REQUEST_TIMEOUT;

/// Runtime config key of a component's own request deadline, in milliseconds.
pub(crate) const REQUEST_TIMEOUT_KEY: &str = "request_timeout_ms";

/// Runtime config key holding the node's host id.
pub(crate) const HOST_ID_KEY: &str = "trellis.host.id";
/// Runtime config key prefix of the node's labels.
pub(crate) const HOST_LABEL_PREFIX: &str = "trellis.host.label.";

/// One component's view of its node, as of its last refresh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ComponentEnv {
    pub(crate) id: String,
    /// The app the component belongs to (annotation `wasmcloud.dev/appspec`), which lets a
    /// call name a sibling by its manifest name.
    pub(crate) app: Option<String>,
    /// What `wasi:config/store` answers.
    pub(crate) config: ConfigValues,
    /// Buckets, hosts and callees it may reach.
    pub(crate) grants: Grants,
    /// How long one of its requests may take.
    pub(crate) request_timeout: Duration,
}

impl ComponentEnv {
    /// Fails, naming the key, when a setting in the config cannot be read: the component then
    /// keeps its previous environment (or does not start) rather than run with a grant or
    /// deadline nobody asked for.
    pub(crate) fn new(
        id: &str,
        app: Option<String>,
        named_config: ConfigValues,
        host: (&str, &BTreeMap<String, String>),
        mut grants: Grants,
        node_request_timeout: Duration,
    ) -> Result<Self, String> {
        let (host_id, labels) = host;
        let mut config = named_config;
        config.insert(HOST_ID_KEY.into(), host_id.into());
        for (name, value) in labels {
            config.insert(format!("{HOST_LABEL_PREFIX}{name}"), value.clone());
        }
        if let Some(text) = config.get(ALLOWED_HOSTS_KEY) {
            grants.outbound = OutboundHosts::parse(text)?;
        }
        let request_timeout = match config.get(REQUEST_TIMEOUT_KEY) {
            None => node_request_timeout,
            Some(ms) => ms
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(|ms| Duration::from_millis(ms).min(MAX_REQUEST_TIMEOUT))
                .ok_or_else(|| {
                    format!("{REQUEST_TIMEOUT_KEY} {ms:?} is not a positive number of milliseconds")
                })?,
        };
        Ok(Self {
            id: id.into(),
            app,
            config,
            grants,
            request_timeout,
        })
    }
}
