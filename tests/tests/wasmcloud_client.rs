//! A trellis node driven by the official `wasmcloud-control-interface` 2.x client, unchanged:
//! the wire compatibility DESIGN.md promises, checked against the reference crate rather than
//! against our own reading of it. Besides the commands, the queries wadm makes of every host:
//! claims, component and provider auctions, and component updates.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cloudevents::{AttributesReader, Data, Event};
use tokio::sync::mpsc::Receiver;
use trellis_cli::nats_server::free_port;
use trellis_tests::{built_example, http_get, TestLattice};
use wasmcloud_control_interface::{Client, ClientBuilder, Link};

/// A lattice with one node labelled `region=east`, its id, and the official client on it. An
/// auction waits this long for bids, whether or not any come.
async fn east_node() -> (TestLattice, String, Client) {
    let mut lattice = TestLattice::start(&[]).await.unwrap();
    let host_id = lattice
        .add_node(&[("region", "east")])
        .await
        .unwrap()
        .host_id()
        .to_string();
    let nc = async_nats_wasmcloud::connect(lattice.nats.url())
        .await
        .unwrap();
    let client = ClientBuilder::new(nc)
        .lattice(&lattice.lattice)
        .auction_timeout(Duration::from_secs(1))
        .build();
    (lattice, host_id, client)
}

/// The built-in HTTP server provider on `host_id`, wired to component `echo` on a free port;
/// returns the address.
async fn serve_echo_over_http(client: &Client, host_id: &str) -> String {
    let address = format!("127.0.0.1:{}", free_port().unwrap());
    let put = client
        .put_config(
            "echo-address",
            HashMap::from([("address".to_string(), address.clone())]),
        )
        .await
        .unwrap();
    assert!(put.succeeded(), "{}", put.message());
    let link = Link::builder()
        .name("default")
        .source_id("http")
        .target("echo")
        .wit_namespace("wasi")
        .wit_package("http")
        .interfaces(vec!["incoming-handler".to_string()])
        .source_config(vec!["echo-address".to_string()])
        .build()
        .unwrap();
    let put = client.put_link(link).await.unwrap();
    assert!(put.succeeded(), "{}", put.message());
    let started = client
        .start_provider(host_id, "builtin:http-server", "http", None, vec![])
        .await
        .unwrap();
    assert!(started.succeeded(), "{}", started.message());
    address
}

/// The next `component_scaled` event, within 30s: its image and instance count.
async fn next_scaled(events: &mut Receiver<Event>) -> (String, u64) {
    let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .expect("component_scaled within 30s")
        .expect("the event stream is open");
    assert_eq!(event.ty(), "com.wasmcloud.lattice.component_scaled");
    let data: serde_json::Value = match event.data() {
        Some(Data::Json(value)) => value.clone(),
        Some(Data::String(text)) => serde_json::from_str(text).unwrap(),
        Some(Data::Binary(bytes)) => serde_json::from_slice(bytes).unwrap(),
        None => panic!("component_scaled without data"),
    };
    let image = data["image_ref"].as_str().unwrap_or_default().to_string();
    (image, data["max_instances"].as_u64().unwrap_or_default())
}

