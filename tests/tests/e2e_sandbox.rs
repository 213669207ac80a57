//! The app sandbox with real processes: a hostile component (`tests/components/hostile`)
//! deployed beside a normal app tries every escape a component has, through a real node.
//! Each attempt must be refused or cut off with a clear error, the normal app must answer
//! throughout, and no store may change but the hostile app's own bucket.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use trellis_cli::nats_server::free_port;
use trellis_tests::process::{wait_until, ProcessLattice};
use trellis_tests::{built_example, built_fixture, echo_http_app, http_get};

/// The hostile app: the hostile component (one instance, a 2 s deadline, every host granted
/// by wildcard, and one loopback port granted by name), a sink and a victim it is linked to,
/// and an HTTP server in front of it.
fn hostile_app(address: &str, granted: &str) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: hostile
  annotations:
    version: v1
spec:
  components:
    - name: hostile
      type: component
      properties:
        image: file://{hostile}
        config:
          - name: hostile-settings
            properties:
              request_timeout_ms: "2000"
              allowed_outbound_hosts: "*://*:*, http://{granted}"
      traits:
        - type: spreadscaler
          properties:
            instances: 1
        - type: link
          properties:
            target: sink
            namespace: wasi
            package: http
            interfaces: [outgoing-handler]
        - type: link
          properties:
            name: victim
            target: victim
            namespace: wasi
            package: http
            interfaces: [outgoing-handler]
    # Another copy of the hostile component, with the node's default deadline (30 s): a call
    # into its endless loop must stop at the caller's 2 s deadline.
    - name: victim
      type: component
      properties:
        image: file://{hostile}
      traits:
        - type: spreadscaler
          properties:
            instances: 1
    - name: sink
      type: component
      properties:
        image: file://{echo}
      traits:
        - type: spreadscaler
          properties:
            instances: 1
    - name: httpserver
      type: capability
      properties:
        image: builtin:http-server
      traits:
        - type: spreadscaler
          properties:
            instances: 1
        - type: link
          properties:
            target: hostile
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source:
              config:
                - name: hostile-http
                  properties:
                    address: {address}
"#,
        hostile = built_fixture("hostile").display(),
        echo = built_example("echo").display(),
    )
}

/// Every key-value bucket on the server with its entries.
type Stores = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

async fn stores(nats_url: &str) -> Stores {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut names = js.stream_names();
    let mut all = Stores::new();
    while let Some(name) = names.next().await {
        let Some(bucket) = name.unwrap().strip_prefix("KV_").map(str::to_string) else {
            continue;
        };
        let kv = js.get_key_value(&bucket).await.unwrap();
        let mut entries = BTreeMap::new();
        if let Ok(mut keys) = kv.keys().await {
            while let Some(key) = keys.next().await {
                let key = key.unwrap();
                if let Some(value) = kv.get(&key).await.unwrap() {
                    entries.insert(key, value.to_vec());
                }
            }
        }
        all.insert(bucket, entries);
    }
    all
}

/// One request to the hostile app: (status, body).
async fn ask(address: &str, path: &str) -> (u16, String) {
    let (address, owned) = (address.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || http_get(&address, &owned, Duration::from_secs(2)))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
}

