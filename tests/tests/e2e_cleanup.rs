//! Durable cleanup with real processes. An undeploy's cleanup is issued once, from memory; a
//! controller that dies between the undeploy and its cleanup used to leave the app running for
//! good. The sweep (host/controller/src/reconciler/sweep.rs) finds such orphans in the lattice
//! state and stops them: after a restart, and when the owner dies while another controller
//! stands by. And it leaves alone what trellis did not start, and what a non-destructive
//! undeploy left running.
//!
//! How a cleanup is lost on purpose: the controller is frozen (SIGSTOP), the undeploy is
//! written to the manifest store (what the API's undeploy does, through the same
//! `ManifestStore`: the frozen controller would have served the request itself), and the
//! controller is killed (SIGKILL) without ever having read it. Freezing the *node* instead
//! does not lose anything: the stop requests wait in its socket and it carries them out on
//! SIGCONT.

use std::collections::BTreeMap;
use std::time::Duration;

use trellis_cli::client::ApiClient;
use trellis_cli::nats_server::free_port;
use trellis_controller::ownership::{owners_bucket, OwnerRecord};
use trellis_controller::store::{ManifestStore, StoreSettings};
use trellis_lattice::annotations;
use trellis_lattice::ctl::{self, CtlResponse, ScaleComponentCommand};
use trellis_tests::process::{wait_until, ProcessLattice};
use trellis_tests::{built_example, echo_http_app};

/// How long a restarted controller may take to stop what a lost cleanup left: its first sweep
/// follows its start-up, after which it waits out the dead owner's lease; slack for two busy
/// cores.
const CLEANED_WITHIN: Duration = Duration::from_secs(60);

/// What the short-interval controllers of these tests use (`--sweep-interval`), in seconds.
const SWEEP_SECS: u64 = 1;

/// Long enough for several sweeps at [`SWEEP_SECS`].
const SEVERAL_SWEEPS: Duration = Duration::from_secs(6);

/// Deploys app `echo` (one echo component behind the built-in HTTP server) and waits until
/// both run.
async fn deploy_echo(lattice: &ProcessLattice, api: &ApiClient) {
    let address = format!("127.0.0.1:{}", free_port().unwrap());
    let text = echo_http_app("echo", "v1", &built_example("echo"), 1, &address);
    let file = lattice.write("echo.yaml", &text);
    let deploy = lattice
        .cli(&["app", "deploy", file.to_str().unwrap(), "--timeout", "30"])
        .await
        .unwrap();
    assert_eq!(deploy.code, 0, "app deploy: {}", deploy.text());
    wait_until("echo running", Duration::from_secs(15), || async move {
        let running = ids(lattice, api).await;
        if running == ["echo-echo", "echo-httpserver"] {
            Ok(())
        } else {
            Err(format!("{running:?}"))
        }
    })
    .await;
}

/// The ids of everything running on the live nodes, sorted.
async fn ids(lattice: &ProcessLattice, api: &ApiClient) -> Vec<String> {
    let mut ids: Vec<String> = lattice
        .everything_running(api)
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    ids.sort();
    ids
}

