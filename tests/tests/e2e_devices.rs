//! Device descriptions, end to end with real processes: a `trellis node --device FILE`
//! advertises what its device has as labels, a manifest requires them, and the work lands on
//! that device only; a node given a bad description does not start and says what is wrong.

use std::time::Duration;

use trellis_tests::built_example;
use trellis_tests::process::{wait_until, ProcessLattice};

/// Two echo instances, only on hosts with a temperature sensor.
fn sensing_app() -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: sensing
  annotations:
    version: v1
spec:
  components:
    - name: echo
      type: component
      properties:
        image: file://{}
      traits:
        - type: spreadscaler
          properties:
            instances: 2
            spread:
              - name: with-sensor
                requirements:
                  sensors.temperature: "true"
"#,
        built_example("echo").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_lands_on_the_device_whose_description_has_what_it_requires() {
    let mut lattice =
        ProcessLattice::start("device descriptions place work", &["spreadscaler"]).unwrap();
    lattice.add_controller().await.unwrap();
    let description = lattice.write(
        "device.toml",
        "accelerator = \"coral-tpu\"\n[sensors]\ntemperature = true\n",
    );
    let with_sensor = lattice
        .add_node_with(
            &[("zone", "a")],
            &["--device", description.to_str().unwrap()],
        )
        .await
        .unwrap();
    lattice.add_node(&[("zone", "b")]).await.unwrap();
    let sensor_host = lattice.procs[with_sensor].host_id.clone().unwrap();
    let api = lattice.api().await.unwrap();

    // The description's labels are advertised beside the flags' and the node's own.
    let inventories = lattice.inventories(&api).await;
    let labels = &inventories[&sensor_host].labels;
    assert_eq!(labels["sensors.temperature"], "true", "{labels:?}");
    assert_eq!(labels["accelerator"], "coral-tpu", "{labels:?}");
    assert_eq!(labels["zone"], "a", "{labels:?}");
    assert!(labels.contains_key("hostcore.arch"), "{labels:?}");

    let file = lattice.write("sensing.yaml", &sensing_app());
    let deploy = lattice
        .cli(&["app", "deploy", file.to_str().unwrap(), "--timeout", "30"])
        .await
        .unwrap();
    assert_eq!(deploy.code, 0, "app deploy: {}", deploy.text());
    wait_until(
        "both instances on the sensing device",
        Duration::from_secs(15),
        || {
            let (api, lattice, sensor_host) = (&api, &lattice, &sensor_host);
            async move {
                let running = lattice.instances(api, "sensing-echo").await;
                if running.len() == 1 && running.get(sensor_host) == Some(&2) {
                    Ok(())
                } else {
                    Err(format!("running {running:?}"))
                }
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_description_stops_the_node_with_the_file_and_key_named() {
    let lattice = ProcessLattice::start("a bad device description", &[]).unwrap();
    let bad = lattice.write("device.toml", "[sensors]\nlist = [\"t\", \"h\"]\n");
    let node = lattice
        .cli(&["node", "--device", bad.to_str().unwrap()])
        .await
        .unwrap();
    assert_ne!(node.code, 0, "the node started: {}", node.text());
    let text = node.text();
    assert!(text.contains(&bad.display().to_string()), "{text}");
    assert!(text.contains("`sensors.list`: a list"), "{text}");
    assert!(!text.contains("joined lattice"), "{text}");
}
