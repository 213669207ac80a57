//! The trellis controller driven by the official `wadm-client` 0.10 (what `wash app` uses),
//! unchanged: put, list, get, versions, deploy, status, undeploy, delete.

use std::time::{Duration, Instant};

use trellis_tests::{echo_manifest, http_get, TestLattice};
use wadm_types::api::StatusType;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wadm_client_manages_an_app_through_trellis() {
    let mut lattice = TestLattice::start(&["spreadscaler", "linkscaler"])
        .await
        .unwrap();
    lattice.add_node(&[]).await.unwrap();
    let nc = async_nats_wasmcloud::connect(lattice.nats.url())
        .await
        .unwrap();
    let wadm = wadm_client::Client::from_nats_client(&lattice.lattice, None, nc);
    let (manifest, address) = echo_manifest();
    let bytes = serde_json::to_vec(&manifest).unwrap();

    let (name, version) = wadm.put_manifest(bytes).await.unwrap();
    assert_eq!((name.as_str(), version.as_str()), ("echo", "v0.1.0"));
    let listed = wadm.list_manifests().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "echo");
    assert_eq!(listed[0].deployed_version, None);
    let got = wadm.get_manifest("echo", None).await.unwrap();
    assert_eq!(got.metadata.name, "echo");
    assert_eq!(got.spec.components.len(), 2);
    let versions = wadm.list_versions("echo").await.unwrap();
    assert_eq!(versions.len(), 1);
    assert!(!versions[0].deployed);

    wadm.deploy_manifest("echo", None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = wadm.get_manifest_status("echo").await.unwrap();
        if status.info.status_type == StatusType::Deployed {
            assert!(!status.scalers.is_empty());
            break;
        }
        assert_ne!(status.info.status_type, StatusType::Failed, "{status:?}");
        assert!(Instant::now() < deadline, "not deployed: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let probe = address.clone();
    let (code, _) =
        tokio::task::spawn_blocking(move || http_get(&probe, "/", Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(code, 200);
    assert!(wadm.list_versions("echo").await.unwrap()[0].deployed);

    wadm.undeploy_manifest("echo").await.unwrap();
    let status = wadm.get_manifest_status("echo").await.unwrap();
    assert_eq!(status.info.status_type, StatusType::Undeployed);
    // Undeploy removes what the app ran: the HTTP listener goes away.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&address).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{address} still serves after undeploy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert!(wadm.delete_manifest("echo", None).await.unwrap());
    assert!(wadm.list_manifests().await.unwrap().is_empty());
    assert!(wadm.get_manifest("echo", None).await.is_err());
}
