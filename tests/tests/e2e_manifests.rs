//! Manifests through the `trellis` CLI against a controller process: bad manifests are refused
//! with a non-zero exit and a message naming the problem, and nothing is stored; a put and a
//! delete of one app racing through two CLI clients (and two controllers) leave the store
//! consistent.

use trellis_lattice::api::GetResult;
use trellis_tests::process::ProcessLattice;
use trellis_tests::{built_example, echo_http_app};

/// App `name` at `version`, valid, with an HTTP address nothing will ever serve (these tests
/// only put manifests).
fn echo_app(name: &str, version: &str) -> String {
    echo_http_app(name, version, &built_example("echo"), 1, "127.0.0.1:1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_refused_by_the_cli_and_nothing_is_stored() {
    let mut lattice = ProcessLattice::start(
        "bad manifests through `trellis app put`",
        &["spreadscaler", "linkscaler", "validator"],
    )
    .unwrap();
    lattice.add_controller().await.unwrap();
    let good = echo_app("shop", "v1");
    let cases = [
        (
            "syntax",
            good.replace("    version: v1\n", "    version: [v1\n"),
            "line",
        ),
        (
            "unknown trait",
            good.replacen("type: spreadscaler", "type: spreadscalar", 1),
            "spreadscalar",
        ),
        (
            "missing link target",
            good.replace("target: echo", "target: ecoh"),
            "link target 'ecoh' is not a component",
        ),
        (
            "duplicate names",
            good.replace("- name: httpserver", "- name: echo"),
            "component name 'echo' is already used",
        ),
    ];
    for (case, text, expected) in &cases {
        let file = lattice.write(&format!("{}.yaml", case.replace(' ', "-")), text);
        let put = lattice
            .cli(&["app", "put", file.to_str().unwrap()])
            .await
            .unwrap();
        assert_ne!(put.code, 0, "{case}: accepted: {}", put.text());
        assert!(
            put.text().contains(expected),
            "{case}: the message does not say {expected:?}: {}",
            put.text()
        );
    }
    let list = lattice.cli(&["app", "list", "-o", "json"]).await.unwrap();
    assert_eq!(list.code, 0, "{}", list.text());
    let stored: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(stored, serde_json::json!([]), "nothing stored");

    // The same manifest, fixed, goes in.
    let file = lattice.write("good.yaml", &good);
    let put = lattice
        .cli(&["app", "put", file.to_str().unwrap()])
        .await
        .unwrap();
    assert_eq!(put.code, 0, "{}", put.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_put_and_delete_through_two_clients_stay_consistent() {
    const ROUNDS: usize = 12;
    const CONFLICT: i32 = 4;
    let mut lattice = ProcessLattice::start(
        "put and delete of one app racing through two CLI clients",
        &["spreadscaler", "linkscaler"],
    )
    .unwrap();
    // Two controllers: the API is a queue group, so the two requests often land on different
    // controllers at the same moment.
    lattice.add_controller().await.unwrap();
    lattice.add_controller().await.unwrap();
    let api = lattice.api().await.unwrap();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..ROUNDS {
        let base = format!("b{round}");
        let contender = format!("c{round}");
        let base_file = lattice.write("base.yaml", &echo_app("contested", &base));
        let contender_file = lattice.write("contender.yaml", &echo_app("contested", &contender));
        let put = lattice
            .cli(&["app", "put", base_file.to_str().unwrap()])
            .await
            .unwrap();
        assert_eq!(put.code, 0, "round {round}: setup put: {}", put.text());

        let put_args = ["app", "put", contender_file.to_str().unwrap()];
        let delete_args = ["app", "delete", "contested"];
        let (put, delete) = tokio::join!(lattice.cli(&put_args), lattice.cli(&delete_args));
        let (put, delete) = (put.unwrap(), delete.unwrap());
        let versions = api.versions("contested").await.unwrap();
        let stored: Vec<String> = versions
            .versions
            .iter()
            .map(|v| v.version.clone())
            .collect();
        let gone = versions.result == GetResult::NotFound;
        let context = format!(
            "round {round}: put {} {:?}, delete {} {:?}, stored {stored:?}",
            put.code,
            put.text(),
            delete.code,
            delete.text()
        );
        match (put.code, delete.code) {
            // Both went through, in one order or the other.
            (0, 0) => assert!(gone || stored == [contender.clone()], "{context}"),
            (0, CONFLICT) => assert_eq!(stored, [base.clone(), contender.clone()], "{context}"),
            (CONFLICT, 0) => assert!(gone, "{context}"),
            _ => panic!("an outcome other than success or conflict: {context}"),
        }
        *outcomes
            .entry(format!("put {} delete {}", put.code, delete.code))
            .or_default() += 1;

        // The app list and each stored version agree with the version index.
        let list = api.list().await.unwrap();
        let listed = list.iter().find(|m| m.name == "contested");
        match stored.last() {
            Some(latest) => {
                assert_eq!(
                    listed.map(|m| &m.version),
                    Some(latest),
                    "{context}: {list:?}"
                );
                for version in &stored {
                    let got = api.get("contested", Some(version)).await.unwrap();
                    assert_eq!(got.result, GetResult::Success, "{context}: {version}");
                }
                let delete = lattice.cli(&["app", "delete", "contested"]).await.unwrap();
                assert_eq!(delete.code, 0, "{context}: cleanup: {}", delete.text());
            }
            None => assert!(listed.is_none(), "{context}: {list:?}"),
        }
    }
    println!("outcomes over {ROUNDS} rounds: {outcomes:?}");
}
