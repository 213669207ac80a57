//! A real node against a real `nats-server`, driven over the control interface with a raw NATS
//! client, the way the controller (or `wash`) drives it.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{
    built_wasm, host_inventory, http_get, http_get_until, http_link, next_event, put_config,
    put_link, request, scale_fails, scale_file, scale_succeeds, send_scale, serve_over_http,
    start_http_server, subscribe_events, LATTICE,
};
use futures::StreamExt as _;
use serde_json::json;
use trellis_bus::nats_server::{free_port, NatsServer};
use trellis_lattice::ctl::{self, CtlResponse, Link, Subjects};
use trellis_lattice::event;
use trellis_node::{Node, NodeConfig};

/// Builds the `hello-http` fixture component (once per test run) and returns its path. It
/// blocks: call it first thing in a test, before the node shares the runtime's threads.
fn hello_http_wasm() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.as_ref() {
        return path.clone();
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-http");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(dir.join("target"))
        // The outer build's settings are for the host, not for this wasm crate.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cannot run cargo to build the hello-http fixture");
    assert!(status.success(), "building the hello-http fixture failed");
    let wasm = dir.join("target/wasm32-wasip2/release/hello_http.wasm");
    assert!(wasm.exists(), "{} missing after the build", wasm.display());
    *built = Some(wasm.clone());
    wasm
}

