//! Links in wasmCloud's shape on a real nats-server: links from one source share an entry, so
//! writers racing on it must not lose each other's links; a deleted link leaves the others; and
//! the entry is what a wasmCloud host reads (`COMPONENT_{source}`, `{url, links}`).

use trellis_bus::lattice_data::LatticeData;
use trellis_bus::link_specs::{spec_key, ComponentSpec};
use trellis_bus::nats_server::NatsServer;
use trellis_lattice::ctl::{self, Link};

const LATTICE: &str = "links";

fn link(name: &str) -> Link {
    Link {
        source_id: "http".into(),
        target: format!("echo-{name}"),
        name: name.into(),
        wit_namespace: "wasi".into(),
        wit_package: "http".into(),
        interfaces: vec!["incoming-handler".into()],
        ..Link::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_of_one_source_lose_no_link() {
    let nats = NatsServer::start_temporary().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    // Two hosts' views of the same buckets, writing at once.
    let a = LatticeData::open(&client, LATTICE).await.unwrap();
    let b = LatticeData::open(&client, LATTICE).await.unwrap();
    let writes = (0..16).map(|i| {
        let data = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { data.put_link(&link(&format!("l{i}"))).await })
    });
    for write in writes.collect::<Vec<_>>() {
        write.await.unwrap().unwrap();
    }
    let mut names: Vec<String> = a
        .links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    names.sort();
    assert_eq!(names.len(), 16, "{names:?}");

    assert!(a.delete_link("http", "l3", "wasi", "http").await.unwrap());
    assert!(!a.delete_link("http", "l3", "wasi", "http").await.unwrap());
    assert_eq!(a.links().await.unwrap().len(), 15);

    // The entry, as a wasmCloud host would read it.
    let js = async_nats::jetstream::new(client.clone());
    let kv = js.get_key_value(ctl::link_bucket(LATTICE)).await.unwrap();
    let raw = kv
        .get(spec_key("http"))
        .await
        .unwrap()
        .expect("the source's entry");
    let spec: ComponentSpec = serde_json::from_slice(&raw).unwrap();
    assert_eq!(spec.links.len(), 15);
    assert!(spec.links.iter().all(|l| l.source_id == "http"));
}
