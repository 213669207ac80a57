//! `trellis plugin run` and `trellis app validate --plugins` against a running lattice: the
//! CLI, run as a separate process on the state the controller gives (`--from-lattice`) or on a
//! folder of plugins with no NATS at all, must decide and judge exactly as the controller does.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use trellis_lattice::api::{PlanResponse, ValidateResponse};
use trellis_tests::process::trellis_bin;
use trellis_tests::{built_example, echo_app_yaml, spread_trait, TestLattice};

/// The plugins of the lattice, and so of every run.
const PLUGINS: &[&str] = &[
    "spreadscaler",
    "daemonscaler",
    "linkscaler",
    "validator",
    "placement",
];

fn trellis(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(trellis_bin())
        .args(args)
        .env(
            "TRELLIS_PLUGIN_CACHE",
            std::env::temp_dir().join("trellis-test-plugin-cache"),
        )
        .output()
        .expect("run trellis");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An app spreading `instances` of echo by zone weights, and another component on every `us`
/// host by daemonscaler.
fn spread_app(name: &str, instances: u32) -> String {
    let traits = spread_trait(instances, None).replace(
        &format!("            instances: {instances}\n"),
        &format!(
            "            instances: {instances}\n            spread:\n              - name: eu\n                weight: 70\n                requirements:\n                  zone: eu\n              - name: us\n                weight: 30\n                requirements:\n                  zone: us\n"
        ),
    );
    let image = built_example("echo");
    echo_app_yaml(name, "v1", "", &image, &traits)
        + &format!(
            "    - name: edge\n      type: component\n      properties:\n        image: file://{}\n      traits:\n        - type: daemonscaler\n          properties:\n            instances: 1\n            spread:\n              - name: us\n                requirements:\n                  zone: us\n",
            image.display()
        )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// For each scaler plugin, `plugin run --from-lattice` gives the commands and statuses the
/// controller's own `plan` gives for the same app on the same lattice, some of which already
/// runs an app; and the state written by `get snapshot -o json` replays to the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_run_decides_as_the_controller_plans() {
    let mut lattice = TestLattice::start(PLUGINS).await.unwrap();
    for zone in ["eu", "eu", "us"] {
        lattice.add_node(&[("zone", zone)]).await.unwrap();
    }
    let api = lattice.api().await.unwrap();
    // Something running already, so that placement has load to weigh.
    let running = trellis_lattice::Manifest::parse(&spread_app("busy", 4)).unwrap();
    api.put(&running).await.unwrap();
    api.deploy("busy", None).await.unwrap();
    api.wait_deployed("busy", Duration::from_secs(60), |_| {})
        .await
        .unwrap();

    let text = spread_app("shop", 5);
    let manifest = trellis_lattice::Manifest::parse(&text).unwrap();
    api.put(&manifest).await.unwrap();
    let plan: PlanResponse = api.plan("shop", None).await.unwrap();
    assert!(!plan.commands.is_empty(), "{plan:?}");

    let dir = tempfile::tempdir().unwrap();
    let manifest_file = write(dir.path(), "shop.yaml", &text);
    let plugins = lattice.plugin_dir();
    let nats = lattice.nats.url();
    let connection = [
        "--nats",
        nats.as_str(),
        "--lattice",
        lattice.lattice.as_str(),
    ];
    let (code, snapshot, err) =
        trellis(&[&["get", "snapshot", "-o", "json"], &connection[..]].concat());
    assert_eq!(code, 0, "{err}");
    let state_file = write(dir.path(), "state.json", &snapshot);

    for (plugin, trait_type) in [
        ("spreadscaler", "spreadscaler"),
        ("daemonscaler", "daemonscaler"),
    ] {
        let wasm = plugins.join(format!("{plugin}.wasm")).display().to_string();
        let base = [
            "plugin",
            "run",
            wasm.as_str(),
            "--manifest",
            manifest_file.as_str(),
            "--plugins",
            plugins.to_str().unwrap(),
            "-o",
            "json",
        ];
        for source in [
            &["--from-lattice"][..],
            &["--state", state_file.as_str()][..],
        ] {
            let (code, out, err) = trellis(&[&base[..], source, &connection[..]].concat());
            assert_eq!(code, 0, "{plugin} {source:?}: {err}");
            let run: serde_json::Value = serde_json::from_str(&out).unwrap();
            let expected: Vec<_> = plan
                .scalers
                .iter()
                .filter(|s| s.kind == trait_type)
                .map(|s| serde_json::to_value(s).unwrap())
                .collect();
            assert_eq!(
                run["scalers"].as_array().unwrap(),
                &expected,
                "{plugin} {source:?}"
            );
            let ids: Vec<&str> = plan
                .scalers
                .iter()
                .filter(|s| s.kind == trait_type)
                .map(|s| s.id.as_str())
                .collect();
            let expected: Vec<_> = plan
                .commands
                .iter()
                .filter(|c| ids.contains(&c.scaler.as_str()))
                .map(|c| (c.subject.clone(), c.body.clone()))
                .collect();
            let got: Vec<_> = run["commands"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["subject"].as_str().unwrap().to_string(),
                        c["body"].clone(),
                    )
                })
                .collect();
            assert!(
                !expected.is_empty(),
                "{plugin}: the plan has commands to compare"
            );
            assert_eq!(got, expected, "{plugin} {source:?}");
            assert!(run["calls"]["count"].as_u64().unwrap() >= 1, "{run}");
            assert_eq!(run["plugin"]["name"], plugin);
        }
    }
}

