//! A trellis node driven by the official `wasmcloud-control-interface` 2.x client, unchanged:
//! the wire compatibility DESIGN.md promises, checked against the reference crate rather than
//! against our own reading of it.

use std::collections::HashMap;
use std::time::Duration;

use cloudevents::AttributesReader;
use trellis_cli::nats_server::free_port;
use trellis_tests::{built_example, http_get, TestLattice};
use wasmcloud_control_interface::{ClientBuilder, Link};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasmcloud_client_drives_a_trellis_node() {
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
    let client = ClientBuilder::new(nc).lattice(&lattice.lattice).build();

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
        .start_provider(&host_id, "builtin:http-server", "http", None, vec![])
        .await
        .unwrap();
    assert!(started.succeeded(), "{}", started.message());

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
    let (code, body) = tokio::task::spawn_blocking(move || {
        http_get(&address, "/from-wasmcloud-client", Duration::from_secs(10))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("GET /from-wasmcloud-client"), "{body}");
}
