//! NATS plumbing shared by the controller and the node, and nothing else: opening JetStream KV
//! buckets on any nats-server from 2.9 on, and making sure the server has registered a
//! connection's subscriptions before the process acts on them.

use async_nats::jetstream::{self, kv};

/// Opens a KV bucket, creating it (history `history`) if missing.
///
/// `create_key_value` first reads the account info, whose shape async-nats 0.51 cannot parse
/// from nats-server 2.9 (Debian's); creating the bucket's stream ourselves, with the settings
/// async-nats and the `nats` CLI use, works on every 2.9+ server. Creating a stream that exists
/// with the same settings succeeds, so processes racing to create a bucket are fine.
pub async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    history: i64,
) -> anyhow::Result<kv::Store> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    let created = js.create_stream(kv_stream_config(bucket, history)).await;
    match js.get_key_value(bucket).await {
        Ok(store) => Ok(store),
        Err(open_err) => {
            let why = match created {
                Err(create_err) => create_err.to_string(),
                Ok(_) => open_err.to_string(),
            };
            anyhow::bail!(
                "cannot open or create the JetStream KV bucket {bucket}: {why}. Is JetStream enabled on the NATS server (nats-server -js)?"
            )
        }
    }
}

/// The stream behind a KV bucket.
fn kv_stream_config(bucket: &str, history: i64) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: history.max(1),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    }
}

/// Returns once the server has processed everything this connection sent before, including
/// its subscriptions. `flush` only proves the bytes left the socket; a request to a subject
/// nobody serves is answered by the server itself ("no responders"), after the earlier
/// protocol messages of this connection.
pub async fn sync(client: &async_nats::Client) -> anyhow::Result<()> {
    let subject = format!("_trellis.sync.{}", client.new_inbox());
    match client.request(subject, "".into()).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
        Err(e) => Err(anyhow::anyhow!("NATS round trip failed: {e}")),
    }
}
