//! `wasi:keyvalue` (0.2.0-draft: store, atomics, batch) backed by NATS JetStream KV.
//!
//! The data lives in the NATS server (or cluster), not in the node: when a node is lost, any
//! other node running the component reads and writes the same bucket, so nothing is lost with
//! it.
//!
//! Which bucket a component gets (`store.open(identifier)`) is what its app grants it
//! ([`crate::grants`]):
//! - `""` or `"default"`: the component's bucket. A `wasi:keyvalue` link from the component
//!   names it in its target config (`bucket: NAME`, as wasmCloud's NATS key-value provider
//!   does); without such a link it is its app's own bucket `trellis-kv-{lattice}-{app}`.
//! - any other identifier: that bucket, if it is one of those two; anything else (another
//!   app's bucket, the control plane's) is `access-denied`, and the node logs the component
//!   and the bucket.
//!
//! Buckets are created on first use, each capped in size (the node's `kv_bucket_max_bytes`)
//! so that one app cannot fill JetStream for the lattice. Key-value is built into every node rather than run as a
//! separate provider process: it is a thin binding to the JetStream connection the node already
//! has, and a component must be able to use it on whichever node it lands. A manifest may still
//! declare a `builtin:keyvalue` capability as the link's target (wadm-style manifests do); the
//! node accepts it as a provider that needs no process.
//!
//! Keys are arbitrary strings for the component; JetStream allows only `A-Za-z0-9-_=/.` in
//! keys, so other characters (and `=` and `.`) are stored escaped as `=XX` and unescaped when
//! listed.

use std::collections::HashMap;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt as _;
use tracing::warn;
use wasmtime::component::Resource;

use super::bindings::{atomics, batch, store, Bucket};
use super::RequestState;
use crate::grants::BucketRefusal;

/// Keys returned by one `list-keys` call; the cursor continues from there.
const LIST_PAGE: usize = 1000;
/// Compare-and-swap attempts of one `increment` before it gives up under contention.
const INCREMENT_ATTEMPTS: usize = 64;

/// The node's JetStream KV access, with buckets kept open once opened.
pub(crate) struct KeyValue {
    js: jetstream::Context,
    opened: tokio::sync::Mutex<HashMap<String, kv::Store>>,
    /// The size of each bucket this node creates.
    max_bytes: i64,
}

impl KeyValue {
    pub(crate) fn new(js: jetstream::Context, max_bytes: i64) -> Self {
        Self {
            js,
            opened: tokio::sync::Mutex::default(),
            max_bytes,
        }
    }

    async fn open(&self, bucket: &str) -> anyhow::Result<kv::Store> {
        let mut opened = self.opened.lock().await;
        if let Some(store) = opened.get(bucket) {
            return Ok(store.clone());
        }
        let store = trellis_bus::open_capped_bucket(&self.js, bucket, 1, self.max_bytes).await?;
        opened.insert(bucket.to_string(), store.clone());
        Ok(store)
    }
}

impl Bucket {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, store::Error> {
        let value = self
            .store
            .get(encode_key(key)?)
            .await
            .map_err(|e| self.failed("read", key, e))?;
        Ok(value.map(|bytes| bytes.to_vec()))
    }

    async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), store::Error> {
        self.store
            .put(encode_key(key)?, Bytes::from(value))
            .await
            .map_err(|e| self.failed("write", key, e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), store::Error> {
        // JetStream's delete writes a tombstone; deleting a missing key is fine.
        self.store
            .delete(encode_key(key)?)
            .await
            .map_err(|e| self.failed("delete", key, e))
    }

    async fn list_keys(&self, cursor: Option<u64>) -> Result<store::KeyResponse, store::Error> {
        let mut stored = self.store.keys().await.map_err(|e| {
            store::Error::Other(format!("cannot list the keys of bucket {}: {e}", self.name))
        })?;
        let mut keys = Vec::new();
        while let Some(key) = stored.next().await {
            let key = key.map_err(|e| {
                store::Error::Other(format!("cannot list the keys of bucket {}: {e}", self.name))
            })?;
            keys.push(decode_key(&key));
        }
        // Sorted, so that a cursor (an offset) means the same thing from one call to the next.
        keys.sort();
        let start = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        let page: Vec<String> = keys.iter().skip(start).take(LIST_PAGE).cloned().collect();
        let next = start.saturating_add(page.len());
        Ok(store::KeyResponse {
            keys: page,
            cursor: (next < keys.len()).then_some(next as u64),
        })
    }

    /// Adds `delta` to the decimal number stored at `key` (missing: 0) with compare-and-swap on
    /// the entry's revision, so concurrent increments from any number of nodes all count.
    async fn increment(&self, key: &str, delta: u64) -> Result<u64, store::Error> {
        let stored_key = encode_key(key)?;
        for _ in 0..INCREMENT_ATTEMPTS {
            let entry = self
                .store
                .entry(stored_key.clone())
                .await
                .map_err(|e| self.failed("read", key, e))?;
            let (current, revision) = match &entry {
                Some(entry) if entry.operation == kv::Operation::Put => (
                    parse_counter(&self.name, key, &entry.value)?,
                    entry.revision,
                ),
                // A deleted key starts again from zero; its tombstone's revision guards it.
                Some(entry) => (0, entry.revision),
                None => (0, 0),
            };
            let next = current.checked_add(delta).ok_or_else(|| {
                store::Error::Other(format!(
                    "incrementing {key:?} in bucket {} by {delta} overflows u64",
                    self.name
                ))
            })?;
            let value = Bytes::from(next.to_string());
            let written = if revision == 0 {
                self.store
                    .create(&stored_key, value)
                    .await
                    .map_err(|e| e.kind() == kv::CreateErrorKind::AlreadyExists)
            } else {
                self.store
                    .update(&stored_key, value, revision)
                    .await
                    .map_err(|e| e.kind() == kv::UpdateErrorKind::WrongLastRevision)
            };
            match written {
                Ok(_) => return Ok(next),
                // Someone else wrote in between: read again and retry.
                Err(true) => continue,
                Err(false) => {
                    return Err(store::Error::Other(format!(
                        "cannot write {key:?} in bucket {}",
                        self.name
                    )))
                }
            }
        }
        Err(store::Error::Other(format!(
            "incrementing {key:?} in bucket {} lost {INCREMENT_ATTEMPTS} races in a row; try again",
            self.name
        )))
    }

    fn failed(&self, what: &str, key: &str, e: impl std::fmt::Display) -> store::Error {
        let e = e.to_string();
        // JetStream's words when a capped stream refuses a write.
        let hint = if e.contains("maximum bytes") {
            " (the bucket is full: it holds at most the node's kv bucket size; delete keys or ask the operator for a larger --kv-bucket-size)"
        } else {
            ""
        };
        store::Error::Other(format!(
            "cannot {what} {key:?} in bucket {}: {e}{hint}",
            self.name
        ))
    }
}

fn parse_counter(bucket: &str, key: &str, value: &[u8]) -> Result<u64, store::Error> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| {
            store::Error::Other(format!(
                "cannot increment {key:?} in bucket {bucket}: its value is not a decimal number"
            ))
        })
}

