//! The kvcounter example with real processes: an HTTP counter in JetStream key-value, spread
//! over a node in region east and one in region west. The east node is killed with SIGKILL;
//! west takes the HTTP port over and answers with the counts east made.

use std::time::{Duration, Instant};

use trellis_tests::process::{wait_until, ProcessLattice};
use trellis_tests::{example_manifest, http_get};

async fn get(address: &str, path: &str) -> Result<serde_json::Value, String> {
    let (address, path) = (address.to_string(), path.to_string());
    let (status, body) =
        tokio::task::spawn_blocking(move || http_get(&address, &path, Duration::from_secs(1)))
            .await
            .unwrap()
            .map_err(|e| format!("{e:#}"))?;
    if status != 200 {
        return Err(format!("{status} {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_survive_a_killed_serving_node() {
    let mut lattice = ProcessLattice::start(
        "kvcounter: the serving node killed, counts intact",
        &["spreadscaler", "linkscaler"],
    )
    .unwrap();
    let (manifest, addresses) = example_manifest("kvcounter");
    let address = addresses[0].clone();
    let file = lattice.dir().join("kvcounter.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();

    // East first, so that its HTTP listener holds the port when west arrives.
    let east = lattice.add_node(&[("region", "east")]).await.unwrap();
    let east_id = lattice.procs[east].host_id.clone().unwrap();
    lattice.add_controller().await.unwrap();
    let api = lattice.api().await.unwrap();
    let deploy = lattice
        .cli(&["app", "deploy", file.to_str().unwrap(), "--no-wait"])
        .await
        .unwrap();
    assert_eq!(deploy.code, 0, "{}", deploy.text());
    let first = wait_until("east answers", Duration::from_secs(30), || {
        get(&address, "/")
    })
    .await;
    assert_eq!(first["region"], "east", "{first}");
    assert_eq!(first["host"], east_id.as_str(), "{first}");

    // West joins; the spreadscaler gives it its own counter and HTTP server.
    let west = lattice.add_node(&[("region", "west")]).await.unwrap();
    let west_id = lattice.procs[west].host_id.clone().unwrap();
    wait_until("west gets its share", Duration::from_secs(20), || {
        let (api, west_id) = (&api, &west_id);
        async move {
            let inventory = api.inventory(west_id).await.map_err(|e| e.to_string())?;
            let counter = inventory
                .components
                .iter()
                .any(|c| c.id == "kvcounter-counter");
            let server = inventory
                .providers
                .iter()
                .any(|p| p.image_ref.as_deref() == Some("builtin:http-server"));
            if counter && server {
                Ok(())
            } else {
                Err(format!("{inventory:?}"))
            }
        }
    })
    .await;
    for n in 2..=4 {
        let answer = get(&address, "/").await.unwrap();
        assert_eq!(answer["region"], "east", "{answer}");
        assert_eq!(answer["count"], n, "{answer}");
    }

    // East dies without a word; west takes the port over and counts on.
    lattice.kill(east);
    let killed = Instant::now();
    let answer = wait_until("west takes over", Duration::from_secs(15), || {
        let address = &address;
        async move {
            let answer = get(address, "/").await?;
            if answer["region"] == "west" {
                Ok(answer)
            } else {
                Err(format!("{answer}"))
            }
        }
    })
    .await;
    let took_over = killed.elapsed();
    assert_eq!(answer["host"], west_id.as_str(), "{answer}");
    assert_eq!(answer["count"], 1, "{answer}");
    assert_eq!(
        answer["counts"]["east"], 4,
        "east's visits are intact: {answer}"
    );
    assert_eq!(answer["total"], 5, "{answer}");
    let counts = get(&address, "/counts").await.unwrap();
    assert_eq!(counts["counts"], serde_json::json!({"east": 4, "west": 1}));
    println!("west answered {took_over:?} after east was killed");
}