/// A node that reads images from the built examples, the fixture, and the files tests write
/// into temporary folders.
async fn start_node(nats: &NatsServer) -> Node {
    common::start_node(
        nats,
        NodeConfig {
            heartbeat_interval: Duration::from_secs(1),
            friendly_name: Some("test-node".into()),
            allowed_image_dirs: vec![
                common::build_dir(),
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-http/target"),
                std::env::temp_dir(),
            ],
            ..Default::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_ping_and_inventory() {
    let nats = NatsServer::start_temporary().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut events = subscribe_events(&client).await;
    let node = start_node(&nats).await;
    let subjects = Subjects::new(LATTICE);
    let host_id = node.host_id().to_string();
    assert_eq!(host_id.len(), 56);
    assert!(host_id.starts_with('N'));

    let started = next_event(&mut events, event::HOST_STARTED, |_| true).await;
    assert_eq!(started.source, host_id);
    assert_eq!(started.data["friendly_name"], "test-node");

    let pong: CtlResponse<ctl::Host> = request(&client, subjects.host_ping(), &json!({})).await;
    assert!(pong.success, "{}", pong.message);
    let pong = pong.response.unwrap();
    assert_eq!(pong.id, host_id);
    assert_eq!(pong.lattice, LATTICE);
    assert_eq!(pong.friendly_name, "test-node");
    assert!(pong.labels.contains_key("hostcore.os"));

    let label = ctl::HostLabel {
        key: "zone".into(),
        value: "eu-1".into(),
    };
    let put: CtlResponse<()> = request(&client, subjects.label_put(&host_id), &label).await;
    assert!(put.success, "{}", put.message);
    let heartbeat = next_event(&mut events, event::HOST_HEARTBEAT, |data| {
        data["labels"]["zone"] == "eu-1"
    })
    .await;
    assert_eq!(heartbeat.source, host_id);

    let inventory = host_inventory(&client, &host_id).await;
    assert_eq!(inventory.host_id, host_id);
    assert!(inventory.components.is_empty());
    assert_eq!(inventory.labels["zone"], "eu-1");

    let stop: CtlResponse<()> = request(&client, subjects.host_stop(&host_id), &json!({})).await;
    assert!(stop.success);
    tokio::time::timeout(Duration::from_secs(5), node.stopped())
        .await
        .expect("stopped() resolves after host.stop");
    node.stop().await.unwrap();
    next_event(&mut events, event::HOST_STOPPED, |_| true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_an_http_component_end_to_end() {
    let wasm = hello_http_wasm();
    let nats = NatsServer::start_temporary().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut events = subscribe_events(&client).await;
    let node = start_node(&nats).await;
    let host_id = node.host_id().to_string();
    let subjects = Subjects::new(LATTICE);
    let address = format!("127.0.0.1:{}", free_port().unwrap());

    put_config(&client, "hello-http-address", json!({ "address": address })).await;
    next_event(&mut events, event::CONFIG_SET, |data| {
        data["config_name"] == "hello-http-address"
    })
    .await;
    let got: CtlResponse<BTreeMap<String, String>> = request(
        &client,
        subjects.config_get("hello-http-address"),
        &json!({}),
    )
    .await;
    assert_eq!(got.response.unwrap()["address"], address);

    let link = http_link("hello-http-address", "hello");
    put_link(&client, &link).await;
    next_event(&mut events, event::LINKDEF_SET, |data| {
        data["target"] == "hello"
    })
    .await;

    start_http_server(&client, &host_id).await;
    next_event(&mut events, event::PROVIDER_STARTED, |data| {
        data["provider_id"] == "http-server"
    })
    .await;

    // The listener is up before the component runs: it says which component is missing.
    let (status, body) = http_get_until(&address, "/hi", |s| s == 503).await;
    assert_eq!(status, 503);
    assert!(body.contains("hello"), "{body}");

    let scale = ctl::ScaleComponentCommand {
        annotations: Some([("app".to_string(), "greeter".to_string())].into()),
        host_id: host_id.clone(),
        ..scale_file("hello", &wasm, 2)
    };
    let scaled = scale_succeeds(&client, &mut events, &host_id, &scale).await;
    assert_eq!(scaled.data["max_instances"], 2);
    assert_eq!(scaled.data["host_id"], host_id.as_str());
    assert_eq!(scaled.data["annotations"]["app"], "greeter");
    assert_eq!(scaled.data["image_ref"], scale.component_ref.as_str());

    let (status, body) = http_get_until(&address, "/hi?x=1", |s| s == 200).await;
    assert_eq!(status, 200);
    assert_eq!(body, "hello from trellis: GET /hi?x=1");

    let heartbeat = next_event(&mut events, event::HOST_HEARTBEAT, |data| {
        data["components"][0]["id"] == "hello"
    })
    .await;
    assert_eq!(heartbeat.data["components"][0]["max_instances"], 2);
    assert_eq!(
        heartbeat.data["components"][0]["annotations"]["app"],
        "greeter"
    );
    assert_eq!(heartbeat.data["providers"][0]["id"], "http-server");

    let inventory = host_inventory(&client, &host_id).await;
    assert_eq!(inventory.components.len(), 1);
    assert_eq!(inventory.components[0].max_instances, 2);
    assert_eq!(inventory.providers[0].id, "http-server");

    let links: CtlResponse<Vec<Link>> = request(&client, subjects.link_get(), &json!({})).await;
    assert_eq!(links.response.unwrap(), vec![link.clone()]);

    // Scaling again only changes the count.
    let rescale = ctl::ScaleComponentCommand {
        max_instances: 5,
        ..scale.clone()
    };
    send_scale(&client, &host_id, &rescale).await;
    next_event(&mut events, event::COMPONENT_SCALED, |data| {
        data["max_instances"] == 5
    })
    .await;

    // Back-to-back commands: the last one wins, whatever order their work finishes in.
    for count in [3, 0] {
        let cmd = ctl::ScaleComponentCommand {
            max_instances: count,
            ..scale.clone()
        };
        send_scale(&client, &host_id, &cmd).await;
    }
    next_event(&mut events, event::COMPONENT_SCALED, |data| {
        data["max_instances"] == 0
    })
    .await;
    let inventory = host_inventory(&client, &host_id).await;
    assert!(inventory.components.is_empty());
    let (status, body) = http_get(&address, "/").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("hello is not running"), "{body}");

    // Deleting the link closes the listener.
    let del = ctl::DeleteLinkRequest {
        source_id: link.source_id.clone(),
        name: link.name.clone(),
        wit_namespace: link.wit_namespace.clone(),
        wit_package: link.wit_package.clone(),
    };
    let deleted: CtlResponse<()> = request(&client, subjects.link_del(), &del).await;
    assert!(deleted.success, "{}", deleted.message);
    next_event(&mut events, event::LINKDEF_DELETED, |data| {
        data["source_id"] == "http-server"
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(&address, "/").await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "listener still open after link.del"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    node.stop().await.unwrap();
    next_event(&mut events, event::HOST_STOPPED, |_| true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_component_fails_to_scale_and_the_node_keeps_serving() {
    let nats = NatsServer::start_temporary().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut events = subscribe_events(&client).await;
    let node = start_node(&nats).await;
    let host_id = node.host_id().to_string();
    let subjects = Subjects::new(LATTICE);

    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.wasm");
    std::fs::write(&corrupt, b"\0asm this is not a component").unwrap();
    let scale = ctl::ScaleComponentCommand {
        host_id: host_id.clone(),
        ..scale_file("broken", &corrupt, 1)
    };
    let error = scale_fails(&client, &mut events, &host_id, &scale).await;
    assert!(error.contains("corrupt.wasm"), "{error}");
    assert!(
        error.contains("not a valid WebAssembly component"),
        "{error}"
    );

    // A valid core module is still not a component; the reason says what to do.
    let module = dir.path().join("module.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let core = ctl::ScaleComponentCommand {
        component_ref: format!("file://{}", module.display()),
        component_id: "core".into(),
        ..scale.clone()
    };
    let error = scale_fails(&client, &mut events, &host_id, &core).await;
    assert!(
        error.contains("module.wasm") && error.contains("core WebAssembly module, not a component"),
        "{error}"
    );

    let unknown = ctl::ScaleComponentCommand {
        component_ref: "ftp://example.com/app.wasm".into(),
        component_id: "unknown".into(),
        ..scale.clone()
    };
    let error = scale_fails(&client, &mut events, &host_id, &unknown).await;
    assert!(
        error.contains("unsupported image reference \"ftp://example.com/app.wasm\""),
        "{error}"
    );

    let missing = ctl::ScaleComponentCommand {
        component_ref: "file:///nowhere/missing.wasm".into(),
        component_id: "missing".into(),
        ..scale.clone()
    };
    let error = scale_fails(&client, &mut events, &host_id, &missing).await;
    assert!(
        error.contains("/nowhere/missing.wasm")
            && error.contains("is not a file under the node's allowed image folders"),
        "{error}"
    );

    let pong: CtlResponse<ctl::Host> = request(&client, subjects.host_ping(), &json!({})).await;
    assert_eq!(pong.response.unwrap().id, host_id);
    let inventory = host_inventory(&client, &host_id).await;
    assert!(inventory.components.is_empty());

    // An unknown provider is refused in the reply and in an event.
    let start = ctl::StartProviderCommand {
        provider_id: "kv".into(),
        provider_ref: "ghcr.io/wasmcloud/keyvalue-redis:0.28.1".into(),
        host_id: host_id.clone(),
        ..Default::default()
    };
    let refused: CtlResponse<()> =
        request(&client, subjects.provider_start(&host_id), &start).await;
    assert!(!refused.success);
    assert!(
        refused.message.contains("keyvalue-redis"),
        "{}",
        refused.message
    );
    next_event(&mut events, event::PROVIDER_START_FAILED, |data| {
        data["provider_id"] == "kv"
    })
    .await;

    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_is_reported_and_other_routes_keep_serving() {
    let nats = NatsServer::start_temporary().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut events = subscribe_events(&client).await;
    let node = start_node(&nats).await;
    let host_id = node.host_id().to_string();
    let subjects = Subjects::new(LATTICE);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_address = taken.local_addr().unwrap().to_string();
    let free_address = format!("127.0.0.1:{}", free_port().unwrap());
    for (name, address) in [("taken", &taken_address), ("free", &free_address)] {
        put_config(&client, name, json!({ "address": address })).await;
    }
    let taken_link = Link {
        name: "taken".into(),
        ..http_link("taken", "nobody")
    };
    let free_link = http_link("free", "nobody");
    for link in [&taken_link, &free_link] {
        put_link(&client, link).await;
    }
    let start = ctl::StartProviderCommand {
        provider_id: "http-server".into(),
        provider_ref: "ghcr.io/wasmcloud/http-server:0.23.0".into(),
        ..Default::default()
    };
    let started: CtlResponse<()> =
        request(&client, subjects.provider_start(&host_id), &start).await;
    assert!(started.success, "{}", started.message);
    assert!(
        started
            .message
            .contains(&format!("cannot listen on {taken_address}")),
        "the reply carries the reason: {}",
        started.message
    );

    let failed = next_event(&mut events, "health_check_failed", |_| true).await;
    assert_eq!(failed.data["address"], taken_address.as_str());
    assert!(
        failed.data["error"]
            .as_str()
            .is_some_and(|e| e.contains("in use")),
        "{failed:?}"
    );
    let (status, body) = http_get_until(&free_address, "/", |s| s == 503).await;
    assert_eq!(status, 503);
    assert!(body.contains("nobody"), "{body}");

    // Stopping the provider closes its listeners.
    let stop = ctl::StopProviderCommand {
        host_id: host_id.clone(),
        provider_id: "http-server".into(),
    };
    let stopped: CtlResponse<()> = request(&client, subjects.provider_stop(&host_id), &stop).await;
    assert!(stopped.success, "{}", stopped.message);
    next_event(&mut events, event::PROVIDER_STOPPED, |_| true).await;
    assert!(http_get(&free_address, "/").await.is_err());

    drop(taken);
    node.stop().await.unwrap();
}

/// Puts an address config, an HTTP link to `hello`, the HTTP server provider and `hello` itself
/// (scaled to `count`) on `host_id`, and waits until it answers. Returns the address.
async fn serve_hello(
    wasm: &Path,
    client: &async_nats::Client,
    events: &mut async_nats::Subscriber,
    host_id: &str,
    count: u32,
) -> String {
    let address = serve_over_http(client, host_id, "default", "hello").await;
    scale_succeeds(client, events, host_id, &scale_file("hello", wasm, count)).await;
    http_get_until(&address, "/", |s| s == 200).await;
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_finishes_requests_in_flight() {
    let wasm = hello_http_wasm();
    let nats = NatsServer::start_temporary().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut events = subscribe_events(&client).await;
    let node = start_node(&nats).await;
    let host_id = node.host_id().to_string();
    let address = serve_hello(&wasm, &client, &mut events, &host_id, 1).await;

    let in_flight = {
        let address = address.clone();
        tokio::spawn(async move { http_get(&address, "/sleep/1500").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.stop().await.unwrap();
    let (status, body) = in_flight.await.unwrap().expect("request finished");
    assert_eq!(status, 200);
    assert_eq!(body, "hello from trellis: GET /sleep/1500");
    assert!(http_get(&address, "/").await.is_err(), "listener closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_caps_concurrent_requests() {
    let wasm = hello_http_wasm();
    let nats = NatsServer::start_temporary().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut events = subscribe_events(&client).await;
    let node = start_node(&nats).await;
    let host_id = node.host_id().to_string();
    let address = serve_hello(&wasm, &client, &mut events, &host_id, 1).await;

    // With one instance allowed, two 600 ms requests cannot overlap.
    let started = Instant::now();
    let (a, b) = tokio::join!(
        http_get(&address, "/sleep/600"),
        http_get(&address, "/sleep/600")
    );
    assert_eq!(a.unwrap().0, 200);
    assert_eq!(b.unwrap().0, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "requests overlapped: {:?}",
        started.elapsed()
    );
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_a_lattice_share_links_and_all_answer_ping() {
    let wasm = hello_http_wasm();
    let nats = NatsServer::start_temporary().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut events = subscribe_events(&client).await;
    let first = start_node(&nats).await;
    let second = start_node(&nats).await;
    let subjects = Subjects::new(LATTICE);

    // host.ping is scatter-gather: every node answers.
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(subjects.host_ping(), inbox, "{}".into())
        .await
        .unwrap();
    let mut ids = Vec::new();
    while ids.len() < 2 {
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.next())
            .await
            .expect("both nodes answer ping")
            .unwrap();
        let pong: CtlResponse<ctl::Host> = serde_json::from_slice(&reply.payload).unwrap();
        ids.push(pong.response.unwrap().id);
    }
    ids.sort();
    let mut expected = vec![first.host_id().to_string(), second.host_id().to_string()];
    expected.sort();
    assert_eq!(ids, expected);

    // Whichever node stored the link, the second one serves it.
    let address = serve_hello(&wasm, &client, &mut events, second.host_id(), 1).await;
    let (status, body) = http_get(&address, "/two").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "hello from trellis: GET /two")
    );

    first.stop().await.unwrap();
    second.stop().await.unwrap();
}

/// A component built by scripts/build-wasm.sh into `build/examples/`.
fn example_wasm(name: &str) -> PathBuf {
    built_wasm(&format!("examples/{name}.wasm"))
}

async fn start_labelled_node(nats: &NatsServer, labels: &[(&str, &str)]) -> Node {
    let node = start_node(nats).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let subjects = Subjects::new(LATTICE);
    for (key, value) in labels {
        let label = ctl::HostLabel {
            key: key.to_string(),
            value: value.to_string(),
        };
        let put: CtlResponse<()> =
            request(&client, subjects.label_put(node.host_id()), &label).await;
        assert!(put.success, "{}", put.message);
    }
    node
}

/// Scales `component_id` from `wasm` on `host_id` with runtime config `config` and waits for
/// `component_scaled`.
async fn scale_component(
    client: &async_nats::Client,
    events: &mut async_nats::Subscriber,
    host_id: &str,
    component_id: &str,
    wasm: &Path,
    config: &[&str],
) {
    let scale = ctl::ScaleComponentCommand {
        config: config.iter().map(|c| c.to_string()).collect(),
        ..scale_file(component_id, wasm, 4)
    };
    send_scale(client, host_id, &scale).await;
    let host = host_id.to_string();
    next_event(events, event::COMPONENT_SCALED, move |data| {
        data["component_id"] == component_id && data["host_id"] == host.as_str()
    })
    .await;
}

fn json_body(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_counts_outlive_the_node_that_wrote_them() {
    let wasm = example_wasm("kvcounter");
    let nats = NatsServer::start_temporary().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut events = subscribe_events(&client).await;
    let east = start_labelled_node(&nats, &[("region", "east")]).await;
    let subjects = Subjects::new(LATTICE);

    // The component's bucket comes from its wasi:keyvalue link to the built-in provider.
    put_config(
        &client,
        "counter-bucket",
        json!({ "bucket": "visits_test" }),
    )
    .await;
    let kv_link = Link {
        source_id: "counter".into(),
        target: "keyvalue".into(),
        name: "default".into(),
        wit_namespace: "wasi".into(),
        wit_package: "keyvalue".into(),
        interfaces: vec!["store".into(), "atomics".into(), "batch".into()],
        source_config: vec![],
        target_config: vec!["counter-bucket".into()],
    };
    put_link(&client, &kv_link).await;
    let start = ctl::StartProviderCommand {
        provider_id: "keyvalue".into(),
        provider_ref: "builtin:keyvalue".into(),
        ..Default::default()
    };
    let started: CtlResponse<()> =
        request(&client, subjects.provider_start(east.host_id()), &start).await;
    assert!(started.success, "{}", started.message);

    scale_component(&client, &mut events, east.host_id(), "counter", &wasm, &[]).await;
    let address = serve_over_http(&client, east.host_id(), "counter", "counter").await;
    let (_, body) = http_get_until(&address, "/", |s| s == 200).await;
    let first = json_body(&body);
    assert_eq!(
        first["region"], "east",
        "region from the node's label: {body}"
    );
    assert_eq!(first["host"], east.host_id());
    assert_eq!(first["count"], 1);
    for n in 2..=3 {
        let (status, body) = http_get(&address, "/").await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(json_body(&body)["count"], n, "{body}");
    }

    // The counts are in JetStream, in the linked bucket, as decimal text.
    let js = async_nats::jetstream::new(client.clone());
    let bucket = js.get_key_value("visits_test").await.unwrap();
    let stored = bucket.get("visits/east").await.unwrap().unwrap();
    assert_eq!(&stored[..], b"3");

    // The node goes away; another node, in another region, picks up from the same numbers.
    // A named config overrides the label: wasi:config reads the component's configs first.
    east.stop().await.unwrap();
    let west = start_labelled_node(&nats, &[("region", "west")]).await;
    put_config(&client, "counter-config", json!({ "region": "west-1" })).await;
    scale_component(
        &client,
        &mut events,
        west.host_id(),
        "counter",
        &wasm,
        &["counter-config"],
    )
    .await;
    let address = serve_over_http(&client, west.host_id(), "counter2", "counter").await;
    let (_, body) = http_get_until(&address, "/", |s| s == 200).await;
    let answer = json_body(&body);
    assert_eq!(answer["region"], "west-1", "{body}");
    assert_eq!(answer["count"], 1, "{body}");
    assert_eq!(
        answer["counts"]["east"], 3,
        "east's visits survived: {body}"
    );
    assert_eq!(answer["total"], 4, "{body}");

    // A config change reaches the running component.
    put_config(&client, "counter-config", json!({ "region": "west-2" })).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http_get(&address, "/counts").await.unwrap();
        if json_body(&body)["region"] == "west-2" {
            break;
        }
        assert!(Instant::now() < deadline, "config change not seen: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    west.stop().await.unwrap();
}

/// The lines of a pipeline answer, as (stage, host id).
fn stages(body: &str) -> Vec<(String, String)> {
    body.lines()
        .filter_map(|line| {
            let (who, _) = line.split_once(": ")?;
            let (stage, host) = who.split_once('@')?;
            Some((stage.to_string(), host.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_by_lattice_name_cross_nodes_and_fail_over() {
    let (sensor, infer, store) = (
        example_wasm("pipeline-sensor"),
        example_wasm("pipeline-infer"),
        example_wasm("pipeline-store"),
    );
    let nats = NatsServer::start_temporary().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut events = subscribe_events(&client).await;
    let a = start_node(&nats).await;
    let b = start_node(&nats).await;
    let c = start_node(&nats).await;
    let (a_id, b_id, c_id) = (
        a.host_id().to_string(),
        b.host_id().to_string(),
        c.host_id().to_string(),
    );

    // A component calls another only along a link that grants it (as the pipeline's manifest
    // has them).
    for (caller, callee) in [("sensor", "infer"), ("infer", "store")] {
        let grant = Link {
            source_id: caller.into(),
            target: callee.into(),
            name: "default".into(),
            wit_namespace: "wasi".into(),
            wit_package: "http".into(),
            interfaces: vec!["outgoing-handler".into()],
            source_config: vec![],
            target_config: vec![],
        };
        put_link(&client, &grant).await;
    }
    scale_component(&client, &mut events, &a_id, "sensor", &sensor, &[]).await;
    scale_component(&client, &mut events, &a_id, "store", &store, &[]).await;
    scale_component(&client, &mut events, &b_id, "infer", &infer, &[]).await;
    let address = serve_over_http(&client, &a_id, "sensor", "sensor").await;

    let (_, body) = http_get_until(&address, "/?reading=42", |s| s == 200).await;
    assert_eq!(
        stages(&body),
        vec![
            ("sensor".to_string(), a_id.clone()),
            ("infer".to_string(), b_id.clone()),
            ("store".to_string(), a_id.clone()),
        ],
        "{body}"
    );
    assert!(body.contains("42 is hot"), "{body}");

    // With infer on C as well, calls spread over B and C.
    scale_component(&client, &mut events, &c_id, "infer", &infer, &[]).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (status, body) = http_get(&address, "/?reading=7").await.unwrap();
        assert_eq!(status, 200, "{body}");
        seen.insert(stages(&body)[1].1.clone());
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(
        seen,
        [b_id.clone(), c_id.clone()].into(),
        "calls did not spread"
    );

    // B is killed (dropped without stopping: no goodbye, its calls and listeners cut at once):
    // every call still succeeds, on C. NATS forgets B's subscriptions as its connection goes,
    // as it would when the process died.
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..10 {
        let (status, body) = http_get(&address, "/?reading=1").await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            stages(&body)[1],
            ("infer".to_string(), c_id.clone()),
            "{body}"
        );
    }

    // Nobody runs infer any more: the caller gets a 503 with the reason, and the node serves on.
    c.stop().await.unwrap();
    let (status, body) = http_get(&address, "/?reading=1").await.unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("infer answered 503") && body.contains("infer is not running on any node"),
        "{body}"
    );
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_a_missing_component_answers_with_the_reason() {
    let wasm = hello_http_wasm();
    let nats = NatsServer::start_temporary().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut events = subscribe_events(&client).await;
    let node = start_node(&nats).await;
    let host_id = node.host_id().to_string();
    let hello = serve_hello(&wasm, &client, &mut events, &host_id, 1).await;
    let ghost = serve_over_http(&client, &host_id, "ghost", "ghost").await;

    let (status, body) = http_get_until(&ghost, "/", |s| s != 0).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("component ghost is not running on any node of lattice nodetest"),
        "{body}"
    );
    let (status, body) = http_get(&hello, "/still").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "hello from trellis: GET /still")
    );
    node.stop().await.unwrap();
}

/// Debian's `docker-registry` (the CNCF distribution registry) on a free loopback port, killed
/// on drop.
struct Registry {
    child: Child,
    address: String,
    _data: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let address = format!("127.0.0.1:{}", free_port().unwrap());
        let config = data.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                data.path().join("blobs").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry must be installed to run this test (Debian package docker-registry)");
        let registry = Self {
            child,
            address,
            _data: data,
        };
        let started = Instant::now();
        while TcpStream::connect(&registry.address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "docker-registry did not start on {}",
                registry.address
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wasm` with a custom section holding `nonce` appended: the same component, a new digest.
fn with_nonce(wasm: &[u8], nonce: &str) -> Vec<u8> {
    let name = b"trellis-test";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(nonce.as_bytes());
    assert!(payload.len() < 128, "one-byte LEB128 size");
    let mut out = wasm.to_vec();
    out.push(0);
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}

/// Where the node caches images (as `trellis_node`'s OCI module decides).
fn image_cache_dir() -> PathBuf {
    let env = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("TRELLIS_CACHE_DIR")
        .map(|d| d.join("images"))
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("trellis/images")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/trellis/images")))
        .unwrap_or_else(|| std::env::temp_dir().join("trellis-images"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_components_from_an_oci_registry_and_caches_them_by_digest() {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    use oci_client::secrets::RegistryAuth;

    let wasm = hello_http_wasm();
    let registry = Registry::start();
    let nats = NatsServer::start_temporary().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut events = subscribe_events(&client).await;
    let node = start_node(&nats).await;
    let host_id = node.host_id().to_string();

    // Publish the component as `wash push` does: one application/wasm layer.
    let image = format!("{}/trellis/hello:0.1.0", registry.address);
    let reference: oci_client::Reference = image.parse().unwrap();
    let oci = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let bytes = with_nonce(
        &std::fs::read(&wasm).unwrap(),
        &uuid::Uuid::new_v4().to_string(),
    );
    oci.push(
        &reference,
        &[ImageLayer::new(bytes, "application/wasm".into(), None)],
        Config::new(
            b"{}".to_vec(),
            "application/vnd.wasm.config.v0+json".into(),
            None,
        ),
        &RegistryAuth::Anonymous,
        None,
    )
    .await
    .expect("push to the test registry");
    let digest = oci
        .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
        .await
        .unwrap();

    // By tag: pulled, cached, served.
    let scale = ctl::ScaleComponentCommand {
        component_ref: image.clone(),
        component_id: "hello".into(),
        max_instances: 1,
        ..Default::default()
    };
    let scaled = scale_succeeds(&client, &mut events, &host_id, &scale).await;
    assert_eq!(scaled.data["image_ref"], image.as_str());
    let address = serve_over_http(&client, &host_id, "hello", "hello").await;
    let (_, body) = http_get_until(&address, "/oci", |s| s == 200).await;
    assert_eq!(body, "hello from trellis: GET /oci");
    let cached = image_cache_dir().join(format!("{}.wasm", digest.replace(':', "_")));
    assert!(cached.exists(), "{} not cached", cached.display());

    // The registry goes away: a reference pinned by digest still starts, from the cache; a
    // tag cannot be resolved, and the failure says so.
    drop(registry);
    let pinned = ctl::ScaleComponentCommand {
        component_ref: format!("{}/trellis/hello@{digest}", reference.resolve_registry()),
        component_id: "pinned".into(),
        ..scale.clone()
    };
    scale_succeeds(&client, &mut events, &host_id, &pinned).await;
    let by_tag = ctl::ScaleComponentCommand {
        component_id: "by-tag".into(),
        ..scale.clone()
    };
    let error = scale_fails(&client, &mut events, &host_id, &by_tag).await;
    assert!(
        error.contains(&format!("cannot pull {image}")) && error.contains("registry"),
        "{error}"
    );
    let (status, _) = http_get(&address, "/still").await.unwrap();
    assert_eq!(status, 200);

    let _ = std::fs::remove_file(&cached);
    node.stop().await.unwrap();
}
