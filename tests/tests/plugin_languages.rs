//! A plugin author outside this repository, in each language: from an empty folder, with only
//! the `trellis` binary and the registries (crates.io, npm, PyPI), scaffold a scaler, run its
//! tests, build it, drop the .wasm into a running controller's folder and deploy an app that
//! uses its trait. Nothing is published from here, so the Rust plugin gets the SDK as
//! `cargo package` makes it, patched in for the registry version its Cargo.toml names.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use trellis_runtime::Limits;
use trellis_tests::process::trellis_bin;
use trellis_tests::{built_example, echo_app_yaml, repo_root, TestLattice};

/// Runs `program args` in `dir`, failing the test with its output if it fails.
fn run(dir: &Path, program: impl AsRef<std::ffi::OsStr>, args: &[&str], envs: &[(&str, &Path)]) {
    let program = program.as_ref().to_owned();
    let mut command = Command::new(&program);
    command.args(args).current_dir(dir);
    for (k, v) in envs {
        command.env(k, v);
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"));
    assert!(
        out.status.success(),
        "{program:?} {args:?} in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The SDK as `cargo package` makes it, unpacked: what the registry would hand a plugin.
fn packaged_sdk(into: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = into.join("package-target");
    run(
        &repo_root(),
        &cargo,
        &[
            "package",
            "-p",
            "trellis-sdk",
            "--allow-dirty",
            "--no-verify",
            "--quiet",
            "--target-dir",
            target.to_str().unwrap(),
        ],
        &[],
    );
    let version = trellis_cli::scaffold::SDK_VERSION;
    let crate_file = target.join(format!("package/trellis-sdk-{version}.crate"));
    run(into, "tar", &["xzf", crate_file.to_str().unwrap()], &[]);
    into.join(format!("trellis-sdk-{version}"))
}

/// Scaffolds, tests and builds a scaler in `lang`; returns its .wasm.
fn author(workspace: &Path, lang: &str, name: &str) -> PathBuf {
    let trellis = trellis_bin();
    let dir = workspace.to_str().unwrap();
    run(
        workspace,
        &trellis,
        &[
            "plugin", "new", name, "--kind", "scaler", "--lang", lang, "--dir", dir,
        ],
        &[],
    );
    let project = workspace.join(name);
    let with_trellis = [("TRELLIS", trellis.as_path())];
    match lang {
        "rust" => {
            let sdk = packaged_sdk(workspace);
            let manifest = project.join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest).unwrap();
            assert!(
                text.contains(&format!(
                    "trellis-sdk = \"{}\"",
                    trellis_cli::scaffold::SDK_VERSION
                )),
                "the scaffold depends on the registry's SDK: {text}"
            );
            std::fs::write(
                &manifest,
                format!(
                    "{text}\n[patch.crates-io]\ntrellis-sdk = {{ path = {:?} }}\n",
                    sdk.display().to_string()
                ),
            )
            .unwrap();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("author-rust");
            let target_env = [("CARGO_TARGET_DIR", target.as_path())];
            run(&project, &cargo, &["test", "--quiet"], &target_env);
            run(
                &project,
                &cargo,
                &["build", "--quiet", "--target", "wasm32-wasip2", "--release"],
                &target_env,
            );
            target.join(format!(
                "wasm32-wasip2/release/{}.wasm",
                name.replace('-', "_")
            ))
        }
        "js" => {
            run(
                &project,
                "npm",
                &["install", "--no-audit", "--no-fund", "--silent"],
                &[],
            );
            // The template's tests build the plugin first and run it through `trellis plugin run`.
            run(&project, "npm", &["test"], &with_trellis);
            project.join(format!("dist/{name}.wasm"))
        }
        _ => {
            run(&project, "python3", &["-m", "venv", ".venv"], &[]);
            run(
                &project,
                ".venv/bin/pip",
                &["install", "--quiet", "-r", "requirements-dev.txt"],
                &[],
            );
            run(
                &project,
                ".venv/bin/python",
                &["-m", "pytest", "-q"],
                &with_trellis,
            );
            project.join(format!("dist/{name}.wasm"))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaler_in_each_language_goes_from_an_empty_folder_to_a_deployed_app() {
    // An interpreted plugin's call costs milliseconds, more in this debug build under a busy
    // test run: a deadline the operator of such plugins would set (docs/plugins.md).
    let mut lattice = TestLattice::start_with(&["placement", "validator"], |config| {
        config.runtime.default_limits = Limits {
            deadline: Duration::from_secs(2),
            ..Limits::default()
        };
    })
    .await
    .unwrap();
    lattice.add_node(&[("zone", "edge")]).await.unwrap();
    lattice.add_node(&[("zone", "core")]).await.unwrap();
    let api = lattice.api().await.unwrap();
    let workspace = tempfile::tempdir().unwrap();
    for (lang, name) in [
        ("rust", "pin-rust"),
        ("js", "pin-js"),
        ("python", "pin-python"),
    ] {
        let wasm = author(workspace.path(), lang, name);
        std::fs::copy(&wasm, lattice.plugin_dir().join(format!("{name}.wasm"))).unwrap();
        // Loading compiles the plugin: seconds for one carrying an interpreter (this
        // controller has no compile cache).
        let runtime = lattice.controller.as_ref().unwrap().runtime();
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        while runtime.plugins().scaler_for(name).is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "{lang}: the controller did not load the plugin: {:?}",
                runtime.plugins().problems
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let traits = format!(
            "        - type: {name}\n          properties:\n            instances: 2\n            requirements:\n              zone: edge\n"
        );
        let app = format!("app-{lang}");
        let manifest = trellis_lattice::Manifest::parse(&echo_app_yaml(
            &app,
            "v1",
            "",
            &built_example("echo"),
            &traits,
        ))
        .unwrap();
        let put = api.put(&manifest).await.unwrap();
        assert_eq!(
            put.result,
            trellis_lattice::api::PutResult::Created,
            "{lang}: {put:?}"
        );
        api.deploy(&app, None).await.unwrap();
        api.wait_deployed(&app, Duration::from_secs(120), |_| {})
            .await
            .unwrap_or_else(|e| panic!("{lang}: {e:#}"));
        // Both instances on the edge host, as the trait asks.
        let mut on = Vec::new();
        for host in api.hosts().await.unwrap() {
            let inventory = api.inventory(&host.id).await.unwrap();
            for c in inventory
                .components
                .iter()
                .filter(|c| c.id == format!("{}-echo", app.replace('-', "_")))
            {
                on.push((host.labels["zone"].clone(), c.max_instances));
            }
        }
        assert_eq!(on, vec![("edge".to_string(), 2)], "{lang}");
    }
}
