//! Opening JetStream KV buckets that other processes may be creating at the same moment.

use async_nats::jetstream::{self, kv};

/// Opens a bucket, creating it if missing. Several nodes and controllers start together, so a
/// lost creation race is not an error: the bucket is then simply opened.
pub async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    history: i64,
) -> anyhow::Result<kv::Store> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    match js
        .create_key_value(kv::Config {
            bucket: bucket.to_string(),
            history,
            ..Default::default()
        })
        .await
    {
        Ok(store) => Ok(store),
        Err(create_err) => js.get_key_value(bucket).await.map_err(|_| {
            anyhow::anyhow!(
                "cannot open or create the JetStream KV bucket {bucket}: {create_err}. Is JetStream enabled on the NATS server (nats-server -js)?"
            )
        }),
    }
}
