//! Every endpoint of the HTTP API against a real lattice (nats-server, controller with the
//! built plugins, one node running the echo example), and the answers compared with what the
//! controller's NATS API says to the same request.

mod common;

use std::time::Duration;

use common::{echo_yaml, echo_yaml_version, wait_deployed, Served};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_goes_through_its_whole_life_over_http() {
    let served = Served::start(None).await;
    let http = served.http();
    let subjects = served.subjects();

    assert_eq!(http.get("/api/v1/lattice").await.json()["lattice"], "test");

    // Validate: a good manifest is valid; the same findings as over NATS.
    let yaml = echo_yaml();
    let checked = http.post("/api/v1/validate", yaml.as_bytes()).await;
    assert_eq!(checked.status, 200, "{}", checked.body);
    assert_eq!(checked.json()["valid"], true, "{}", checked.body);
    assert_eq!(
        checked.json(),
        served
            .nats_answer(subjects.validate(), yaml.as_bytes())
            .await
    );

    // Put: 201 for a new app, then the same version again is refused (409, from the answer's
    // code) with the NATS message.
    let put = http.post("/api/v1/apps", yaml.as_bytes()).await;
    assert_eq!(put.status, 201, "{}", put.body);
    assert_eq!(put.json()["result"], "created");
    assert!(put.json().get("code").is_none(), "{}", put.body);
    assert_eq!(put.json()["current_version"], "v0.1.0");
    let again = http.post("/api/v1/apps", yaml.as_bytes()).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.json()["code"], "exists");
    assert_eq!(
        again.json(),
        served.nats_answer(subjects.put(), yaml.as_bytes()).await
    );
    assert!(
        again.json()["message"]
            .as_str()
            .unwrap()
            .contains("already has a version `v0.1.0`"),
        "{}",
        again.body
    );

    // List, get, versions.
    let list = http.get("/api/v1/apps").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()[0]["name"], "echo", "{}", list.body);
    let got = http.get("/api/v1/apps/echo").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["manifest"]["metadata"]["name"], "echo");
    let got_v = http.get("/api/v1/apps/echo?version=v0.1.0").await;
    assert_eq!(got_v.status, 200, "{}", got_v.body);
    let versions = http.get("/api/v1/apps/echo/versions").await;
    assert_eq!(versions.json()["versions"][0]["version"], "v0.1.0");
    assert_eq!(versions.json()["versions"][0]["deployed"], false);

    // Plan before deploying: the commands a deploy would issue.
    let plan = http.get("/api/v1/apps/echo/plan").await;
    assert_eq!(plan.status, 200, "{}", plan.body);
    let commands = plan.json()["commands"].as_array().unwrap().clone();
    assert!(
        commands
            .iter()
            .any(|c| c["subject"].as_str().unwrap().contains(".component.scale.")),
        "{}",
        plan.body
    );

    // Deploy, and watch it become deployed.
    let deploy = http
        .post("/api/v1/apps/echo/deploy", br#"{"version":"v0.1.0"}"#)
        .await;
    assert_eq!(deploy.status, 200, "{}", deploy.body);
    assert_eq!(deploy.json()["result"], "acknowledged");
    let status = wait_deployed(&http, "echo", Duration::from_secs(30)).await;
    assert!(
        status["status"]["scalers"].as_array().unwrap().len() >= 3,
        "{status}"
    );

    // Hosts and what runs where.
    let hosts = http.get("/api/v1/hosts").await;
    assert_eq!(hosts.status, 200);
    let hosts = hosts.json();
    assert_eq!(hosts.as_array().unwrap().len(), 1, "{hosts}");
    assert_eq!(hosts[0]["labels"]["zone"], "local");
    let host_id = hosts[0]["id"].as_str().unwrap().to_string();
    let inventory = http.get(&format!("/api/v1/hosts/{host_id}")).await;
    assert_eq!(inventory.status, 200, "{}", inventory.body);
    let inventory = inventory.json();
    let echo = inventory["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "echo-echo")
        .unwrap_or_else(|| panic!("echo runs on the node: {inventory}"));
    assert_eq!(echo["annotations"]["wasmcloud.dev/appspec"], "echo");
    assert_eq!(inventory["providers"].as_array().unwrap().len(), 1);

    // Links and configs the app made.
    let links = http.get("/api/v1/links").await;
    assert_eq!(links.status, 200, "{}", links.body);
    assert!(
        links
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["target"] == "echo-echo" && l["wit_package"] == "http"),
        "{}",
        links.body
    );
    let configs = http.get("/api/v1/configs").await;
    assert_eq!(configs.status, 200, "{}", configs.body);
    let names: Vec<String> = serde_json::from_str(&configs.body).unwrap();
    assert!(!names.is_empty(), "the echo link's config is stored");
    let config = http.get(&format!("/api/v1/configs/{}", names[0])).await;
    assert_eq!(config.status, 200, "{}", config.body);
    assert!(config.json().get("address").is_some(), "{}", config.body);

    // Plugins: loaded, with their kind, trait types and call statistics.
    let plugins = http.get("/api/v1/plugins").await;
    assert_eq!(plugins.status, 200);
    let plugins = plugins.json();
    let spread = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "spreadscaler")
        .unwrap_or_else(|| panic!("spreadscaler is loaded: {plugins}"));
    assert_eq!(spread["kind"], "scaler");
    assert!(spread["calls"].as_u64().unwrap() > 0, "{spread}");
    assert!(plugins["problems"].as_array().unwrap().is_empty());

    // A second version, then rollback to the first.
    let v2 = echo_yaml_version("v0.2.0");
    assert_eq!(http.post("/api/v1/apps", v2.as_bytes()).await.status, 200);
    let deploy2 = http.post("/api/v1/apps/echo/deploy", b"").await;
    assert_eq!(deploy2.json()["version"], "v0.2.0", "{}", deploy2.body);
    let rollback = http.post("/api/v1/apps/echo/rollback", b"").await;
    assert_eq!(rollback.status, 200, "{}", rollback.body);
    assert_eq!(rollback.json()["version"], "v0.1.0", "{}", rollback.body);
    let history = http.get("/api/v1/apps/echo/history").await;
    let deployed: Vec<&str> = history.json()["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["version"].as_str())
        .map(|v| if v == "v0.1.0" { "v1" } else { "v2" })
        .collect();
    assert_eq!(deployed, ["v1", "v2", "v1"], "{}", history.body);

    // Undeploy, then delete one version and the app.
    let undeploy = http.post("/api/v1/apps/echo/undeploy", b"").await;
    assert_eq!(undeploy.status, 200, "{}", undeploy.body);
    assert_eq!(undeploy.json()["result"], "acknowledged");
    let del_v2 = http.delete("/api/v1/apps/echo?version=v0.2.0").await;
    assert_eq!(del_v2.status, 200, "{}", del_v2.body);
    assert_eq!(del_v2.json()["result"], "deleted");
    let versions = http.get("/api/v1/apps/echo/versions").await.json();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);
    let del = http.delete("/api/v1/apps/echo").await;
    assert_eq!(del.json()["result"], "deleted", "{}", del.body);
    assert_eq!(http.get("/api/v1/apps").await.json(), serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_controllers_own_messages() {
    let served = Served::start(None).await;
    let http = served.http();
    let subjects = served.subjects();

    // A manifest that is not YAML: 400, the controller's parse error, word for word.
    let malformed = b"apiVersion: core.oam.dev/v1beta1\nkind: [Application\n";
    let put = http.post("/api/v1/apps", malformed).await;
    assert_eq!(put.status, 400, "{}", put.body);
    assert_eq!(put.json()["result"], "error");
    assert_eq!(put.json()["code"], "invalid");
    assert_eq!(
        put.json(),
        served.nats_answer(subjects.put(), malformed).await
    );
    let checked = http.post("/api/v1/validate", malformed).await;
    assert_eq!(checked.status, 200);
    assert_eq!(checked.json()["valid"], false, "{}", checked.body);
    assert_eq!(
        checked.json(),
        served.nats_answer(subjects.validate(), malformed).await
    );

    // A manifest with an unknown trait: diagnostics with path and hint.
    let unknown_trait = echo_yaml().replace("spreadscaler", "sprednscaler");
    let checked = http
        .post("/api/v1/validate", unknown_trait.as_bytes())
        .await
        .json();
    assert_eq!(checked["valid"], false, "{checked}");
    let first = &checked["diagnostics"][0];
    assert_eq!(first["severity"], "error", "{checked}");
    assert!(
        first["path"]
            .as_str()
            .unwrap()
            .starts_with("spec.components["),
        "{checked}"
    );
    assert!(!first["hint"].as_str().unwrap().is_empty(), "{checked}");
    let put = http.post("/api/v1/apps", unknown_trait.as_bytes()).await;
    assert_eq!(put.status, 400, "{}", put.body);
    assert_eq!(put.json()["code"], "invalid");

    // An unknown app: 404 everywhere, with the NATS answer as the body.
    for (method, path, subject, body) in [
        ("GET", "/api/v1/apps/nope", subjects.get("nope"), &b"{}"[..]),
        (
            "GET",
            "/api/v1/apps/nope/versions",
            subjects.versions("nope"),
            b"",
        ),
        (
            "GET",
            "/api/v1/apps/nope/status",
            subjects.status("nope"),
            b"",
        ),
        (
            "GET",
            "/api/v1/apps/nope/history",
            subjects.history("nope"),
            b"",
        ),
        (
            "GET",
            "/api/v1/apps/nope/plan",
            subjects.plan("nope"),
            b"{}",
        ),
        (
            "POST",
            "/api/v1/apps/nope/deploy",
            subjects.deploy("nope"),
            b"{}",
        ),
        (
            "POST",
            "/api/v1/apps/nope/undeploy",
            subjects.undeploy("nope"),
            b"{}",
        ),
    ] {
        let answer = http.send(method, path, b"").await;
        assert_eq!(answer.status, 404, "{method} {path}: {}", answer.body);
        assert_eq!(
            answer.json(),
            served.nats_answer(subject, body).await,
            "{method} {path}"
        );
    }
    // Deleting what is not there is a no-op, as over NATS; rollback without history is refused.
    let del = http.delete("/api/v1/apps/nope").await;
    assert_eq!(
        del.json(),
        served.nats_answer(subjects.del("nope"), b"{}").await
    );
    let rollback = http.post("/api/v1/apps/nope/rollback", b"").await;
    assert!(rollback.status >= 400, "{}", rollback.body);
    assert_eq!(
        rollback.json(),
        served.nats_answer(subjects.rollback("nope"), b"").await
    );

    // A wrong version of a known app.
    assert_eq!(
        http.post("/api/v1/apps", echo_yaml().as_bytes())
            .await
            .status,
        201
    );
    for (method, path, subject, body) in [
        (
            "GET",
            "/api/v1/apps/echo?version=v9",
            subjects.get("echo"),
            r#"{"version":"v9"}"#,
        ),
        (
            "GET",
            "/api/v1/apps/echo/plan?version=v9",
            subjects.plan("echo"),
            r#"{"version":"v9"}"#,
        ),
    ] {
        let answer = http.send(method, path, b"").await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.body);
        assert_eq!(
            answer.json(),
            served.nats_answer(subject, body.as_bytes()).await
        );
    }
    let deploy = http
        .post("/api/v1/apps/echo/deploy", br#"{"version":"v9"}"#)
        .await;
    assert_eq!(deploy.status, 404, "{}", deploy.body);
    assert_eq!(deploy.json()["code"], "not_found");
    assert_eq!(
        deploy.json()["message"],
        "app `echo` has no version `v9`",
        "{}",
        deploy.body
    );

    // A body the gateway cannot read is refused, not taken for "the latest version".
    let typo = http
        .post("/api/v1/apps/echo/deploy", br#"{"version": 2}"#)
        .await;
    assert_eq!(typo.status, 400, "{}", typo.body);
    assert!(
        typo.json()["error"]
            .as_str()
            .unwrap()
            .contains("the body of deploy"),
        "{}",
        typo.body
    );
    assert_eq!(
        http.get("/api/v1/apps/echo/versions").await.json()["versions"][0]["deployed"],
        false
    );

    // Unknown hosts, configs and endpoints.
    let host = http.get("/api/v1/hosts/NOPE").await;
    assert_eq!(host.status, 404, "{}", host.body);
    assert!(host.json()["error"]
        .as_str()
        .unwrap()
        .contains("no host NOPE"));
    let config = http.get("/api/v1/configs/nope").await;
    assert_eq!(config.status, 404, "{}", config.body);
    assert_eq!(
        config.json()["error"],
        "lattice `test` has no config named `nope`; `trellis get config` lists them"
    );
    let unknown = http.get("/api/v1/nothing-here").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["error"]
        .as_str()
        .unwrap()
        .contains("GET /api/v1/nothing-here"));
    let wrong_method = http.send("PUT", "/api/v1/apps", b"").await;
    assert_eq!(wrong_method.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lattice_without_controller_is_named_in_the_error() {
    // NATS alone: nobody answers the API subjects.
    let dir = tempfile::tempdir().unwrap();
    let nats = trellis_cli::nats_server::NatsServer::start(0, &dir.path().join("nats")).unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let server = trellis_http::HttpServer::start(
        trellis_http::HttpConfig {
            address: "127.0.0.1:0".parse().unwrap(),
            token: None,
            lattice: "empty".into(),
            api_prefix: None,
        },
        client,
    )
    .await
    .unwrap();
    let http = common::Http {
        address: server.address().to_string(),
        token: None,
    };
    let list = http.get("/api/v1/apps").await;
    assert_eq!(list.status, 503, "{}", list.body);
    assert_eq!(
        list.json()["error"],
        "nobody in lattice `empty` listens on wadm.api.empty.model.list; start trellis with `trellis up`, or `trellis controller` and `trellis node`"
    );
    let hosts = http.get("/api/v1/hosts").await;
    assert_eq!(hosts.status, 200);
    assert_eq!(hosts.json(), serde_json::json!([]));
    server.stop().await;
}