/// A component's key as a JetStream key: letters, digits, `-`, `_` and `/` as they are, every
/// other byte as `=XX` (so `.`, which JetStream treats as a token separator, never appears).
fn encode_key(key: &str) -> Result<String, store::Error> {
    if key.is_empty() {
        return Err(store::Error::Other("a key cannot be empty".into()));
    }
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("={byte:02X}"));
        }
    }
    Ok(out)
}

/// The inverse of [`encode_key`]; a key written by someone else is returned as stored.
fn decode_key(stored: &str) -> String {
    let bytes = stored.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Two hex digits, read as bytes: a key stored by someone else may hold any UTF-8 after
        // its `=`, and slicing the text there could cut a character in two.
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(high << 4 | low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| stored.to_string())
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

impl store::Host for RequestState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        let name = match self.env.grants.bucket(&identifier) {
            Ok(name) => name,
            Err(BucketRefusal::Invalid) => return Ok(Err(store::Error::NoSuchStore)),
            Err(BucketRefusal::Denied(why)) => {
                warn!(component_id = %self.env.id, bucket = %identifier, "key-value bucket refused: {why}");
                return Ok(Err(store::Error::AccessDenied));
            }
        };
        let store = match self.services.keyvalue.open(&name).await {
            Ok(store) => store,
            Err(e) => {
                return Ok(Err(store::Error::Other(format!(
                    "{:#}",
                    e.context(format!("component {}", self.env.id))
                ))))
            }
        };
        Ok(Ok(self.table.push(Bucket { name, store })?))
    }
}

impl store::HostBucket for RequestState {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(self.table.get(&bucket)?.get(&key).await)
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        Ok(self.table.get(&bucket)?.set(&key, value).await)
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        Ok(self.table.get(&bucket)?.delete(&key).await)
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        Ok(self
            .table
            .get(&bucket)?
            .get(&key)
            .await
            .map(|value| value.is_some()))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        Ok(self.table.get(&bucket)?.list_keys(cursor).await)
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for RequestState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, store::Error>> {
        Ok(self.table.get(&bucket)?.increment(&key, delta).await)
    }
}

impl batch::Host for RequestState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, store::Error>> {
        let bucket = self.table.get(&bucket)?;
        // One read per key, all in flight at once: the batch costs one round trip of latency.
        let reads = futures::future::join_all(keys.iter().map(|key| bucket.get(key))).await;
        let mut values = Vec::with_capacity(keys.len());
        for (key, read) in keys.into_iter().zip(reads) {
            match read {
                Ok(value) => values.push(value.map(|value| (key, value))),
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(values))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let bucket = self.table.get(&bucket)?;
        let writes = key_values
            .into_iter()
            .map(|(key, value)| async move { bucket.set(&key, value).await });
        Ok(futures::future::join_all(writes)
            .await
            .into_iter()
            .collect::<Result<(), _>>())
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let bucket = self.table.get(&bucket)?;
        let deletes = keys.iter().map(|key| bucket.delete(key));
        Ok(futures::future::join_all(deletes)
            .await
            .into_iter()
            .collect::<Result<(), _>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_jetstream_escaping() {
        for key in ["visits/east", "a.b", "x=y", "héllo wörld", "*>", "=4"] {
            let stored = encode_key(key).unwrap();
            assert!(
                stored
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_/=".contains(c)),
                "{stored}"
            );
            assert_eq!(decode_key(&stored), key);
        }
        assert_eq!(encode_key("visits/east").unwrap(), "visits/east");
        assert!(encode_key("").is_err());
    }

    #[test]
    fn keys_stored_by_others_are_read_as_they_are() {
        // Not an escape of ours: returned as stored, never a panic.
        for stored in ["=é", "=1é", "a=xéb", "=+1", "=4", "==", "x=", "=4g"] {
            assert_eq!(decode_key(stored), stored, "{stored}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_key_round_trips(key in "\\PC{1,40}") {
            proptest::prop_assert_eq!(decode_key(&encode_key(&key).unwrap()), key);
        }

        #[test]
        fn decoding_never_panics(stored in "\\PC{0,40}") {
            let _ = decode_key(&stored);
        }
    }
}
