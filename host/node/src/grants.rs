//! What a component may reach beyond itself, as its app's manifest grants it. Nothing here does
//! I/O: the node builds a [`Grants`] from the component's links and runtime config whenever
//! they change ([`crate::environment`]), and the key-value store, the outgoing HTTP sender and
//! lattice calls ask it before they act.
//!
//! - **Key-value buckets**: the bucket its own `wasi:keyvalue` link names (`bucket` in the
//!   link's target config, as wasmCloud's NATS key-value provider reads it), or else its app's
//!   own bucket `trellis-kv-{lattice}-{app}`. Never a control-plane bucket (manifests, owners,
//!   status, controllers, links, configs) whatever a link names.
//! - **Outgoing HTTP**: only to the hosts its runtime config lists under
//!   `allowed_outbound_hosts` (as Spin's `allowed_outbound_hosts`), e.g.
//!   `https://api.example.com, http://*.internal:8080, https://*:*`. An entry is
//!   `[scheme://]host[:port]`: no scheme means http or https; no port means the scheme's
//!   default port; `*` as the port means any; `*` as the host any host, `*.domain` any host
//!   under `domain`. Loopback, link-local and this node's own listeners are reachable only
//!   through an entry that names that very host (never through a wildcard host or port).
//! - **Calls to other components by lattice name** (`http://infer/`): only along a `wasi:http`
//!   link with interface `outgoing-handler` from the caller to the callee, as wasmCloud links
//!   authorise one component to call another.
//!
//! See docs/security.md for who is trusted with what.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

/// The runtime config key listing a component's allowed outgoing HTTP hosts.
pub(crate) const ALLOWED_HOSTS_KEY: &str = "allowed_outbound_hosts";
/// Bucket name prefixes of the control plane: trellis's own buckets (`TRELLIS_MANIFESTS_…`,
/// `TRELLIS_OWNERS_…`, …), wasmCloud's (`CONFIGDATA_…`, `LATTICEDATA_…`), wadm's, and the apps'
/// own default buckets (another app's is never a component's to open by name).
const RESERVED_BUCKET_PREFIXES: [&str; 5] = [
    "TRELLIS_",
    "CONFIGDATA_",
    "LATTICEDATA_",
    "wadm",
    "trellis-kv-",
];
/// The identifiers that mean "this component's bucket".
const DEFAULT_IDENTIFIERS: [&str; 2] = ["", "default"];

/// Whether JetStream accepts `name` as a bucket name.
pub(crate) fn valid_bucket_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The bucket of an app's components that no link gives another: one per app, so apps never
/// share data by accident. Components started outside any app share the lattice's.
pub(crate) fn app_bucket(lattice: &str, app: Option<&str>) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    match app {
        Some(app) => format!("trellis-kv-{}-{}", clean(lattice), clean(app)),
        None => format!("trellis-kv-{}", clean(lattice)),
    }
}

fn reserved_bucket(name: &str) -> bool {
    RESERVED_BUCKET_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// Why a bucket was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BucketRefusal {
    /// Not a name JetStream accepts.
    Invalid,
    /// Not granted to this component (or a control-plane bucket).
    Denied(String),
}

/// Everything one component is granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Grants {
    /// Its app's own bucket.
    pub(crate) app_bucket: String,
    /// Buckets its `wasi:keyvalue` links name, in link order.
    pub(crate) linked_buckets: Vec<String>,
    pub(crate) outbound: OutboundHosts,
    /// Component ids it has a `wasi:http` `outgoing-handler` link to.
    pub(crate) callees: BTreeSet<String>,
}

impl Grants {
    /// The bucket `store.open(identifier)` opens, if the component may open it.
    pub(crate) fn bucket(&self, identifier: &str) -> Result<String, BucketRefusal> {
        let name = if DEFAULT_IDENTIFIERS.contains(&identifier) {
            self.linked_buckets
                .first()
                .unwrap_or(&self.app_bucket)
                .clone()
        } else if valid_bucket_name(identifier) {
            identifier.to_string()
        } else {
            return Err(BucketRefusal::Invalid);
        };
        if name == self.app_bucket {
            return Ok(name);
        }
        if reserved_bucket(&name) {
            return Err(BucketRefusal::Denied(format!(
                "{name} is a bucket of the lattice's control plane or of another app"
            )));
        }
        if self.linked_buckets.contains(&name) {
            return Ok(name);
        }
        Err(BucketRefusal::Denied(format!(
            "{name} is not granted: a component opens its app's bucket ({}) or a bucket its wasi:keyvalue link names",
            self.app_bucket
        )))
    }
}

