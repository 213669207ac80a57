//! The pipeline example end to end on three nodes: sensor placed on the camera node, infer on
//! the accelerator node, store anywhere; one HTTP request flows through all three, each stage
//! calling the next by its lattice name over NATS.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use trellis_lattice::api::{DeployResult, PutResult, StatusType};
use trellis_tests::{example_manifest, http_get, TestLattice};

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

async fn get(address: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let (address, path) = (address.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || http_get(&address, &path, Duration::from_secs(5))).await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flows_through_three_components_on_three_nodes() {
    let mut lattice = TestLattice::start(&["spreadscaler", "linkscaler"])
        .await
        .unwrap();
    let camera = lattice
        .add_node(&[("camera", "true")])
        .await
        .unwrap()
        .host_id()
        .to_string();
    let accel = lattice
        .add_node(&[("accel", "true")])
        .await
        .unwrap()
        .host_id()
        .to_string();
    let plain = lattice.add_node(&[]).await.unwrap().host_id().to_string();
    let api = lattice.api().await.unwrap();
    let (manifest, addresses) = example_manifest("pipeline");
    let address = addresses[0].clone();

    let put = api.put(&manifest).await.unwrap();
    assert_eq!(put.result, PutResult::Created, "{}", put.message);
    let deploy = api.deploy("pipeline", None).await.unwrap();
    assert_eq!(
        deploy.result,
        DeployResult::Acknowledged,
        "{}",
        deploy.message
    );
    let status = api
        .wait_deployed("pipeline", Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    assert_eq!(status.info.status_type, StatusType::Deployed);

    // Deployed means commands acknowledged; the HTTP listener may still be opening.
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        match get(&address, "/?reading=42").await {
            Ok((200, body)) => break body,
            answer => assert!(Instant::now() < deadline, "no answer: {answer:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let chain = stages(&body);
    let names: Vec<&str> = chain.iter().map(|(stage, _)| stage.as_str()).collect();
    assert_eq!(names, ["sensor", "infer", "store"], "{body}");
    assert_eq!(chain[0].1, camera, "sensor runs on the camera node: {body}");
    assert_eq!(
        chain[1].1, accel,
        "infer runs on the accelerator node: {body}"
    );
    let anywhere: BTreeSet<&str> = [camera.as_str(), accel.as_str(), plain.as_str()].into();
    assert!(anywhere.contains(chain[2].1.as_str()), "{body}");
    assert!(body.contains("42 is hot"), "{body}");
    assert!(body.contains("record 1 saved"), "{body}");

    // Records are numbered in key-value: the next request is record 2.
    let (status, body) = get(&address, "/?reading=3").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("3 is cold") && body.contains("record 2 saved"),
        "{body}"
    );
}