/// Undeploys `app` in the manifest store, as the API's undeploy does.
async fn undeploy_in_store(lattice: &ProcessLattice, app: &str) {
    let client = async_nats::connect(lattice.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let store = ManifestStore::open(&js, &lattice.lattice, &StoreSettings::default())
        .await
        .unwrap();
    store.undeploy(app, false).await.unwrap();
}

/// The owner of `app` as the owners bucket says.
async fn owner(lattice: &ProcessLattice, app: &str) -> Option<String> {
    let client = async_nats::connect(lattice.nats.url()).await.ok()?;
    let js = async_nats::jetstream::new(client);
    let owners = js
        .get_key_value(owners_bucket(&lattice.lattice))
        .await
        .ok()?;
    let value = owners.get(app).await.ok()??;
    serde_json::from_slice::<OwnerRecord>(&value)
        .ok()
        .map(|r| r.owner)
}

/// Waits until nothing runs on the lattice.
async fn nothing_runs(lattice: &ProcessLattice, api: &ApiClient, within: Duration) {
    wait_until("nothing of the app running", within, || async move {
        let running = ids(lattice, api).await;
        if running.is_empty() {
            Ok(())
        } else {
            Err(format!("{running:?}"))
        }
    })
    .await;
}

/// Starts `id` (the echo image) on `host` straight through the control interface, with these
/// annotations, as an operator or another tool would.
async fn start_directly(
    lattice: &ProcessLattice,
    host: &str,
    id: &str,
    annotations: Option<BTreeMap<String, String>>,
) {
    let client = async_nats::connect(lattice.nats.url()).await.unwrap();
    let command = ScaleComponentCommand {
        component_ref: format!("file://{}", built_example("echo").display()),
        component_id: id.into(),
        annotations,
        max_instances: 1,
        host_id: host.into(),
        config: Vec::new(),
        allow_update: false,
    };
    let subject = ctl::Subjects::new(&lattice.lattice).component_scale(host);
    let body = serde_json::to_vec(&command).unwrap();
    let reply = client.request(subject, body.into()).await.unwrap();
    let reply: CtlResponse<serde_json::Value> = serde_json::from_slice(&reply.payload).unwrap();
    assert!(reply.success, "scaling {id} on {host}: {}", reply.message);
}

/// The annotations trellis puts on what it starts for `app`, with `managed_by` for its own.
fn managed(managed_by: &str, app: &str) -> Option<BTreeMap<String, String>> {
    let annotations = [
        (annotations::MANAGED_BY, managed_by),
        (annotations::APP, app),
        (annotations::SCALER, "spreadscaler-echo-0"),
    ];
    Some(
        annotations
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Starts an instance annotated as trellis's for app `ghost` (never stored), and waits until
/// it runs and then until a sweep has stopped it: proof that sweeps run, for tests that check
/// what they leave alone.
async fn ghost_swept(lattice: &ProcessLattice, api: &ApiClient, host: &str, id: &str) {
    start_directly(
        lattice,
        host,
        id,
        managed(annotations::MANAGED_BY_VALUE, "ghost"),
    )
    .await;
    for (running, what) in [(true, "running"), (false, "swept")] {
        let what = format!("{id} of app ghost {what}");
        wait_until(&what, Duration::from_secs(20), || async move {
            let ids = ids(lattice, api).await;
            if ids.iter().any(|r| r == id) == running {
                Ok(())
            } else {
                Err(format!("{ids:?}"))
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_between_undeploy_and_cleanup_leaves_nothing_after_restart() {
    let mut lattice = ProcessLattice::start(
        "controller killed between undeploy and cleanup; restarted, it stops the app",
        &["spreadscaler", "linkscaler"],
    )
    .unwrap();
    lattice.add_node(&[]).await.unwrap();
    let controller = lattice.add_controller().await.unwrap();
    let api = lattice.api().await.unwrap();
    deploy_echo(&lattice, &api).await;

    lattice.pause(controller);
    undeploy_in_store(&lattice, "echo").await;
    lattice.kill(controller);
    // The cleanup is lost: with no controller, the app runs on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ids(&lattice, &api).await, ["echo-echo", "echo-httpserver"]);

    // A new controller, with the default sweep interval: its first sweep follows start-up.
    lattice.add_controller().await.unwrap();
    nothing_runs(&lattice, &api, CLEANED_WITHIN).await;
    let log = lattice.logs_of("controller-1");
    assert!(
        log.contains("sweep: stopping an orphaned instance")
            && log.contains("app echo is not deployed"),
        "the sweep says what it stops and why:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_killed_between_undeploy_and_cleanup_is_cleaned_up_by_the_standby() {
    let mut lattice = ProcessLattice::start(
        "the owner killed between undeploy and cleanup; the standby controller stops the app",
        &["spreadscaler", "linkscaler"],
    )
    .unwrap();
    lattice.add_node(&[]).await.unwrap();
    // The owner: the only controller when the app is deployed.
    let owner_proc = lattice.add_controller().await.unwrap();
    let api = lattice.api().await.unwrap();
    deploy_echo(&lattice, &api).await;
    let first_owner = owner(&lattice, "echo").await.expect("echo has an owner");
    let sweep = SWEEP_SECS.to_string();
    lattice
        .add_controller_with(&["--sweep-interval", &sweep])
        .await
        .unwrap();

    // The standby reads the undeploy, but the cleanup is the owner's, and the owner is gone.
    lattice.pause(owner_proc);
    undeploy_in_store(&lattice, "echo").await;
    lattice.kill(owner_proc);
    nothing_runs(&lattice, &api, CLEANED_WITHIN).await;
    // And once nothing is left, the standby gives the app up again.
    wait_until("echo released", Duration::from_secs(20), || {
        let (lattice, first_owner) = (&lattice, &first_owner);
        async move {
            match owner(lattice, "echo").await {
                None => Ok(()),
                Some(owner) => Err(format!(
                    "owned by {owner} (the killed owner was {first_owner})"
                )),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_trellis_did_not_start_survive_the_sweep() {
    let mut lattice = ProcessLattice::start(
        "instances started by hand or by another manager survive the sweep",
        &["spreadscaler"],
    )
    .unwrap();
    lattice.add_node(&[]).await.unwrap();
    let sweep = SWEEP_SECS.to_string();
    lattice
        .add_controller_with(&["--sweep-interval", &sweep])
        .await
        .unwrap();
    let api = lattice.api().await.unwrap();
    let host = lattice.host_ids().remove(0);

    start_directly(&lattice, &host, "by-hand", None).await;
    start_directly(&lattice, &host, "by-wadm", managed("wadm", "ghost")).await;
    ghost_swept(&lattice, &api, &host, "ghost-echo").await;
    tokio::time::sleep(SEVERAL_SWEEPS).await;
    assert_eq!(ids(&lattice, &api).await, ["by-hand", "by-wadm"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_destructive_undeploy_survives_the_sweep_and_a_restart() {
    let mut lattice = ProcessLattice::start(
        "a non-destructive undeploy's instances survive the sweep, also after a restart",
        &["spreadscaler", "linkscaler"],
    )
    .unwrap();
    lattice.add_node(&[]).await.unwrap();
    let sweep = SWEEP_SECS.to_string();
    let controller = lattice
        .add_controller_with(&["--sweep-interval", &sweep])
        .await
        .unwrap();
    let api = lattice.api().await.unwrap();
    let host = lattice.host_ids().remove(0);
    deploy_echo(&lattice, &api).await;

    // The CLI's non-destructive undeploy (wadm's `non_destructive`).
    let undeploy = lattice
        .cli(&["app", "undeploy", "echo", "--keep-running"])
        .await
        .unwrap();
    assert_eq!(undeploy.code, 0, "{}", undeploy.text());

    let left = ["echo-echo", "echo-httpserver"];
    ghost_swept(&lattice, &api, &host, "ghost-1").await;
    tokio::time::sleep(SEVERAL_SWEEPS).await;
    assert_eq!(ids(&lattice, &api).await, left);

    // A fresh controller knows the app only from the store.
    lattice.kill(controller);
    lattice
        .add_controller_with(&["--sweep-interval", &sweep])
        .await
        .unwrap();
    ghost_swept(&lattice, &api, &host, "ghost-2").await;
    tokio::time::sleep(SEVERAL_SWEEPS).await;
    assert_eq!(ids(&lattice, &api).await, left);
}