/// Sends `head` (a request line and headers) then `body_bytes` of body, and returns the status
/// line's code, or None if the node closed the connection without answering.
fn send_raw(address: &str, head: &str, body_bytes: u64, chunked: bool) -> Option<u16> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 64 << 10];
    let mut sent = 0;
    while sent < body_bytes {
        let n = chunk.len().min((body_bytes - sent) as usize);
        let written = if chunked {
            write!(stream, "{n:x}\r\n")
                .and_then(|()| stream.write_all(&chunk[..n]))
                .and_then(|()| stream.write_all(b"\r\n"))
        } else {
            stream.write_all(&chunk[..n])
        };
        // The node may answer 413 and close while the body is still coming.
        if written.is_err() {
            break;
        }
        sent += n as u64;
    }
    if chunked && sent >= body_bytes {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A plain HTTP server on loopback answering `granted ok`: the one destination the hostile
/// component is granted by name.
fn granted_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\ngranted ok",
            );
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_component_reaches_nothing_it_was_not_granted() {
    let mut lattice = ProcessLattice::start(
        "sandbox: a hostile component beside a normal app",
        &["spreadscaler", "linkscaler", "configscaler"],
    )
    .unwrap();
    let lattice_name = lattice.lattice.clone();
    let api_address = format!("127.0.0.1:{}", free_port().unwrap());
    let web_address = format!("127.0.0.1:{}", free_port().unwrap());
    let hostile_address = format!("127.0.0.1:{}", free_port().unwrap());
    let granted = granted_server();
    lattice.add_node(&[]).await.unwrap();
    lattice
        .add_controller_with(&["--http", &api_address])
        .await
        .unwrap();
    let web = lattice.write(
        "web.yaml",
        &echo_http_app("web", "v1", &built_example("echo"), 2, &web_address),
    );
    let hostile = lattice.write("hostile.yaml", &hostile_app(&hostile_address, &granted));
    for file in [&web, &hostile] {
        let deploy = lattice
            .cli(&["app", "deploy", file.to_str().unwrap()])
            .await
            .unwrap();
        assert_eq!(deploy.code, 0, "{}\n{}", deploy.text(), lattice.log_tails());
    }
    wait_until("both apps answer", Duration::from_secs(30), || {
        let (web, hostile) = (web_address.clone(), hostile_address.clone());
        async move {
            let a = http_get(&web, "/", Duration::from_secs(1)).map_err(|e| e.to_string())?;
            let b = http_get(&hostile, "/", Duration::from_secs(1)).map_err(|e| e.to_string())?;
            (a.0 == 200 && b == (200, "hostile ok".into()))
                .then_some(())
                .ok_or(format!("{a:?} {b:?}"))
        }
    })
    .await;
    // The app's own bucket exists before the snapshot, so that the only change it may show is
    // the hostile app's own data.
    assert_eq!(ask(&hostile_address, "/kv/default").await.0, 200);
    let own_bucket = format!("trellis-kv-{lattice_name}-hostile");
    let before = stores(&lattice.nats.url()).await;
    assert!(before.contains_key(&own_bucket), "{:?}", before.keys());

    // The normal app answers every 100 ms for the whole attack.
    let attacking = Arc::new(AtomicBool::new(true));
    let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let watcher = {
        let (attacking, answered, failed) = (attacking.clone(), answered.clone(), failed.clone());
        let web = web_address.clone();
        tokio::task::spawn_blocking(move || {
            while attacking.load(Ordering::Relaxed) {
                match http_get(&web, "/", Duration::from_secs(1)) {
                    Ok((200, _)) => answered.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("the normal app failed to answer: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Key-value: the control plane's buckets and another app's are refused, whatever the name.
    for bucket in [
        format!("TRELLIS_MANIFESTS_{lattice_name}"),
        format!("TRELLIS_OWNERS_{lattice_name}"),
        format!("TRELLIS_STATUS_{lattice_name}"),
        format!("TRELLIS_CONTROLLERS_{lattice_name}"),
        format!("CONFIGDATA_{lattice_name}"),
        format!("LATTICEDATA_{lattice_name}"),
        format!("trellis-kv-{lattice_name}-web"),
        format!("trellis-kv-{lattice_name}"),
        "kvcounter".to_string(),
    ] {
        let (status, body) = ask(&hostile_address, &format!("/kv/open?name={bucket}")).await;
        assert_eq!(status, 403, "{bucket}: {body}");
        assert!(body.contains("AccessDenied"), "{bucket}: {body}");
    }
    let (_, body) = ask(&hostile_address, "/kv/many?n=2000").await;
    assert!(body.starts_with("opened 0 of 2000"), "{body}");

    // Outgoing HTTP: a wildcard grant reaches neither this machine, its link, nor the node's
    // listeners; the one loopback port granted by name answers.
    let (status, body) = ask(&hostile_address, &format!("/fetch?url=http://{granted}/")).await;
    assert_eq!((status, body.as_str()), (200, "status 200: granted ok"));
    for url in [
        format!("http://{api_address}/api/v1/apps"),
        format!("http://{web_address}/"),
        format!(
            "http://localhost:{}/",
            web_address.rsplit(':').next().unwrap()
        ),
        format!(
            "http://{}/",
            lattice.nats.url().trim_start_matches("nats://")
        ),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::1]:8800/".to_string(),
    ] {
        let (status, body) = ask(&hostile_address, &format!("/fetch?url={url}")).await;
        assert_eq!(status, 502, "{url}: {body}");
        assert!(body.contains("DestinationIpProhibited"), "{url}: {body}");
    }
    // A call along its link works; one to another app's component (no link) is refused; a
    // body larger than a lattice call carries gets a 413.
    let (status, body) = ask(&hostile_address, "/fetch?url=http://sink/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("status 200"), "{body}");
    let (status, body) = ask(&hostile_address, "/fetch?url=http://web-echo/").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    let (_, body) = ask(&hostile_address, "/fetch?url=http://sink/&mb=4").await;
    assert!(body.starts_with("status 413"), "{body}");

    // Time: an endless loop is stopped at the 2 s deadline and its one slot is free again.
    let started = Instant::now();
    let (status, body) = ask(&hostile_address, "/loop").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("deadline"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ask(&hostile_address, "/").await, (200, "hostile ok".into()));

    // The caller's deadline travels with a lattice call: the victim's loop (its own deadline
    // is 30 s) is stopped when the caller's 2 s have passed, and the victim's slot is free.
    let started = Instant::now();
    let (status, body) = ask(&hostile_address, "/fetch?url=http://victim/loop").await;
    assert_eq!(status, 504, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let (_, body) = ask(&hostile_address, "/fetch?url=http://victim/").await;
    assert_eq!(body, "status 200: hostile ok");

    // Memory and host resources.
    let (status, body) = ask(&hostile_address, "/memory").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("memory limit of 256 MiB"), "{body}");
    let (status, body) = ask(&hostile_address, "/resources?n=1000000").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(ask(&hostile_address, "/").await, (200, "hostile ok".into()));

    // Bodies: a declared multi-GB body is refused before it is read, an undeclared one once it
    // passes the cap.
    let declared = format!(
        "POST /body HTTP/1.1\r\nHost: {hostile_address}\r\nContent-Length: 5000000000\r\nConnection: close\r\n\r\n"
    );
    let address = hostile_address.clone();
    let status = tokio::task::spawn_blocking(move || send_raw(&address, &declared, 0, false))
        .await
        .unwrap();
    assert_eq!(status, Some(413));
    let chunked = format!(
        "POST /body HTTP/1.1\r\nHost: {hostile_address}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let address = hostile_address.clone();
    let status = tokio::task::spawn_blocking(move || send_raw(&address, &chunked, 64 << 20, true))
        .await
        .unwrap();
    assert_eq!(status, Some(413));

    // Files and environment: a component has none of the node's.
    for path in ["/proc/self/environ", "/etc/passwd"] {
        let (status, body) = ask(&hostile_address, &format!("/file?path={path}")).await;
        assert_eq!(status, 500, "{path}: {body}");
    }
    let (status, body) = ask(&hostile_address, "/env").await;
    assert!(
        status == 200 && body.starts_with("0 vars"),
        "{status} {body}"
    );

    attacking.store(false, Ordering::Relaxed);
    watcher.await.unwrap();
    let (answered, failed) = (
        answered.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert_eq!(
        failed, 0,
        "the normal app failed {failed} times ({answered} answers)"
    );
    assert!(answered > 10, "{answered}");

    // Nothing changed in any store but the hostile app's own bucket.
    let mut after = stores(&lattice.nats.url()).await;
    let mut before = before;
    let own_after = after.remove(&own_bucket);
    before.remove(&own_bucket);
    // Leases and status carry times that move on their own; they must only not hold what the
    // component tried to write (`pwned`).
    for volatile in [
        format!("TRELLIS_STATUS_{lattice_name}"),
        format!("TRELLIS_CONTROLLERS_{lattice_name}"),
        format!("TRELLIS_OWNERS_{lattice_name}"),
    ] {
        let (b, a) = (before.remove(&volatile), after.remove(&volatile));
        assert_eq!(
            b.map(|b| b.into_keys().collect::<Vec<_>>()),
            a.as_ref().map(|a| a.keys().cloned().collect::<Vec<_>>()),
            "{volatile}"
        );
        // (`hostile` is also the app's name, a key of the status bucket: look at values.)
        assert!(
            a.is_none_or(|a| a.values().all(|v| v.as_slice() != b"pwned")),
            "{volatile}"
        );
    }
    assert_eq!(before, after, "a store changed under the hostile component");
    assert!(own_after.is_some_and(|own| own.contains_key("count")));
}
