//! NATS plumbing shared by the controller, the node, the CLI and the HTTP API, and nothing else:
//! opening JetStream KV buckets on any nats-server from 2.9 on, making sure the server has
//! registered a connection's subscriptions before the process acts on them, keeping long-lived
//! JetStream inputs alive across a server restart ([`resume`]), one request that many answer
//! ([`gather`], e.g. `host.ping`), and running a local `nats-server` child ([`nats_server`], for
//! `trellis up` and for every crate's tests and benchmarks). Hosts
//! (trellis nodes and simulated ones) share the control-interface server ([`control`]) and the
//! lattice's links and configs in KV ([`lattice_data`]), so that they answer alike.

pub mod control;
pub mod gather;
pub mod lattice_data;
pub mod link_specs;
pub mod nats_server;
pub mod resume;

use async_nats::jetstream::{self, kv};

/// Connects to NATS with `options`, turning a failure into a message that says what to check:
/// an authorization violation names the credentials, a TLS failure the certificates, a refused
/// connection the server. Used by the controller, the node and the CLI alike, so a wrong
/// password reads the same whichever command met it.
pub async fn connect(
    url: &str,
    options: async_nats::ConnectOptions,
) -> anyhow::Result<async_nats::Client> {
    use async_nats::ConnectErrorKind as Kind;
    options.connect(url).await.map_err(|e| {
        // rustls reports a certificate it cannot verify as an I/O error.
        let text = e.to_string().to_lowercase();
        let tls_trouble = ["certificate", "tls", "handshake"]
            .iter()
            .any(|w| text.contains(w));
        let what = match e.kind() {
            Kind::Io if tls_trouble => format!(
                "TLS with NATS at {url} failed ({e}): check --tls-ca (the CA that signed the server's certificate) and --tls-cert/--tls-key (a client certificate, when the server asks for one)"
            ),
            Kind::AuthorizationViolation | Kind::Authentication => format!(
                "NATS at {url} refused our credentials ({e}): check --user/--password or --creds (TRELLIS_USER, TRELLIS_PASSWORD, TRELLIS_CREDS, or [nats] in the config file)"
            ),
            Kind::Tls => format!(
                "TLS with NATS at {url} failed ({e}): check --tls-ca (the server's CA) and --tls-cert/--tls-key, and that the server speaks TLS"
            ),
            Kind::ServerParse => format!(
                "`{url}` is not a NATS address ({e}): write nats://HOST:PORT (or tls://HOST:PORT)"
            ),
            Kind::Dns => format!("cannot resolve the NATS host in {url} ({e})"),
            _ => format!(
                "cannot connect to NATS at {url} ({e}): is `trellis up` (or nats-server) running there?"
            ),
        };
        anyhow::anyhow!(what)
    })
}

/// JetStream on `client`, in `domain` when given (a leaf node's hub keeps the buckets): every
/// process of a lattice must use the same one, or they keep separate buckets.
pub fn jetstream(client: &async_nats::Client, domain: Option<&str>) -> jetstream::Context {
    match domain {
        Some(domain) => jetstream::with_domain(client.clone(), domain),
        None => jetstream::new(client.clone()),
    }
}

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
    let durability = Durability {
        history,
        ..Durability::default()
    };
    open_bucket_with(js, bucket, kv_stream_config(bucket, durability)).await
}

/// How a bucket is kept: copies on the servers of a cluster and revisions per key. Applies
/// when the bucket is created; an existing bucket keeps its settings (`nats kv` or
/// `nats stream edit` changes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// Servers holding a copy (1..=5). One suits a single server; a cluster of three should
    /// use 3, so the controller's state survives the loss of one server.
    pub replicas: usize,
    /// Revisions kept per key (1..=64). One is all the controller reads; more lets an
    /// operator read what a key held before (`nats kv history`).
    pub history: i64,
}

impl Default for Durability {
    fn default() -> Self {
        Self {
            replicas: 1,
            history: 1,
        }
    }
}

/// Opens a KV bucket, creating it with `durability` if missing.
pub async fn open_durable_bucket(
    js: &jetstream::Context,
    bucket: &str,
    durability: Durability,
) -> anyhow::Result<kv::Store> {
    open_bucket_with(js, bucket, kv_stream_config(bucket, durability)).await
}

/// Like [`open_bucket`], creating the bucket (if missing) with room for at most `max_bytes`:
/// a bucket that application code fills must not be able to fill the server.
pub async fn open_capped_bucket(
    js: &jetstream::Context,
    bucket: &str,
    history: i64,
    max_bytes: i64,
) -> anyhow::Result<kv::Store> {
    let durability = Durability {
        history,
        ..Durability::default()
    };
    let config = jetstream::stream::Config {
        max_bytes,
        ..kv_stream_config(bucket, durability)
    };
    open_bucket_with(js, bucket, config).await
}

async fn open_bucket_with(
    js: &jetstream::Context,
    bucket: &str,
    config: jetstream::stream::Config,
) -> anyhow::Result<kv::Store> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    let created = js.create_stream(config).await;
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
fn kv_stream_config(bucket: &str, durability: Durability) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: durability.history.clamp(1, 64),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        num_replicas: durability.replicas.clamp(1, 5),
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