/// A state file that is not one, or says something impossible, is refused with the file and
/// the fault named, and nothing runs.
#[test]
fn a_bad_state_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(dir.path(), "shop.yaml", &spread_app("shop", 2));
    let wasm = trellis_tests::built_plugin("spreadscaler")
        .display()
        .to_string();
    let cases = [
        (
            "typo.json",
            r#"{"format": "trellis.lattice/v1", "hosts": [{"id": "A", "lables": {}}]}"#,
            "unknown field `lables`",
        ),
        (
            "orphan.json",
            r#"{"format": "trellis.lattice/v1", "hosts": [{"id": "A"}], "components": [{"host_id": "B", "component_id": "x", "count": 1}]}"#,
            "names host `B`, which is not in `hosts`",
        ),
        (
            "future.json",
            r#"{"format": "trellis.lattice/v7", "hosts": []}"#,
            "`trellis.lattice/v7`",
        ),
        ("yaml.json", "hosts: [a]", "is not a lattice state"),
    ];
    for (name, text, says) in cases {
        let state = write(dir.path(), name, text);
        let (code, out, err) = trellis(&[
            "plugin",
            "run",
            &wasm,
            "--manifest",
            &manifest,
            "--state",
            &state,
            "--plugins",
            dir.path().to_str().unwrap(),
        ]);
        assert_ne!(code, 0, "{name}: {out}");
        assert!(err.contains(&state) && err.contains(says), "{name}: {err}");
    }
}

/// The manifests of a repository's CI: good ones, and each kind of fault the controller finds.
fn manifests() -> Vec<(&'static str, String)> {
    let image = built_example("echo");
    let app = |traits: &str| echo_app_yaml("shop", "v1", "", &image, traits);
    vec![
        ("good", spread_app("shop", 3)),
        ("daemon", app("        - type: daemonscaler\n          properties:\n            instances: 1\n")),
        ("unknown-trait", app("        - type: spreadscalar\n          properties:\n            instances: 1\n")),
        ("bad-properties", app("        - type: spreadscaler\n          properties:\n            instances: many\n")),
        ("weights", app("        - type: spreadscaler\n          properties:\n            instances: 2\n            spread:\n              - name: a\n                weight: -3\n")),
        ("link-target", app("        - type: spreadscaler\n          properties:\n            instances: 1\n        - type: link\n          properties:\n            target: nowhere\n            namespace: wasi\n            package: keyvalue\n            interfaces: [store]\n")),
        ("wrong-kind", app("        - type: spreadscaler\n          properties:\n            instances: 1\n").replace("kind: Application", "kind: Deployment")),
        ("bad-name", app("        - type: spreadscaler\n          properties:\n            instances: 1\n").replace("name: shop", "name: \"shop/../x\"")),
        ("syntax", "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata: [\n".to_string()),
    ]
}

/// `app validate --plugins DIR` with no NATS anywhere judges each manifest exactly as the
/// running controller (same plugins) does: the same findings, and exit non-zero on errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_validation_judges_as_the_controller() {
    let lattice = TestLattice::start(PLUGINS).await.unwrap();
    let api = lattice.api().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugins = lattice.plugin_dir();
    let (mut valid, mut invalid) = (0, 0);
    for (name, text) in manifests() {
        let file = write(dir.path(), &format!("{name}.yaml"), &text);
        let online: ValidateResponse = api.validate(&text).await.unwrap();
        let (code, out, err) = trellis(&[
            "app",
            "validate",
            &file,
            "--plugins",
            plugins.to_str().unwrap(),
            "-o",
            "json",
            // Nothing listens there: offline means offline.
            "--nats",
            "nats://127.0.0.1:1",
        ]);
        let offline: ValidateResponse =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: {e}: {out} {err}"));
        assert_eq!(offline.diagnostics, online.diagnostics, "{name}");
        assert_eq!(offline.valid, online.valid, "{name}");
        assert_eq!(code == 0, online.valid, "{name}: exit {code}, {err}");
        if online.valid {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    assert_eq!(
        (valid, invalid),
        (2, 7),
        "the set covers good and bad manifests"
    );
}

/// A run that cannot say anything useful says why and exits non-zero: a plugin whose trait
/// the manifest does not use, and a plugin that traps (its status names the trap).
#[test]
fn a_run_with_nothing_to_show_or_a_failing_plugin_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let state = write(
        dir.path(),
        "state.json",
        r#"{"format": "trellis.lattice/v1", "hosts": [{"id": "A"}]}"#,
    );
    let no_plugins = dir.path().join("none");
    std::fs::create_dir_all(&no_plugins).unwrap();
    let run = |wasm: &Path, manifest: &str| {
        trellis(&[
            "plugin",
            "run",
            wasm.to_str().unwrap(),
            "--manifest",
            manifest,
            "--state",
            &state,
            "--plugins",
            no_plugins.to_str().unwrap(),
        ])
    };
    let spread = write(dir.path(), "spread.yaml", &spread_app("shop", 1));
    let (code, _, err) = run(&trellis_tests::built_plugin("linkscaler"), &spread);
    assert_ne!(code, 0);
    assert!(
        err.contains("uses no trait of the plugin's types (link)"),
        "{err}"
    );

    let trap = trellis_tests::built_fixture("trap");
    let manifest = write(
        dir.path(),
        "trap.yaml",
        &spread_app("shop", 1).replace("type: spreadscaler", "type: trap"),
    );
    let (code, out, err) = run(&trap, &manifest);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("failed: plugin fixture-trap trapped"), "{out}");
    assert!(
        err.contains("calls of fixture-trap failed (1 trap)"),
        "{err}"
    );
}
