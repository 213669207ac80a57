//! Every bound on what a client or a plugin hands the controller, in one place with its reason.
//!
//! Bad input must cost at most its size: each limit here is checked before the work it guards,
//! and hitting one gives an error that names the limit and its value. Limits that operators
//! may need to move (versions and history kept per app) are defaults of controller settings;
//! the rest are properties of the wire format and fixed.
//!
//! What a plugin may answer (commands per call, text lengths, diagnostics per call) is bounded
//! where plugins are called, in `trellis_runtime::output`; node limits (instance memory,
//! request time and size) are in `trellis_node::limits`.

/// The largest manifest text accepted. NATS carries a put in one message, 1 MiB by default;
/// a manifest this size still leaves room in that message and in the store's KV value (one
/// per app) for the app's other fields.
pub const MAX_MANIFEST_BYTES: usize = 768 << 10;

/// The most components one manifest may declare. Each is at least one scaler the controller
/// plans on every pass; 10,000 is far beyond any application seen and keeps a pass over the
/// largest app well under a second (docs/benchmarks.md, manifest size).
pub const MAX_COMPONENTS: usize = 10_000;

/// The most traits one manifest may declare in all. Each trait is one plugin call per pass.
pub const MAX_TRAITS: usize = 20_000;

/// The most traits one component may carry: a component has a handful (a scaler, its links);
/// hundreds would be a generated manifest gone wrong.
pub const MAX_TRAITS_PER_COMPONENT: usize = 256;

/// How many versions the store keeps per app by default. Older versions that are not
/// deployed are pruned (the put says so). Every version lives in the app's one KV value, so
/// this also bounds that value's growth.
pub const DEFAULT_MAX_VERSIONS: usize = 50;

/// How many deploy-history entries the store keeps per app by default: enough to roll back
/// and to read what happened over months of deploys; older entries are pruned.
pub const DEFAULT_MAX_HISTORY: usize = 100;

/// The most diagnostics one validation returns. A validator listing more is not helping a
/// reader; the rest are counted in one last finding.
pub const MAX_DIAGNOSTICS: usize = 1_000;

/// Names of apps and components become NATS subject tokens, KV keys and ids on hosts: they
/// are kept short enough that every derived name stays within the server's limits.
pub const MAX_NAME_BYTES: usize = 128;

/// A limit that an input went past.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {found}, over the limit of {limit}{hint}")]
pub struct OverLimit {
    pub what: &'static str,
    pub found: usize,
    pub limit: usize,
    /// What the user can do, with a leading "; ", or empty.
    pub hint: &'static str,
}

/// Checks `found` against `limit`.
pub fn check(
    what: &'static str,
    found: usize,
    limit: usize,
    hint: &'static str,
) -> Result<(), OverLimit> {
    if found > limit {
        return Err(OverLimit {
            what,
            found,
            limit,
            hint,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_limit_names_the_limit() {
        let e = check(
            "the number of components",
            14_000,
            MAX_COMPONENTS,
            "; split the app",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the number of components is 14000, over the limit of 10000; split the app"
        );
        assert!(check("x", 3, 3, "").is_ok());
    }
}