/// A scheme an outgoing request may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "http" => Some(Self::Http),
            "https" => Some(Self::Https),
            _ => None,
        }
    }
    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.com`, kept as `.example.com`.
    Under(String),
    Exact(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    /// The scheme's default port.
    Default,
    Any,
    Exact(u16),
}

/// One entry of `allowed_outbound_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostRule {
    /// `None`: http and https.
    scheme: Option<Scheme>,
    host: HostPattern,
    port: PortPattern,
}

/// The hosts a component may send HTTP requests to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OutboundHosts {
    rules: Vec<HostRule>,
    /// The entries as written, for messages.
    text: String,
}

/// Where one outgoing request goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Destination<'a> {
    pub(crate) scheme: &'a str,
    /// Lower case, without brackets for IPv6.
    pub(crate) host: &'a str,
    pub(crate) port: u16,
}

impl fmt::Display for Destination<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

impl OutboundHosts {
    /// Parses a comma- or space-separated list of entries; an error names the entry.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let rules = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|entry| !entry.is_empty())
            .map(parse_rule)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            rules,
            text: text.trim().to_string(),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The entries as the config wrote them.
    pub(crate) fn as_text(&self) -> &str {
        &self.text
    }

    /// Whether a request to `to` is granted. A `sensitive` destination (loopback, link-local,
    /// this node's own listeners) needs an entry naming its host exactly, with no wildcard
    /// port either.
    pub(crate) fn allows(&self, to: Destination<'_>, sensitive: bool) -> bool {
        let Some(scheme) = Scheme::parse(to.scheme) else {
            return false;
        };
        let host = to.host.to_ascii_lowercase();
        self.rules.iter().any(|rule| {
            let scheme_ok = rule.scheme.is_none_or(|s| s == scheme);
            let host_ok = match &rule.host {
                HostPattern::Any => !sensitive,
                HostPattern::Under(suffix) => !sensitive && host.ends_with(suffix.as_str()),
                HostPattern::Exact(exact) => *exact == host,
            };
            let port_ok = match rule.port {
                PortPattern::Any => !sensitive,
                PortPattern::Default => to.port == scheme.default_port(),
                PortPattern::Exact(port) => to.port == port,
            };
            scheme_ok && host_ok && port_ok
        })
    }
}

fn parse_rule(entry: &str) -> Result<HostRule, String> {
    let bad = |why: &str| format!("{ALLOWED_HOSTS_KEY} entry {entry:?}: {why}");
    let (scheme, rest) = match entry.split_once("://") {
        Some(("*", rest)) => (None, rest),
        Some((scheme, rest)) => (
            Some(Scheme::parse(scheme).ok_or_else(|| bad("the scheme must be http, https or *"))?),
            rest,
        ),
        None => (None, entry),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err(bad("give a host and optional port, not a path or user"));
    }
    // `[v6]:port`, `[v6]`, `host:port` or `host`.
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address needs its closing ]"))?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("expected :port after ]"))?,
                ),
            ),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let host = host.to_ascii_lowercase();
    let host = match host.as_str() {
        "" => return Err(bad("the host is empty")),
        "*" => HostPattern::Any,
        _ if host.starts_with("*.") && host.len() > 2 && !host[2..].contains('*') => {
            HostPattern::Under(host[1..].to_string())
        }
        _ if host.contains('*') => {
            return Err(bad("a wildcard host is `*` or `*.domain`"));
        }
        _ => HostPattern::Exact(host),
    };
    let port = match port {
        None => PortPattern::Default,
        Some("*") => PortPattern::Any,
        Some(port) => PortPattern::Exact(
            port.parse()
                .map_err(|_| bad("the port must be a number from 0 to 65535, or *"))?,
        ),
    };
    Ok(HostRule { scheme, host, port })
}

/// Whether reaching `ip` means reaching this machine or its link: loopback, unspecified (which
/// connects to this machine), link-local (cloud metadata services live at 169.254.169.254),
/// IPv4 written as IPv6 included.
pub(crate) fn sensitive_ip(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests;
