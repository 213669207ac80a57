//! Every bound a node puts on the components it runs: time, memory, counts, sizes.
//!
//! A component is someone else's code: a request that never ends, an instance that grows its
//! memory without end or a body of many gigabytes must cost the node a bounded amount and
//! nothing more. Each bound is a named default here with its reason, settable by the operator
//! through [`Limits`] (`trellis node --help` lists the flags), and hitting it gives an error that
//! names the bound.

use std::time::Duration;

use wasmtime::ResourceLimiter;

/// How long one request may take, from its arrival to the end of the instance that serves it,
/// when the component sets nothing (`request_timeout_ms` in its config). Long enough for a
/// handler that calls a slow backend, short enough that a looping component gives its slot
/// back before clients pile up.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `request_timeout_ms` a component may ask for: past it, the node's bound wins.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Memory one instance may have in all its linear memories together (a component has several
/// core modules, each with its own memory). Generous for HTTP handlers; stops a runaway guest
/// from taking the node down with it.
pub const DEFAULT_INSTANCE_MEMORY: usize = 256 << 20;
/// Table elements one instance may have in all its tables together (each element is a
/// pointer on the host). Real components use a few thousand at most.
pub const DEFAULT_INSTANCE_TABLE_ELEMENTS: usize = 100_000;
/// Host resources (HTTP fields, streams, buckets, …) one instance may hold at once. wasmtime's
/// own default (a million) lets one request take hundreds of megabytes of host memory.
pub const DEFAULT_INSTANCE_RESOURCES: usize = 100_000;
/// Core instances, tables and memories one component instance may create: a component built
/// by today's toolchains has a few dozen core instances; the bound only stops a pathological
/// one from exhausting the store's bookkeeping.
pub const MAX_CORE_INSTANCES: usize = 1_000;
pub const MAX_TABLES: usize = 1_000;
pub const MAX_MEMORIES: usize = 100;
/// Instances (the sum of every component's scale count) a node runs at once. Each may take
/// [`DEFAULT_INSTANCE_MEMORY`]: a small device should lower this.
pub const DEFAULT_MAX_NODE_INSTANCES: u32 = 1_000;
/// Requests one component may have on this node at once, running and waiting for a free
/// instance together. Past it a request is refused at once (503) rather than queued without
/// end behind a component that cannot keep up.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1_000;
/// The largest request body the node hands a component (413 past it).
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 16 << 20;
/// How long a client may take to send a request's headers (slow-loris connections).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections one HTTP listener accepts; past it new connections are closed at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1_024;
/// The size of each key-value bucket a node creates for components, so that one app cannot
/// fill JetStream's storage for the whole lattice.
pub const DEFAULT_KV_BUCKET_MAX_BYTES: i64 = 64 << 20;

/// How long the HTTP server holds a request for a component that runs on no node, waiting for
/// an instance to start: an app scaled to zero by an autoscaler starts one when a request
/// waits (a component of a few MiB starts in well under a second; a cold node may take
/// seconds), and a client would rather wait than get a 503. 0 answers 503 at once.
pub const DEFAULT_HOLD_FOR_INSTANCE: Duration = Duration::from_secs(30);

/// The bounds a node applies, each defaulting to the constant of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub request_timeout: Duration,
    pub instance_memory: usize,
    pub instance_table_elements: usize,
    pub instance_resources: usize,
    pub max_node_instances: u32,
    pub max_concurrent_requests: usize,
    pub max_request_body: u64,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub kv_bucket_max_bytes: i64,
    pub hold_for_instance: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            instance_memory: DEFAULT_INSTANCE_MEMORY,
            instance_table_elements: DEFAULT_INSTANCE_TABLE_ELEMENTS,
            instance_resources: DEFAULT_INSTANCE_RESOURCES,
            max_node_instances: DEFAULT_MAX_NODE_INSTANCES,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            kv_bucket_max_bytes: DEFAULT_KV_BUCKET_MAX_BYTES,
            hold_for_instance: DEFAULT_HOLD_FOR_INSTANCE,
        }
    }
}

/// Bounds one instance's memories and tables in total, and remembers which bound it hit so
/// that the request's error can name it (a guest whose `memory.grow` fails usually aborts with
/// a bare trap).
pub(crate) struct InstanceLimiter {
    memory_cap: usize,
    table_cap: usize,
    memory: usize,
    table_elements: usize,
    /// The first bound hit, as a sentence.
    pub(crate) hit: Option<String>,
}

impl InstanceLimiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            memory_cap: limits.instance_memory,
            table_cap: limits.instance_table_elements,
            memory: 0,
            table_elements: 0,
            hit: None,
        }
    }
}

/// The total after one memory or table goes from `current` to `desired`, if within `cap`.
fn grown(total: usize, current: usize, desired: usize, cap: usize) -> Option<usize> {
    let total = total.saturating_sub(current).checked_add(desired)?;
    (total <= cap).then_some(total)
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match grown(self.memory, current, desired, self.memory_cap) {
            Some(total) => {
                self.memory = total;
                Ok(true)
            }
            None => {
                self.hit.get_or_insert_with(|| {
                    format!(
                        "the instance reached the node's memory limit of {} MiB (all its memories together)",
                        self.memory_cap >> 20
                    )
                });
                Ok(false)
            }
        }
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match grown(self.table_elements, current, desired, self.table_cap) {
            Some(total) => {
                self.table_elements = total;
                Ok(true)
            }
            None => {
                self.hit.get_or_insert_with(|| {
                    format!(
                        "the instance reached the node's limit of {} table elements (all its tables together)",
                        self.table_cap
                    )
                });
                Ok(false)
            }
        }
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }
    fn tables(&self) -> usize {
        MAX_TABLES
    }
    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(memory: usize, tables: usize) -> InstanceLimiter {
        InstanceLimiter::new(&Limits {
            instance_memory: memory,
            instance_table_elements: tables,
            ..Limits::default()
        })
    }

    #[test]
    fn memory_is_bounded_across_all_memories() {
        let mut l = limiter(100, 10);
        assert!(l.memory_growing(0, 60, None).unwrap());
        // A second memory may not take the first one's total past the cap.
        assert!(!l.memory_growing(0, 50, None).unwrap());
        assert!(l.hit.as_deref().unwrap().contains("memory limit"));
        assert!(l.memory_growing(0, 40, None).unwrap());
        // Growing the first memory counts only the growth.
        assert!(!l.memory_growing(60, 61, None).unwrap());
        assert_eq!(l.memory, 100);
    }

    #[test]
    fn tables_are_bounded_across_all_tables() {
        let mut l = limiter(100, 10);
        assert!(l.table_growing(0, 6, None).unwrap());
        assert!(!l.table_growing(0, 5, None).unwrap());
        assert!(l.hit.as_deref().unwrap().contains("10 table elements"));
        assert!(l.table_growing(6, 10, None).unwrap());
        assert_eq!(l.table_elements, 10);
    }

    #[test]
    fn growth_never_overflows() {
        assert_eq!(grown(usize::MAX - 1, 0, 10, usize::MAX), None);
        assert_eq!(grown(5, 5, 7, 7), Some(7));
    }
}