/// GET `path` from `address`: the status and body.
async fn get(address: &str, path: &'static str) -> (u16, String) {
    let address = address.to_string();
    tokio::task::spawn_blocking(move || http_get(&address, path, Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasmcloud_client_drives_a_trellis_node() {
    let (lattice, host_id, client) = east_node().await;

    // host.ping
    let hosts = client.get_hosts().await.unwrap();
    assert_eq!(hosts.len(), 1);
    let host = hosts[0].data().expect("a host in the ping answer");
    assert_eq!(host.id(), host_id);
    assert_eq!(
        host.labels().get("region").map(String::as_str),
        Some("east")
    );

    // config.put, link.put, provider.start: the HTTP server provider, wired to `echo`.
    let address = serve_echo_over_http(&client, &host_id).await;

    // component.scale, and the component_scaled event it causes.
    let mut events = client
        .events_receiver(vec!["component_scaled".to_string()])
        .await
        .unwrap();
    let image = format!("file://{}", built_example("echo").display());
    let scaled = client
        .scale_component(&host_id, &image, "echo", 2, None, vec![])
        .await
        .unwrap();
    assert!(scaled.succeeded(), "{}", scaled.message());
    let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .expect("component_scaled within 30s")
        .unwrap();
    assert_eq!(event.ty(), "com.wasmcloud.lattice.component_scaled");
    assert_eq!(event.source().to_string(), host_id);

    // host.get and link.get read back what was done.
    let inventory = client.get_host_inventory(&host_id).await.unwrap();
    let inventory = inventory.data().expect("an inventory");
    let echo = inventory
        .components()
        .iter()
        .find(|c| c.id() == "echo")
        .expect("echo in the inventory");
    assert_eq!(echo.max_instances(), 2);
    assert_eq!(echo.image_ref(), image);
    assert!(inventory.providers().iter().any(|p| p.id() == "http"));
    let links = client.get_links().await.unwrap();
    let links = links.data().expect("links");
    assert!(links
        .iter()
        .any(|l| l.source_id() == "http" && l.target() == "echo"));

    // And the component answers through the provider.
    let (code, body) = get(&address, "/from-wasmcloud-client").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("GET /from-wasmcloud-client"), "{body}");
    drop(lattice);
}

/// wadm asks for claims on every heartbeat and records a host only once they come: the answer
/// must be a success carrying a list (empty: trellis components carry no JWT claims).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_get_answers_an_empty_list() {
    let (_lattice, _host_id, client) = east_node().await;
    let claims = client.get_claims().await.unwrap();
    assert!(claims.succeeded(), "{}", claims.message());
    let list = claims.data().expect("a list of claims, not a missing one");
    assert!(list.is_empty(), "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_auction_gets_a_bid_only_where_the_node_could_run_it() {
    let (_lattice, host_id, client) = east_node().await;
    let image = format!("file://{}", built_example("echo").display());
    let east = BTreeMap::from([("region".to_string(), "east".to_string())]);

    let acks = client
        .perform_component_auction(&image, "echo", east.clone())
        .await
        .unwrap();
    assert_eq!(acks.len(), 1, "one node, one bid: {acks:?}");
    assert!(acks[0].succeeded(), "{}", acks[0].message());
    let ack = acks[0].data().expect("the bid");
    assert_eq!(ack.host_id(), host_id);
    // The crate's `component_id()` returns the component_ref (2.4.0), so read the field as it
    // came over the wire.
    let wire = serde_json::to_value(ack).unwrap();
    assert_eq!(wire["component_id"], "echo", "{wire}");
    assert_eq!(ack.component_ref(), image);
    assert_eq!(ack.constraints(), &east);

    // A label value the node does not carry, or a label it lacks: no bid.
    let west = BTreeMap::from([("region".to_string(), "west".to_string())]);
    let acks = client
        .perform_component_auction(&image, "echo", west)
        .await
        .unwrap();
    assert!(acks.is_empty(), "{acks:?}");
    let gpu = BTreeMap::from([("gpu".to_string(), "true".to_string())]);
    let acks = client
        .perform_component_auction(&image, "echo", gpu)
        .await
        .unwrap();
    assert!(acks.is_empty(), "{acks:?}");

    // Once echo runs on the node, the node bids for it no more (but still for another id).
    let mut events = client
        .events_receiver(vec!["component_scaled".to_string()])
        .await
        .unwrap();
    let scaled = client
        .scale_component(&host_id, &image, "echo", 1, None, vec![])
        .await
        .unwrap();
    assert!(scaled.succeeded(), "{}", scaled.message());
    next_scaled(&mut events).await;
    let acks = client
        .perform_component_auction(&image, "echo", east.clone())
        .await
        .unwrap();
    assert!(acks.is_empty(), "{acks:?}");
    let acks = client
        .perform_component_auction(&image, "echo-2", east)
        .await
        .unwrap();
    assert_eq!(acks.len(), 1, "{acks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_auction_gets_a_bid_only_where_the_node_could_run_it() {
    let (_lattice, host_id, client) = east_node().await;
    let east = BTreeMap::from([("region".to_string(), "east".to_string())]);

    let acks = client
        .perform_provider_auction("builtin:http-server", "http", east.clone())
        .await
        .unwrap();
    assert_eq!(acks.len(), 1, "one node, one bid: {acks:?}");
    assert!(acks[0].succeeded(), "{}", acks[0].message());
    let ack = acks[0].data().expect("the bid");
    assert_eq!(ack.host_id(), host_id);
    assert_eq!(ack.provider_id(), "http");
    assert_eq!(ack.provider_ref(), "builtin:http-server");
    assert_eq!(ack.constraints(), &east);

    let west = BTreeMap::from([("region".to_string(), "west".to_string())]);
    let acks = client
        .perform_provider_auction("builtin:http-server", "http", west)
        .await
        .unwrap();
    assert!(acks.is_empty(), "{acks:?}");

    // Once the provider runs on the node, the node bids for that id no more.
    let started = client
        .start_provider(&host_id, "builtin:http-server", "http", None, vec![])
        .await
        .unwrap();
    assert!(started.succeeded(), "{}", started.message());
    let acks = client
        .perform_provider_auction("builtin:http-server", "http", east)
        .await
        .unwrap();
    assert!(acks.is_empty(), "{acks:?}");
}

/// `component.update` runs another image under the same id, at the count it ran with: echo
/// becomes kvcounter, and the HTTP route to `echo` now reaches kvcounter's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_component_swaps_the_image_and_keeps_the_count() {
    let (lattice, host_id, client) = east_node().await;
    let address = serve_echo_over_http(&client, &host_id).await;
    let mut events = client
        .events_receiver(vec!["component_scaled".to_string()])
        .await
        .unwrap();
    let echo = format!("file://{}", built_example("echo").display());
    let scaled = client
        .scale_component(&host_id, &echo, "echo", 2, None, vec![])
        .await
        .unwrap();
    assert!(scaled.succeeded(), "{}", scaled.message());
    assert_eq!(next_scaled(&mut events).await, (echo.clone(), 2));
    let (code, body) = get(&address, "/before-update").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("GET /before-update"), "{body}");

    // Not running: refused, naming the component.
    let refused = client
        .update_component(&host_id, "ghost", &echo, None)
        .await
        .unwrap();
    assert!(!refused.succeeded());
    assert!(refused.message().contains("ghost"), "{}", refused.message());
    // The image it runs already: nothing to do.
    let same = client
        .update_component(&host_id, "echo", &echo, None)
        .await
        .unwrap();
    assert!(same.succeeded(), "{}", same.message());

    let kvcounter = format!("file://{}", built_example("kvcounter").display());
    let updated = client
        .update_component(&host_id, "echo", &kvcounter, None)
        .await
        .unwrap();
    assert!(updated.succeeded(), "{}", updated.message());
    assert_eq!(next_scaled(&mut events).await, (kvcounter.clone(), 2));

    let inventory = client.get_host_inventory(&host_id).await.unwrap();
    let inventory = inventory.data().expect("an inventory");
    let component = inventory
        .components()
        .iter()
        .find(|c| c.id() == "echo")
        .expect("echo (the id) still in the inventory");
    assert_eq!(component.image_ref(), kvcounter);
    assert_eq!(component.max_instances(), 2);

    // kvcounter answers in JSON (its bucket is not linked here, so it may be an error), and
    // echo's echo is gone.
    let (_code, body) = get(&address, "/after-update").await;
    assert!(!body.contains("GET /after-update"), "still echo: {body}");
    assert!(body.trim_start().starts_with('{'), "{body}");
    drop(lattice);
}
