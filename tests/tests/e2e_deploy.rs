//! End to end with real processes: a `trellis controller` and `trellis node`s as child
//! processes, driven through the `trellis` CLI. Deploy, answer HTTP, undeploy to nothing; and an
//! upgrade to a new image and HTTP address that leaves nothing of the old version behind.

use std::time::Duration;

use trellis_cli::nats_server::free_port;
use trellis_tests::process::{wait_until, ProcessLattice};
use trellis_tests::{built_example, echo_http_app, http_get};

fn free_address() -> String {
    format!("127.0.0.1:{}", free_port().unwrap())
}

async fn get(address: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let (address, path) = (address.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || http_get(&address, &path, Duration::from_secs(10)))
        .await
        .unwrap()
}

fn refuses(address: &str) -> bool {
    std::net::TcpStream::connect(address).is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_answers_http_and_undeploy_leaves_nothing_running() {
    let mut lattice = ProcessLattice::start(
        "deploy echo, HTTP answers, undeploy leaves nothing",
        &["spreadscaler", "linkscaler"],
    )
    .unwrap();
    lattice.add_controller().await.unwrap();
    lattice.add_node(&[("zone", "a")]).await.unwrap();
    lattice.add_node(&[("zone", "b")]).await.unwrap();
    let api = lattice.api().await.unwrap();

    let address = free_address();
    let file = lattice.write(
        "echo.yaml",
        &echo_http_app("echo", "v1", &built_example("echo"), 2, &address),
    );
    let deploy = lattice
        .cli(&["app", "deploy", file.to_str().unwrap(), "--timeout", "30"])
        .await
        .unwrap();
    assert_eq!(deploy.code, 0, "app deploy: {}", deploy.text());

    let (code, body) = get(&address, "/hello/e2e").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("GET /hello/e2e"), "{body}");
    let running = lattice.instances(&api, "echo-echo").await;
    assert_eq!(running.values().sum::<u32>(), 2, "{running:?}");

    let undeploy = lattice.cli(&["app", "undeploy", "echo"]).await.unwrap();
    assert_eq!(undeploy.code, 0, "app undeploy: {}", undeploy.text());
    wait_until("nothing left running", Duration::from_secs(15), || {
        let (api, lattice, address) = (&api, &lattice, &address);
        async move {
            let running = lattice.everything_running(api).await;
            let links = api.links().await.map_err(|e| e.to_string())?;
            if running.is_empty() && links.is_empty() && refuses(address) {
                Ok(())
            } else {
                Err(format!(
                    "running {running:?}, links {links:?}, {address} refused: {}",
                    refuses(address)
                ))
            }
        }
    })
    .await;
    // The manifest stays stored, undeployed.
    let list = api.list().await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].deployed_version, None, "{list:?}");
}

/// v2 moves the HTTP address (a changed link config).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_to_a_new_address_serves_v2_and_cleans_up_v1() {
    upgrade("upgrade v1 to v2: new HTTP address", false).await;
}

/// v2 also changes the component's image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_to_a_new_image_replaces_the_running_component() {
    upgrade("upgrade v1 to v2: new image and HTTP address", true).await;
}

async fn upgrade(scenario: &str, new_image: bool) {
    let mut lattice = ProcessLattice::start(scenario, &["spreadscaler", "linkscaler"]).unwrap();
    lattice.add_controller().await.unwrap();
    lattice.add_node(&[]).await.unwrap();
    lattice.add_node(&[]).await.unwrap();
    let api = lattice.api().await.unwrap();

    // Two images of the same component under different names, so the inventory tells them apart.
    let image_v1 = lattice.dir().join("echo-v1.wasm");
    let image_v2 = if new_image {
        lattice.dir().join("echo-v2.wasm")
    } else {
        image_v1.clone()
    };
    std::fs::copy(built_example("echo"), &image_v1).unwrap();
    std::fs::copy(built_example("echo"), &image_v2).unwrap();
    let (address_v1, address_v2) = (free_address(), free_address());
    let v1 = lattice.write(
        "v1.yaml",
        &echo_http_app("echo", "v1", &image_v1, 2, &address_v1),
    );
    let v2 = lattice.write(
        "v2.yaml",
        &echo_http_app("echo", "v2", &image_v2, 2, &address_v2),
    );

    let deploy = lattice
        .cli(&["app", "deploy", v1.to_str().unwrap(), "--timeout", "30"])
        .await
        .unwrap();
    assert_eq!(deploy.code, 0, "deploy v1: {}", deploy.text());
    let (code, _) = get(&address_v1, "/v1").await.unwrap();
    assert_eq!(code, 200);

    let deploy = lattice
        .cli(&["app", "deploy", v2.to_str().unwrap(), "--timeout", "30"])
        .await
        .unwrap();
    assert_eq!(deploy.code, 0, "deploy v2: {}", deploy.text());
    let (code, body) = get(&address_v2, "/v2").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("GET /v2"), "{body}");

    let v2_image = format!("file://{}", image_v2.display());
    wait_until("v1 cleaned up", Duration::from_secs(15), || {
        let (api, lattice) = (&api, &lattice);
        let (address_v1, address_v2, v2_image) = (&address_v1, &address_v2, &v2_image);
        async move {
            let mut left = Vec::new();
            if !refuses(address_v1) {
                left.push(format!("{address_v1} still served"));
            }
            let mut echo_instances = 0;
            for (host, inventory) in lattice.inventories(api).await {
                for c in &inventory.components {
                    if &c.image_ref != v2_image {
                        left.push(format!("{host} runs {} from {}", c.id, c.image_ref));
                    }
                    echo_instances += c.max_instances;
                }
            }
            if echo_instances != 2 {
                left.push(format!("{echo_instances} echo instances, not 2"));
            }
            let links = api.links().await.map_err(|e| e.to_string())?;
            // The link names its config; the config holds the address.
            if links.len() != 1 || links[0].source_config != ["echo-http"] {
                left.push(format!("links: {links:?}"));
            }
            let config = api.config("echo-http").await.map_err(|e| e.to_string())?;
            if config.get("address") != Some(address_v2) {
                left.push(format!("config echo-http: {config:?}"));
            }
            if left.is_empty() {
                Ok(())
            } else {
                Err(left.join("; "))
            }
        }
    })
    .await;
    let list = api.list().await.unwrap();
    assert_eq!(list[0].deployed_version.as_deref(), Some("v2"), "{list:?}");
}
