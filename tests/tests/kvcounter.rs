//! The kvcounter example end to end: an HTTP counter in key-value, spread by the controller over
//! a node in region east and one in region west. The east node goes away; west answers with
//! the counts east made.

use std::time::{Duration, Instant};

use trellis_lattice::api::{DeployResult, PutResult};
use trellis_tests::{example_manifest, http_get, TestLattice};

async fn get(address: &str, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    let (address, path) = (address.to_string(), path.to_string());
    let (status, body) =
        tokio::task::spawn_blocking(move || http_get(&address, &path, Duration::from_secs(1)))
            .await??;
    let json = serde_json::from_str(&body)
        .map_err(|e| anyhow::anyhow!("not JSON ({e}): {status} {body}"))?;
    Ok((status, json))
}

/// Polls `GET path` until an answer satisfies `done`.
async fn get_until(
    address: &str,
    path: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = get(address, path).await;
        if let Ok((200, json)) = &answer {
            if done(json) {
                return json.clone();
            }
        }
        assert!(Instant::now() < deadline, "{what}: last answer {answer:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_survive_the_loss_of_the_serving_node() {
    let mut lattice = TestLattice::start(&["spreadscaler", "linkscaler"])
        .await
        .unwrap();
    let api = lattice.api().await.unwrap();
    let (manifest, addresses) = example_manifest("kvcounter");
    let address = addresses[0].clone();

    // East first, so that its HTTP listener holds the port when west arrives.
    let east = lattice.add_node(&[("region", "east")]).await.unwrap();
    let east_id = east.host_id().to_string();
    let put = api.put(&manifest).await.unwrap();
    assert_eq!(put.result, PutResult::Created, "{}", put.message);
    let deploy = api.deploy("kvcounter", None).await.unwrap();
    assert_eq!(
        deploy.result,
        DeployResult::Acknowledged,
        "{}",
        deploy.message
    );
    let first = get_until(&address, "/", "east never answered", |_| true).await;
    assert_eq!(first["region"], "east", "{first}");
    assert_eq!(first["host"], east_id.as_str());

    // West joins; the spreadscaler gives it its own counter and HTTP server.
    let west_id = lattice
        .add_node(&[("region", "west")])
        .await
        .unwrap()
        .host_id()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let inventory = api.inventory(&west_id).await.unwrap();
        let counter = inventory
            .components
            .iter()
            .any(|c| c.id == "kvcounter-counter");
        let server = inventory
            .providers
            .iter()
            .any(|p| p.image_ref.as_deref() == Some("builtin:http-server"));
        if counter && server {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "west never got its share: {inventory:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for n in 2..=4 {
        let (status, answer) = get(&address, "/").await.unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["region"], "east", "{answer}");
        assert_eq!(answer["count"], n, "{answer}");
    }

    // The east node goes away (graceful stop); west takes the port over and counts on.
    let east = lattice.nodes.remove(0);
    assert_eq!(east.host_id(), east_id);
    east.stop().await.unwrap();
    let answer = get_until(&address, "/", "west never took over", |json| {
        json["region"] == "west"
    })
    .await;
    assert_eq!(answer["host"], west_id.as_str(), "{answer}");
    assert_eq!(answer["count"], 1, "{answer}");
    assert_eq!(
        answer["counts"]["east"], 4,
        "east's visits are intact: {answer}"
    );
    assert_eq!(answer["total"], 5, "{answer}");

    let (_, counts) = get(&address, "/counts").await.unwrap();
    assert_eq!(counts["counts"], serde_json::json!({"east": 4, "west": 1}));
}
