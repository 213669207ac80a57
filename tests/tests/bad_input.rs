//! Bad input costs at most its size: each hostile request below gets a clear answer that names
//! what is wrong, and changes nothing (docs/bad-input.md has the table these tests hold up).
//! A real nats-server and controller, the built plugins, raw NATS requests where a client
//! would not send such bytes.

use std::time::Duration;

use serde_json::Value;
use trellis_cli::client::ApiClient;
use trellis_lattice::api::{StatusType, Subjects};
use trellis_tests::process::wait_until;
use trellis_tests::{built_fixture, echo_app, TestLattice};

/// Sends `body` on `subject` and reads the JSON answer.
async fn ask(client: &async_nats::Client, subject: String, body: Vec<u8>) -> Value {
    let reply = tokio::time::timeout(
        Duration::from_secs(20),
        client.request(subject, body.into()),
    )
    .await
    .expect("an answer within 20 s")
    .expect("the request went through");
    serde_json::from_slice(&reply.payload).expect("the answer is JSON")
}

async fn app_names(client: &async_nats::Client, subjects: &Subjects) -> Vec<String> {
    let list = ask(client, subjects.list(), Vec::new()).await;
    list.as_array()
        .expect("a list")
        .iter()
        .map(|m| m["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits until app `name` reports itself deployed.
async fn wait_deployed(api: &ApiClient, name: &str) {
    wait_until(
        &format!("{name} deployed"),
        Duration::from_secs(30),
        || async {
            let status = api.status(name).await.map_err(|e| e.to_string())?;
            let status = status.status.ok_or("no status yet")?;
            match status.info.status_type {
                StatusType::Deployed => Ok(()),
                other => Err(format!("{other:?}: {}", status.info.message)),
            }
        },
    )
    .await
}

/// Instances of component `id` on the lattice's nodes, as they answer for themselves.
async fn running(lattice: &TestLattice, id: &str) -> u32 {
    let api = lattice.api().await.unwrap();
    let mut total = 0;
    for node in &lattice.nodes {
        let inventory = api.inventory(node.host_id()).await.unwrap();
        total += inventory
            .components
            .iter()
            .filter(|c| c.id == id)
            .map(|c| c.max_instances)
            .sum::<u32>();
    }
    total
}

fn manifest(name: &str, components: &str) -> String {
    format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: {name}\n  \
         annotations:\n    version: v1\nspec:\n  components:\n{components}"
    )
}

fn spread(instances: &str) -> String {
    manifest(
        "spread",
        &format!(
            "    - name: c\n      type: component\n      properties: {{image: f}}\n      traits:\n        - type: spreadscaler\n          properties: {{instances: {instances}}}\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_manifests_are_refused_by_name_and_nothing_is_stored() {
    let lattice = TestLattice::start(&["spreadscaler", "linkscaler", "validator"])
        .await
        .unwrap();
    let client = async_nats::connect(lattice.nats.url()).await.unwrap();
    let subjects = Subjects::new(&lattice.lattice);

    let many: String = (0..14_000)
        .map(|i| format!("    - {{name: c{i}, type: component, properties: {{}}}}\n"))
        .collect();
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = format!("*a{}", i - 1);
        bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![p; 9].join(", ")));
    }
    bomb.push_str(&manifest(
        "bomb",
        "    - name: c\n      type: component\n      properties: {image: f}\n      traits:\n        - {type: spreadscaler, properties: *a9}\n",
    ));
    let deep = manifest(
        "deep",
        &format!(
            "    - name: c\n      type: component\n      properties: {{image: f}}\n      traits:\n        - type: spreadscaler\n          properties: {}1{}\n",
            "[".repeat(200),
            "]".repeat(200)
        ),
    );
    let duplicate = manifest(
        "dup",
        "    - name: c\n      type: component\n      properties: {image: f}\n      traits:\n        - type: spreadscaler\n          properties: {instances: 1, instances: 9}\n",
    );
    let one = "    - name: c\n      type: component\n      properties: {image: f}\n";
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "14,000 components",
            manifest("many", &many).into_bytes(),
            "too_large",
            "components is 14000, over the limit of 10000",
        ),
        (
            "alias bomb",
            bomb.into_bytes(),
            "invalid",
            "not a valid application manifest",
        ),
        (
            "200-deep nesting",
            deep.into_bytes(),
            "invalid",
            "recursion limit",
        ),
        (
            "not UTF-8",
            b"apiVersion: \xff\xfe\n".to_vec(),
            "invalid",
            "not UTF-8",
        ),
        (
            "duplicate key",
            duplicate.into_bytes(),
            "invalid",
            "duplicate key `instances`",
        ),
        (
            "name with .",
            manifest("a.b", one).into_bytes(),
            "invalid",
            "may only hold letters",
        ),
        (
            "name with *",
            manifest("'a*'", one).into_bytes(),
            "invalid",
            "may only hold letters",
        ),
        (
            "name with >",
            manifest("'a>'", one).into_bytes(),
            "invalid",
            "may only hold letters",
        ),
        (
            "name with space",
            manifest("'a b'", one).into_bytes(),
            "invalid",
            "may only hold letters",
        ),
        (
            "unicode name",
            manifest("café", one).into_bytes(),
            "invalid",
            "may only hold letters",
        ),
        (
            "id with .",
            manifest(
                "ids",
                "    - name: c\n      type: component\n      properties: {image: f, id: a.b}\n",
            )
            .into_bytes(),
            "invalid",
            "component id `a.b`",
        ),
        (
            "instances -1",
            spread("-1").into_bytes(),
            "invalid",
            "instances",
        ),
        (
            "instances 1e20",
            spread("1e20").into_bytes(),
            "invalid",
            "instances",
        ),
    ];
    for (case, body, code, says) in cases {
        let started = std::time::Instant::now();
        let answer = ask(&client, subjects.put(), body).await;
        assert_eq!(answer["result"], "error", "{case}: {answer}");
        assert_eq!(answer["code"], code, "{case}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.contains(says),
            "{case}: the answer does not say {says:?}: {message}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{case} took {:?}",
            started.elapsed()
        );
    }
    assert!(
        app_names(&client, &subjects).await.is_empty(),
        "a refused manifest was stored"
    );

    // The largest count a u32 holds is a valid (if unrunnable) request: stored, and each node
    // refuses past its own instance limit when asked.
    let answer = ask(&client, subjects.put(), spread("4294967295").into_bytes()).await;
    assert_eq!(answer["result"], "created", "{answer}");

    // A body past NATS's max payload never leaves the client; the controller is unaffected.
    let huge = vec![b'#'; 1536 << 10];
    let sent = client.request(subjects.put(), huge.into()).await;
    assert!(sent.is_err(), "a 1.5 MiB request went through");
    assert_eq!(app_names(&client, &subjects).await, ["spread"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misspelt_bodies_are_refused_and_change_nothing() {
    let lattice = TestLattice::start(&["spreadscaler"]).await.unwrap();
    let client = async_nats::connect(lattice.nats.url()).await.unwrap();
    let subjects = Subjects::new(&lattice.lattice);
    for version in ["v1", "v2"] {
        let answer = ask(&client, subjects.put(), echo_app(version, 1).into_bytes()).await;
        assert_ne!(answer["result"], "error", "{answer}");
    }
    let cases = [
        (subjects.deploy("web"), r#"{"verison":"v1"}"#, "verison"),
        (
            subjects.undeploy("web"),
            r#"{"nondestructive":true}"#,
            "nondestructive",
        ),
        (subjects.del("web"), "not json", "not the JSON"),
        (subjects.get("web"), r#"{"version":1}"#, "not the JSON"),
        (subjects.list(), r#"{"page":2}"#, "page"),
    ];
    for (subject, body, says) in cases {
        let answer = ask(&client, subject.clone(), body.as_bytes().to_vec()).await;
        assert_eq!(answer["code"], "invalid", "{subject}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{subject}: {answer}"
        );
    }
    let versions = ask(&client, subjects.versions("web"), Vec::new()).await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        2,
        "{versions}"
    );
    let status = ask(&client, subjects.status("web"), Vec::new()).await;
    assert_eq!(status["status"]["status"]["type"], "undeployed", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_in_every_bucket_is_skipped_and_the_rest_keeps_running() {
    let mut lattice = TestLattice::start(&["spreadscaler"]).await.unwrap();
    lattice.add_node(&[]).await.unwrap();
    let client = async_nats::connect(lattice.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let subjects = Subjects::new(&lattice.lattice);
    let l = &lattice.lattice;
    let buckets = [
        format!("TRELLIS_MANIFESTS_{l}"),
        format!("TRELLIS_STATUS_{l}"),
        format!("TRELLIS_OWNERS_{l}"),
        format!("TRELLIS_CONTROLLERS_{l}"),
        trellis_lattice::ctl::link_bucket(l),
        trellis_lattice::ctl::config_bucket(l),
    ];
    for bucket in &buckets {
        let kv = js
            .get_key_value(bucket)
            .await
            .unwrap_or_else(|e| panic!("bucket {bucket}: {e}"));
        kv.put("junk", "\u{1}not json{".into()).await.unwrap();
    }
    let answer = ask(&client, subjects.put(), echo_app("v1", 2).into_bytes()).await;
    assert_ne!(answer["result"], "error", "{answer}");
    let answer = ask(&client, subjects.deploy("web"), Vec::new()).await;
    assert_eq!(answer["result"], "acknowledged", "{answer}");
    let api = lattice.api().await.unwrap();
    // Deployed beside the junk.
    wait_deployed(&api, "web").await;
    // The list skips what it cannot read; asking for the junk says what it is.
    assert_eq!(app_names(&client, &subjects).await, ["web"]);
    let junk = ask(&client, subjects.get("junk"), Vec::new()).await;
    assert_eq!(junk["code"], "unavailable", "{junk}");
    assert!(
        junk["message"]
            .as_str()
            .unwrap()
            .contains("not an app trellis wrote"),
        "{junk}"
    );

    // Junk written over a deployed app's entry is ignored: what runs keeps running.
    js.get_key_value(&buckets[0])
        .await
        .unwrap()
        .put("web", "garbage".into())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        running(&lattice, "web-echo").await,
        2,
        "the app's instances were touched"
    );
}

/// The built fixture `name` put into the lattice's plugin folder.
async fn add_fixture(lattice: &TestLattice, name: &str) {
    let generation = lattice.controller.as_ref().unwrap().runtime().generation();
    std::fs::copy(
        built_fixture(name),
        lattice.plugin_dir().join(format!("{name}.wasm")),
    )
    .unwrap();
    lattice.wait_plugin_reload(generation).await.unwrap();
}

fn flood_app(name: &str, properties: &str) -> String {
    let image = trellis_tests::built_example("echo");
    manifest(
        name,
        &format!(
            "    - name: echo\n      type: component\n      properties:\n        image: file://{}\n      traits:\n        - type: flood\n          properties: {properties}\n",
            image.display()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_answering_too_much_or_about_others_are_refused() {
    let mut lattice = TestLattice::start(&["spreadscaler", "placement"])
        .await
        .unwrap();
    lattice.add_node(&[]).await.unwrap();
    lattice.add_node(&[]).await.unwrap();
    add_fixture(&lattice, "flood").await;
    add_fixture(&lattice, "extreme").await;
    let api = lattice.api().await.unwrap();
    let client = async_nats::connect(lattice.nats.url()).await.unwrap();
    let subjects = Subjects::new(&lattice.lattice);

    // A victim app, placed by the built-in placement and a plugin scoring at i64's ends.
    let answer = ask(&client, subjects.put(), echo_app("v1", 2).into_bytes()).await;
    assert_ne!(answer["result"], "error", "{answer}");
    ask(&client, subjects.deploy("web"), Vec::new()).await;
    // Deployed despite the extreme scores.
    wait_deployed(&api, "web").await;

    // Past the count limit; a million (which no plugin builds within its deadline and memory
    // cap); and one command about another app's component.
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "flood",
            r#"{"commands": 12000}"#,
            &["returned 12000 commands, over the limit of 10000"],
        ),
        (
            "huge",
            r#"{"commands": 1000000}"#,
            &["deadline", "memory limit"],
        ),
        (
            "thief",
            r#"{"foreign": "web-echo"}"#,
            &["component `web-echo`, which this app does not declare"],
        ),
    ];
    for (app, properties, says) in cases {
        let answer = ask(
            &client,
            subjects.put(),
            flood_app(app, properties).into_bytes(),
        )
        .await;
        assert_ne!(answer["result"], "error", "{app}: {answer}");
        ask(&client, subjects.deploy(app), Vec::new()).await;
        let message = wait_until(
            &format!("{app} failed"),
            Duration::from_secs(30),
            || async {
                let status = api.status(app).await.map_err(|e| e.to_string())?;
                let status = status.status.ok_or("no status yet")?;
                status
                    .scalers
                    .iter()
                    .find(|s| s.info.status_type == StatusType::Failed)
                    .map(|s| s.info.message.clone())
                    .ok_or_else(|| format!("{:?}", status.info))
            },
        )
        .await;
        assert!(
            says.iter().any(|s| message.contains(s)),
            "{app}: the status does not say {says:?}: {message}"
        );
    }
    // Nothing the refused plugins asked for ran: web still has its two instances, no more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        running(&lattice, "web-echo").await,
        2,
        "a refused plugin's commands reached the nodes"
    );
    assert_eq!(
        running(&lattice, "flood-echo").await,
        0,
        "a refused plugin's commands reached the nodes"
    );

    // 5,000 findings from one plugin: a validation answers with the first thousand and a
    // count of the rest. 100,000 do not fit in the plugin's deadline: the check could not run,
    // and the manifest is refused rather than taken unchecked.
    let validate = |n: usize| {
        let (client, subject) = (&client, subjects.validate());
        async move {
            let text = flood_app("talky", &format!(r#"{{"diagnostics": {n}}}"#));
            ask(client, subject, text.into_bytes()).await
        }
    };
    let answer = validate(5_000).await;
    let found = answer["diagnostics"].as_array().unwrap();
    assert_eq!(found.len(), 1_000);
    let last = found.last().unwrap()["message"].as_str().unwrap();
    assert!(
        last.contains("more findings"),
        "no count of the findings left out: {last}"
    );
    let answer = validate(100_000).await;
    assert_eq!(answer["valid"], false, "{answer}");
    let first = answer["diagnostics"][0]["message"].as_str().unwrap();
    assert!(first.contains("could not be checked"), "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_concurrent_puts_are_all_checked() {
    let lattice = TestLattice::start(&["spreadscaler", "linkscaler", "validator"])
        .await
        .unwrap();
    let client = async_nats::connect(lattice.nats.url()).await.unwrap();
    let subjects = Subjects::new(&lattice.lattice);
    let puts = (0..300).map(|i| {
        let (client, subject) = (client.clone(), subjects.put());
        // Every other manifest links to a component it does not have: the link scaler's
        // check refuses it, however busy the plugins are.
        let target = if i % 2 == 0 { "c" } else { "nothere" };
        let text = manifest(
            &format!("app{i}"),
            &format!(
                "    - name: c\n      type: component\n      properties: {{image: f}}\n      traits:\n        - type: spreadscaler\n          properties: {{instances: 1}}\n        - type: link\n          properties: {{target: {target}, namespace: wasi, package: http, interfaces: [incoming-handler]}}\n"
            ),
        );
        tokio::spawn(async move { (i, ask(&client, subject, text.into_bytes()).await) })
    });
    let answers = futures::future::join_all(puts).await;
    for answer in answers {
        let (i, answer) = answer.unwrap();
        if i % 2 == 0 {
            assert_eq!(answer["result"], "created", "app{i}: {answer}");
        } else {
            assert_eq!(
                answer["result"], "error",
                "app{i} was stored unchecked: {answer}"
            );
            assert!(
                answer["message"].as_str().unwrap().contains("nothere"),
                "app{i}: {answer}"
            );
        }
    }
    let mut page = serde_json::json!({"offset": 0, "limit": 1000});
    let listed = ask(&client, subjects.list(), page.to_string().into_bytes()).await;
    assert_eq!(listed.as_array().unwrap().len(), 150);
    page["offset"] = 140.into();
    let tail = ask(&client, subjects.list(), page.to_string().into_bytes()).await;
    assert_eq!(tail.as_array().unwrap().len(), 10, "paging from offset 140");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_pruned_oldest_first_and_the_put_says_so() {
    let lattice = TestLattice::start(&["spreadscaler"]).await.unwrap();
    let client = async_nats::connect(lattice.nats.url()).await.unwrap();
    let subjects = Subjects::new(&lattice.lattice);
    let max = trellis_lattice::limits::DEFAULT_MAX_VERSIONS;
    for i in 0..max {
        let answer = ask(
            &client,
            subjects.put(),
            echo_app(&format!("v{i}"), 1).into_bytes(),
        )
        .await;
        assert_ne!(answer["result"], "error", "{answer}");
    }
    ask(
        &client,
        subjects.deploy("web"),
        br#"{"version":"v0"}"#.to_vec(),
    )
    .await;
    let answer = ask(&client, subjects.put(), echo_app("newest", 1).into_bytes()).await;
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("pruned the oldest version(s) v1"),
        "{answer}"
    );
    let versions = ask(&client, subjects.versions("web"), Vec::new()).await;
    let names: Vec<&str> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), max);
    assert!(
        names.contains(&"v0"),
        "the deployed version was pruned: {names:?}"
    );
    assert!(!names.contains(&"v1"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_too_large_for_one_message_is_refused_and_the_cli_pages() {
    // A server that carries 64 KiB per message: a few hundred apps outgrow one answer.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nats.conf");
    std::fs::write(&config, "max_payload: 65536\n").unwrap();
    let nats = trellis_cli::nats_server::NatsServer::start_with_args(
        0,
        &dir.path().join("data"),
        vec!["-c".into(), config.display().to_string()],
    )
    .unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        trellis_tests::built_plugin("spreadscaler"),
        plugins.join("spreadscaler.wasm"),
    )
    .unwrap();
    let controller = trellis_controller::Controller::start(trellis_controller::ControllerConfig {
        nats_url: nats.url(),
        lattices: vec!["small".into()],
        plugin_dir: plugins,
        settings: trellis_tests::fast_settings(),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let subjects = Subjects::new("small");
    for i in 0..400 {
        let text = echo_app("v1", 1).replace("name: web", &format!("name: web{i}"));
        let answer = ask(&client, subjects.put(), text.into_bytes()).await;
        assert_ne!(answer["result"], "error", "{answer}");
    }
    let whole = ask(&client, subjects.list(), Vec::new()).await;
    assert_eq!(whole["code"], "too_large", "{}", whole.to_string().len());
    assert!(
        whole["message"].as_str().unwrap().contains("offset"),
        "{whole}"
    );
    let api = trellis_cli::client::ApiClient::connect(&nats.url(), "small")
        .await
        .unwrap();
    assert_eq!(api.list().await.unwrap().len(), 400);

    // A version that fits alone but not beside the deployed one: refused, with both sizes.
    let padded = |version: &str| {
        let pad = "x".repeat(40 << 10);
        echo_app(version, 1)
            .replace("name: web", "name: fat")
            .replace(
                "    version: ",
                &format!("    description: {pad}\n    version: "),
            )
    };
    let answer = ask(&client, subjects.put(), padded("v1").into_bytes()).await;
    assert_eq!(answer["result"], "created", "{answer}");
    ask(&client, subjects.deploy("fat"), Vec::new()).await;
    let answer = ask(&client, subjects.put(), padded("v2").into_bytes()).await;
    assert_eq!(answer["code"], "too_large", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("bytes one entry may hold"),
        "{answer}"
    );
    let versions = ask(&client, subjects.versions("fat"), Vec::new()).await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "{versions}"
    );
    controller.stop().await;
}
