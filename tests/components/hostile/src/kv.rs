//! Key-value attempts: another app's bucket, more buckets than allowed, and the component's own
//! bucket as the control.

use crate::bindings::wasi::keyvalue::{atomics, store};
use crate::Reply;

/// Opens bucket `name`; if that works, lists its keys and writes `hostile = pwned` into it.
pub fn open(name: &str) -> Reply {
    let bucket = match store::open(name) {
        Ok(bucket) => bucket,
        Err(e @ store::Error::AccessDenied) => return (403, format!("denied: {e:?}")),
        Err(e) => return (500, format!("failed: {e:?}")),
    };
    let keys = match bucket.list_keys(None) {
        Ok(page) => format!("{} keys", page.keys.len()),
        Err(e) => format!("list: {e:?}"),
    };
    let write = match bucket.set("hostile", b"pwned") {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{e:?}"),
    };
    (200, format!("opened {name}: {keys}; write: {write}"))
}

/// Opens `hostile-0` … `hostile-{n-1}`, writing one key in each and keeping every bucket open.
pub fn open_many(n: u64) -> Reply {
    let mut buckets = Vec::new();
    let mut first_error = None;
    for i in 0..n {
        let opened = store::open(&format!("hostile-{i}"))
            .and_then(|bucket| bucket.set("hostile", b"pwned").map(|()| bucket));
        match opened {
            Ok(bucket) => buckets.push(bucket),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let first_error = first_error.map_or_else(|| "none".to_string(), |e| format!("{e:?}"));
    (
        200,
        format!(
            "opened {} of {n}; first error: {first_error}",
            buckets.len()
        ),
    )
}

/// Adds one to `count` in the component's own bucket (`""`) and answers with the new value.
pub fn count() -> Reply {
    match store::open("").and_then(|bucket| atomics::increment(&bucket, "count", 1)) {
        Ok(n) => (200, n.to_string()),
        Err(e) => (500, format!("failed: {e:?}")),
    }
}
