//! Plugins under a running controller process: faulty plugins (one loops, one traps) fail only
//! their own apps with the reason in the status, and a plugin file replaced while its app is
//! deployed changes the running decision; a plain app beside them stays deployed throughout.

use std::time::Duration;

use trellis_lattice::api::{Status, StatusType};
use trellis_tests::process::{wait_until, ProcessLattice};
use trellis_tests::{built_example, built_fixture, install_file};

/// An app of one echo component whose only trait is `trait_type`.
fn app(name: &str, trait_type: &str, properties: &str) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
  annotations:
    version: v1
spec:
  components:
    - name: web
      type: component
      properties:
        image: file://{image}
      traits:
        - type: {trait_type}
          properties: {properties}
"#,
        image = built_example("echo").display()
    )
}

async fn status_of(api: &trellis_cli::client::ApiClient, name: &str) -> Result<Status, String> {
    api.status(name)
        .await
        .map_err(|e| e.to_string())?
        .status
        .ok_or_else(|| format!("no status for {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_and_replaced_plugins_touch_only_their_own_apps() {
    let mut lattice = ProcessLattice::start(
        "plugins: looping, trapping and replaced under a running controller",
        &["spreadscaler"],
    )
    .unwrap();
    for fixture in ["fixed", "spin", "trap"] {
        install_file(
            &built_fixture(fixture),
            &lattice.plugin_dir().join(format!("{fixture}.wasm")),
        )
        .unwrap();
    }
    lattice.add_node(&[]).await.unwrap();
    lattice.add_controller().await.unwrap();
    let api = lattice.api().await.unwrap();

    for (name, trait_type, properties) in [
        ("plain", "spreadscaler", "{instances: 2}"),
        ("pinned", "fixed", "{}"),
        ("stuck", "spin", "{}"),
        ("crash", "trap", "{}"),
    ] {
        let file = lattice.dir().join(format!("{name}.yaml"));
        std::fs::write(&file, app(name, trait_type, properties)).unwrap();
        let deploy = lattice
            .cli(&["app", "deploy", file.to_str().unwrap(), "--no-wait"])
            .await
            .unwrap();
        assert_eq!(deploy.code, 0, "deploy {name}: {}", deploy.text());
    }

    wait_until(
        "plain deployed, pinned at 1, stuck and crash failed with reasons",
        Duration::from_secs(30),
        || {
            let (api, lattice) = (&api, &lattice);
            async move {
                let plain = status_of(api, "plain").await?;
                let pinned = status_of(api, "pinned").await?;
                let stuck = status_of(api, "stuck").await?;
                let crash = status_of(api, "crash").await?;
                let plain_running = lattice.instances(api, "plain-web").await;
                let pinned_running = lattice.instances(api, "pinned-web").await;
                let ok = plain.info.status_type == StatusType::Deployed
                    && plain_running.values().sum::<u32>() == 2
                    && pinned.info.message.contains("asking for 1")
                    && pinned_running.values().sum::<u32>() == 1
                    && stuck.info.status_type == StatusType::Failed
                    && stuck.info.message.contains("fixture-spin")
                    && stuck.info.message.contains("deadline")
                    && crash.info.status_type == StatusType::Failed
                    && crash.info.message.contains("fixture-trap");
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "plain {:?} {plain_running:?}; pinned {:?} {pinned_running:?}; stuck {:?}; crash {:?}",
                        plain.info, pinned.info, stuck.info, crash.info
                    ))
                }
            }
        },
    )
    .await;

    // The CLI says so too: a failed app's status exits 5 and prints the reason.
    let status = lattice.cli(&["app", "status", "crash"]).await.unwrap();
    assert_eq!(status.code, 5, "{}", status.text());
    assert!(status.text().contains("fixture-trap"), "{}", status.text());

    // Replace the plugin the pinned app runs on; the controller keeps running.
    install_file(
        &built_fixture("fixed-2"),
        &lattice.plugin_dir().join("fixed.wasm"),
    )
    .unwrap();
    wait_until(
        "pinned at 2 after its plugin was replaced",
        Duration::from_secs(15),
        || {
            let (api, lattice) = (&api, &lattice);
            async move {
                let pinned = status_of(api, "pinned").await?;
                let running = lattice.instances(api, "pinned-web").await;
                if pinned.info.message.contains("asking for 2")
                    && running.values().sum::<u32>() == 2
                {
                    Ok(())
                } else {
                    Err(format!("{:?} {running:?}", pinned.info))
                }
            }
        },
    )
    .await;

    // The plain app never noticed.
    let plain = status_of(&api, "plain").await.unwrap();
    assert_eq!(plain.info.status_type, StatusType::Deployed, "{plain:?}");
    let running = lattice.instances(&api, "plain-web").await;
    assert_eq!(running.values().sum::<u32>(), 2, "{running:?}");
    assert!(
        lattice.procs.iter_mut().all(|p| p.is_running()),
        "a process died"
    );
}
