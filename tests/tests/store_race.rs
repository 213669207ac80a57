//! A put and a delete of one app racing through the API, many times, with two controllers
//! answering (the API is a queue group, so the two requests often land on different
//! controllers at the same moment). The store always ends consistent: one request wins, the
//! other gets a conflict error, never a half-applied app.

use std::time::Duration;

use serde::de::DeserializeOwned;
use trellis_cli::nats_server::NatsServer;
use trellis_controller::{Controller, ControllerConfig};
use trellis_lattice::api::{
    DeleteModelResponse, DeleteResult, GetResult, PutModelResponse, PutResult, Subjects,
    VersionResponse,
};
use trellis_tests::{built_plugin, fast_settings};

const ROUNDS: usize = 200;

fn manifest(version: &str) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: contested
  annotations:
    version: {version}
spec:
  components:
    - name: worker
      type: component
      properties:
        image: file:///simulated/worker.wasm
      traits:
        - type: spreadscaler
          properties:
            instances: 1
"#
    )
}

async fn request<T: DeserializeOwned>(
    client: &async_nats::Client,
    subject: String,
    body: String,
) -> T {
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(subject.clone(), body.into()),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer on {subject}"))
    .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_put_and_delete_end_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(0, &dir.path().join("nats")).unwrap();
    let plugin_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    std::fs::copy(
        built_plugin("spreadscaler"),
        plugin_dir.join("spreadscaler.wasm"),
    )
    .unwrap();
    let mut controllers = Vec::new();
    for _ in 0..2 {
        controllers.push(
            Controller::start(ControllerConfig {
                nats_url: nats.url(),
                lattices: vec!["race".into()],
                plugin_dir: plugin_dir.clone(),
                settings: fast_settings(),
                ..ControllerConfig::default()
            })
            .await
            .unwrap(),
        );
    }
    let subjects = Subjects::new("race");
    // Separate connections, so neither request waits behind the other in one socket.
    let putter = async_nats::connect(nats.url()).await.unwrap();
    let deleter = async_nats::connect(nats.url()).await.unwrap();
    let (mut put_won, mut delete_won, mut both_in_turn) = (0, 0, 0);

    for round in 0..ROUNDS {
        let base = format!("v{round}.0");
        let put: PutModelResponse = request(&putter, subjects.put(), manifest(&base)).await;
        assert_ne!(put.result, PutResult::Error, "setup put: {}", put.message);

        let contender = format!("v{round}.1");
        let (put, delete) = tokio::join!(
            request::<PutModelResponse>(&putter, subjects.put(), manifest(&contender)),
            request::<DeleteModelResponse>(&deleter, subjects.del("contested"), String::new()),
        );
        let versions: VersionResponse =
            request(&putter, subjects.versions("contested"), String::new()).await;
        let stored: Vec<String> = versions
            .versions
            .iter()
            .map(|v| v.version.clone())
            .collect();
        let conflict = |message: &str| message.contains("changed by someone else");
        match (put.result, delete.result) {
            // The put came second and recreated the app with its version alone.
            (PutResult::Created, DeleteResult::Deleted) => {
                both_in_turn += 1;
                assert_eq!(stored, std::slice::from_ref(&contender), "round {round}");
            }
            // The delete came second and removed everything.
            (PutResult::NewVersion, DeleteResult::Deleted) => {
                both_in_turn += 1;
                assert_eq!(versions.result, GetResult::NotFound, "round {round}: {stored:?}");
            }
            (PutResult::NewVersion, DeleteResult::Error) => {
                put_won += 1;
                assert!(conflict(&delete.message), "round {round}: {}", delete.message);
                assert_eq!(stored, [base.clone(), contender.clone()], "round {round}");
            }
            (PutResult::Error, DeleteResult::Deleted) => {
                delete_won += 1;
                assert!(conflict(&put.message), "round {round}: {}", put.message);
                assert_eq!(versions.result, GetResult::NotFound, "round {round}: {stored:?}");
            }
            other => panic!(
                "round {round}: inconsistent outcome {other:?} (put: {}; delete: {}; stored: {stored:?})",
                put.message, delete.message
            ),
        }
        // Start the next round from nothing.
        let _: DeleteModelResponse =
            request(&putter, subjects.del("contested"), String::new()).await;
    }
    eprintln!(
        "{ROUNDS} rounds: put won {put_won}, delete won {delete_won}, in turn {both_in_turn}"
    );
    assert!(
        put_won + delete_won > 0,
        "no round raced ({both_in_turn} ran in turn): the test proved nothing"
    );
    for controller in controllers {
        controller.stop().await;
    }
}
