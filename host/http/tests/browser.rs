//! The dashboard in a real browser: headless Chromium, driven over the DevTools protocol, opens
//! the dashboard of a running lattice, sees the node, uploads the echo manifest through the file
//! input, deploys it through the confirmation dialog and watches its status become deployed,
//! the node's card on the lattice map fill with the app's instances and the app's chart appear.
//! A screenshot lands in `target/browser-test/dashboard.png`. A second test has a stand-in
//! lattice answer with markup in every string (as a hostile plugin, host or manifest could) and
//! checks that the page shows it as text, runs none of it, and breaks none of its policy.
//!
//! Chromium must be installed (`scripts/setup.sh --test` installs the Debian package); without
//! it this test fails and says so.

mod common;

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use common::{echo_yaml, echo_yaml_blue_green, Served};

/// Where the screenshot goes: `target/browser-test/`.
fn output_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("browser-test")
}

/// The Chromium binary: `$TRELLIS_CHROMIUM`, or `chromium` on the PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("TRELLIS_CHROMIUM") {
        return PathBuf::from(path);
    }
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the dashboard's browser test needs Chromium, and none is on the PATH: run scripts/setup.sh --test \
         (it installs the Debian package `chromium`), or set TRELLIS_CHROMIUM to a Chromium binary"
    );
}

/// A headless Chromium, killed on drop.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium and returns it with its DevTools websocket address.
    fn launch() -> anyhow::Result<(Self, String)> {
        let binary = chromium();
        let profile = tempfile::tempdir()?;
        let mut child = Command::new(&binary)
            .args([
                "--headless=new",
                // Tests often run as root in a container, where the sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--window-size=1440,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {}: run scripts/setup.sh --test (it installs the Debian package `chromium`)",
                    binary.display()
                )
            })?;
        // Chromium says where DevTools listens on stderr; the rest of stderr is drained so a
        // chatty browser never blocks on a full pipe.
        let stderr = child.stderr.take().expect("piped");
        let (found, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut found = Some(found);
            let mut said = Vec::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    if let Some(found) = found.take() {
                        let _ = found.send(Ok(url.trim().to_string()));
                    }
                } else if found.is_some() && said.len() < 20 {
                    said.push(line);
                }
            }
            if let Some(found) = found {
                let _ = found.send(Err(said.join("\n")));
            }
        });
        let browser = Self {
            child,
            _profile: profile,
        };
        match address.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(url)) => Ok((browser, url)),
            Ok(Err(said)) => bail!(
                "{} exited before DevTools listened; it said:\n{said}\n(scripts/setup.sh --test installs a working Chromium)",
                binary.display()
            ),
            Err(_) => bail!(
                "{} did not open DevTools within 20s",
                binary.display()
            ),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Pending = Arc<Mutex<HashMap<u64, tokio::sync::oneshot::Sender<Value>>>>;
type WsSink = futures::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// A minimal DevTools protocol client: commands with ids, answers matched by id, and the
/// page's uncaught exceptions collected.
struct Cdp {
    sink: tokio::sync::Mutex<WsSink>,
    pending: Pending,
    next_id: AtomicU64,
    exceptions: Arc<Mutex<Vec<String>>>,
    session: Mutex<Option<String>>,
}

impl Cdp {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("cannot open the DevTools socket {url}"))?;
        let (sink, mut stream) = socket.split();
        let pending: Pending = Arc::default();
        let exceptions: Arc<Mutex<Vec<String>>> = Arc::default();
        let (p, x) = (pending.clone(), exceptions.clone());
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if let Some(id) = value.get("id").and_then(Value::as_u64) {
                    if let Some(answer) = p.lock().unwrap().remove(&id) {
                        let _ = answer.send(value);
                    }
                } else if value["method"] == "Runtime.exceptionThrown" {
                    let details = &value["params"]["exceptionDetails"];
                    x.lock().unwrap().push(format!(
                        "{} {}",
                        details["text"].as_str().unwrap_or_default(),
                        details["exception"]["description"]
                            .as_str()
                            .unwrap_or_default()
                    ));
                }
            }
        });
        Ok(Self {
            sink: tokio::sync::Mutex::new(sink),
            pending,
            next_id: AtomicU64::new(1),
            exceptions,
            session: Mutex::new(None),
        })
    }

    /// Sends one command (to the attached page, once there is one) and waits for its answer.
    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = self.session.lock().unwrap().clone() {
            command["sessionId"] = session.into();
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.pending.lock().unwrap().insert(id, answer);
        self.sink
            .lock()
            .await
            .send(Message::Text(command.to_string().into()))
            .await?;
        let value = tokio::time::timeout(Duration::from_secs(15), answered)
            .await
            .with_context(|| format!("no answer to {method} within 15s"))??;
        if let Some(error) = value.get("error") {
            bail!("{method} failed: {error}");
        }
        Ok(value["result"].clone())
    }

    /// Opens a new page at `url` and sends the following commands to it.
    async fn open_page(&self, url: &str) -> anyhow::Result<()> {
        let target = self
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await?;
        *self.session.lock().unwrap() = attached["sessionId"].as_str().map(String::from);
        self.call("Runtime.enable", json!({})).await?;
        self.call("Page.enable", json!({})).await?;
        // Whatever the Content-Security-Policy blocks, from the first script on: the dashboard
        // must need nothing it forbids.
        self.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": "window.cspViolations = []; document.addEventListener('securitypolicyviolation', \
                (e) => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));" }),
        )
        .await?;
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1440, "height": 1000, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await?;
        self.call("Page.navigate", json!({ "url": url })).await?;
        Ok(())
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    async fn eval(&self, expression: &str) -> anyhow::Result<Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("`{expression}` threw: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Waits until `expression` is truthy, for at most `patience`; says what the page showed
    /// (`describe`) when it never is.
    async fn wait_for(
        &self,
        what: &str,
        expression: &str,
        describe: &str,
        patience: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let value = self.eval(expression).await.unwrap_or(Value::Null);
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let shown = self.eval(describe).await.unwrap_or_default();
                bail!("the dashboard did not show {what} within {patience:?}; it shows: {shown}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().context("no screenshot data")?)?;
        std::fs::create_dir_all(path.parent().expect("a folder"))?;
        std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Clicks `action`'s button in `app`'s row and confirms the dialog it opens.
async fn confirmed(cdp: &Cdp, action: &str, app: &str) {
    cdp.eval(&format!(
        "document.querySelector('button[data-action=\"{action}\"][data-app=\"{app}\"]').click()"
    ))
    .await
    .unwrap();
    cdp.wait_for(
        &format!("the {action} confirmation"),
        "document.querySelector('#confirm').open",
        "document.querySelector('#confirm').innerText",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    cdp.eval("document.querySelector('#confirm-ok').click()")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_deploys_the_echo_example() {
    let (browser, devtools) = Browser::launch().unwrap_or_else(|e| panic!("{e:#}"));
    let served = Served::start(None).await;
    let host_id = served.lattice.nodes[0].host_id().to_string();
    let manifest_file = served.lattice.dir.path().join("echo.yaml");
    std::fs::write(&manifest_file, echo_yaml()).unwrap();

    let cdp = Cdp::connect(&devtools).await.unwrap();
    cdp.open_page(&served.server.url()).await.unwrap();
    let seconds = Duration::from_secs;
    let body_text = "document.body.innerText.slice(0, 2000)";

    // The lattice: the node with its label, and the stream live.
    cdp.wait_for(
        "the node",
        &format!("document.querySelector('.host[data-host-id=\"{host_id}\"]')?.innerText.includes('zone=local')"),
        body_text,
        seconds(10),
    )
    .await
    .unwrap();
    // Its health as the controller judges it, and its load as it reports it.
    cdp.wait_for(
        "the node's health and load",
        &format!("(() => {{ const h = document.querySelector('.host[data-host-id=\"{host_id}\"]'); return h?.querySelector('.badge.healthy') && h.innerText.includes('CPU'); }})()"),
        body_text,
        seconds(10),
    )
    .await
    .unwrap();
    cdp.wait_for(
        "the live event stream",
        "document.querySelector('#live').textContent === 'live'",
        body_text,
        seconds(10),
    )
    .await
    .unwrap();
    cdp.wait_for(
        "the plugins",
        "document.querySelector('#plugins tr[data-plugin=\"spreadscaler\"]')",
        body_text,
        seconds(10),
    )
    .await
    .unwrap();

    // A manifest with a trait no plugin handles: the findings show inline, with path and hint.
    let wrong = echo_yaml().replacen("spreadscaler", "sprednscaler", 1);
    cdp.eval(&format!(
        "document.querySelector('#manifest-text').value = {}; document.querySelector('#validate-button').click()",
        serde_json::to_string(&wrong).unwrap()
    ))
    .await
    .unwrap();
    cdp.wait_for(
        "the validation findings",
        "document.querySelector('#diagnostics li.diag-error .path')?.textContent.startsWith('spec.components[0].traits[0]') \
         && document.querySelector('#diagnostics li.diag-error .hint') \
         && document.querySelector('#upload-result').textContent.includes('not valid')",
        "document.querySelector('#diagnostics').innerText",
        seconds(10),
    )
    .await
    .unwrap();

    // Upload the manifest through the file input, as a person would choose the file.
    let input = cdp
        .call(
            "Runtime.evaluate",
            json!({ "expression": "document.querySelector('#manifest-file')" }),
        )
        .await
        .unwrap();
    cdp.call(
        "DOM.setFileInputFiles",
        json!({ "files": [manifest_file], "objectId": input["result"]["objectId"] }),
    )
    .await
    .unwrap();
    cdp.wait_for(
        "the file's text",
        "document.querySelector('#manifest-text').value.includes('name: echo')",
        "document.querySelector('#manifest-text').value",
        seconds(5),
    )
    .await
    .unwrap();
    cdp.eval("document.querySelector('#put-button').click()")
        .await
        .unwrap();
    cdp.wait_for(
        "the app after upload",
        "document.querySelector('#upload-result').textContent.includes('put app echo version v0.1.0') \
         && document.querySelector('#apps tr[data-app=\"echo\"]')",
        "document.querySelector('#upload-result').textContent + ' | ' + document.querySelector('#diagnostics').innerText",
        seconds(10),
    )
    .await
    .unwrap();

    // Deploy: the confirmation shows the plan as a diff; confirm it.
    cdp.eval("document.querySelector('button[data-action=\"deploy\"][data-app=\"echo\"]').click()")
        .await
        .unwrap();
    cdp.wait_for(
        "the deploy confirmation with its plan",
        "document.querySelector('#confirm').open && document.querySelector('#confirm-body .diff .add')",
        "document.querySelector('#confirm').innerText",
        seconds(10),
    )
    .await
    .unwrap();
    let plan = cdp
        .eval("document.querySelector('#confirm-body').innerText")
        .await
        .unwrap();
    assert!(
        plan.as_str()
            .unwrap()
            .contains("scale component echo-echo to 1"),
        "{plan}"
    );
    cdp.eval("document.querySelector('#confirm-ok').click()")
        .await
        .unwrap();

    // Live: the status becomes deployed, and the node shows the component it now runs.
    cdp.wait_for(
        "echo deployed",
        "document.querySelector('#apps tr[data-app=\"echo\"] .badge.status')?.textContent === 'deployed'",
        "document.querySelector('#apps').innerText",
        seconds(30),
    )
    .await
    .unwrap();
    cdp.wait_for(
        "echo running on the node",
        &format!("document.querySelector('.host[data-host-id=\"{host_id}\"] li.component[data-component=\"echo-echo\"]')"),
        "document.querySelector('#hosts').innerText",
        seconds(10),
    )
    .await
    .unwrap();
    cdp.wait_for(
        "the component_scaled event in the feed",
        "document.querySelector('#events').innerText.includes('component_scaled')",
        "document.querySelector('#events').innerText",
        seconds(10),
    )
    .await
    .unwrap();

    // The lattice map: the node's card, healthy, with a square per instance coloured by app
    // (the echo component and the HTTP server), and the app's chart of the last minutes,
    // drawn once the controller has samples of it.
    cdp.wait_for(
        "the node on the lattice map with echo's instances",
        &format!("(() => {{ const n = document.querySelector('#map .node[data-host-id=\"{host_id}\"]'); return n && n.querySelector('.badge.healthy') && n.querySelectorAll('svg.instances rect').length === 2; }})()"),
        "document.querySelector('#map').innerHTML.slice(0, 2000)",
        seconds(10),
    )
    .await
    .unwrap();
    cdp.wait_for(
        "echo's chart",
        "document.querySelector('#apps td.chart-cell[data-app=\"echo\"] svg.spark polyline.instances')",
        "document.querySelector('#apps td.chart-cell[data-app=\"echo\"]')?.innerHTML",
        seconds(20),
    )
    .await
    .unwrap();

    // A blue-green rollout to v0.2.0 with a manual switch: the app's row shows it waiting for
    // a person, with its weights and figures; Promote (confirmed) lets it switch and finish.
    let http = served.http();
    let put = http
        .post("/api/v1/apps", echo_yaml_blue_green("v0.2.0").as_bytes())
        .await;
    assert!(put.status < 300, "{}", put.body);
    let deploy = http
        .post("/api/v1/apps/echo/deploy", br#"{"version": "v0.2.0"}"#)
        .await;
    assert!(
        deploy.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("rolling app echo out"),
        "{}",
        deploy.body
    );
    cdp.wait_for(
        "the rollout waiting for a person",
        "(() => { const r = document.querySelector('#apps tr[data-app=\"echo\"] .rollout.active'); return r && r.dataset.rolloutState === 'waiting_for_promotion' && r.querySelector('table.figures') && r.querySelector('button[data-action=\"promote\"]'); })()",
        "document.querySelector('#apps').innerText",
        seconds(30),
    )
    .await
    .unwrap();
    let screenshot = output_dir().join("rollout.png");
    cdp.screenshot(&screenshot).await.unwrap();
    println!("screenshot: {}", screenshot.display());
    confirmed(&cdp, "promote", "echo").await;
    cdp.wait_for(
        "the rollout done",
        "document.querySelector('#apps tr[data-app=\"echo\"] .rollout.over')?.dataset.rolloutState === 'done' \
         && document.querySelector('#events').innerText.includes('rolled out v0.2.0')",
        "document.querySelector('#apps').innerText + ' | ' + document.querySelector('#events').innerText.slice(0, 1000)",
        seconds(30),
    )
    .await
    .unwrap();

    let screenshot = output_dir().join("dashboard.png");
    cdp.screenshot(&screenshot).await.unwrap();
    println!("screenshot: {}", screenshot.display());

    // Undeploy, confirmed: the status follows.
    confirmed(&cdp, "undeploy", "echo").await;
    cdp.wait_for(
        "echo undeployed",
        "document.querySelector('#apps tr[data-app=\"echo\"] .badge.status')?.textContent === 'undeployed'",
        "document.querySelector('#apps').innerText",
        seconds(15),
    )
    .await
    .unwrap();

    // A server with a token: the page asks for it, then shows the lattice.
    let guarded = trellis_http::HttpServer::start(
        trellis_http::HttpConfig {
            address: "127.0.0.1:0".parse().unwrap(),
            token: Some("s3cret".into()),
            lattice: served.lattice.lattice.clone(),
            api_prefix: None,
        },
        served.nats.clone(),
    )
    .await
    .unwrap();
    cdp.open_page(&guarded.url()).await.unwrap();
    cdp.wait_for(
        "the token prompt",
        "!document.querySelector('#token-box').hidden",
        body_text,
        seconds(10),
    )
    .await
    .unwrap();
    cdp.eval(
        "document.querySelector('#token-input').value = 's3cret'; \
         document.querySelector('#token-form').requestSubmit()",
    )
    .await
    .unwrap();
    cdp.wait_for(
        "the node after the token",
        &format!("document.querySelector('.host[data-host-id=\"{host_id}\"]') && document.querySelector('#live').textContent === 'live'"),
        body_text,
        seconds(10),
    )
    .await
    .unwrap();

    let exceptions = cdp.exceptions.lock().unwrap().clone();
    assert!(exceptions.is_empty(), "the page threw: {exceptions:?}");
    let violations = cdp.eval("window.cspViolations").await.unwrap();
    assert_eq!(violations, json!([]), "the policy blocked");
    drop(browser);
}

/// Markup that would run if the dashboard wrote it into the page as HTML rather than as text.
const HOSTILE: &str = "<img src=x onerror=\"window.pwned=1\">";

/// A stand-in for a controller, hosts and plugins gone bad: answers every request the
/// dashboard causes with [`HOSTILE`] in each string they decide (names, versions, labels,
/// messages, hints, plugin failure kinds and counts, command subjects), as a hostile plugin,
/// host or manifest could.
async fn hostile_lattice(client: async_nats::Client, lattice: &str) {
    use trellis_lattice::{api, ctl};
    let (api, ctl) = (api::Subjects::new(lattice), ctl::Subjects::new(lattice));
    let status = json!({
        "status": { "type": HOSTILE, "message": HOSTILE },
        "scalers": [{ "id": HOSTILE, "kind": HOSTILE, "name": HOSTILE,
                      "status": { "type": HOSTILE, "message": HOSTILE } }],
    });
    let answers: Vec<(String, Value)> = vec![
        (
            ctl.host_ping(),
            json!({ "success": true, "response": {
                "id": "NHOSTILE", "friendly_name": HOSTILE, "labels": { HOSTILE: HOSTILE },
                "uptime_human": HOSTILE, "lattice": lattice } }),
        ),
        (
            ctl.host_get("NHOSTILE"),
            json!({ "success": true, "response": {
                "host_id": "NHOSTILE",
                "components": [{ "id": HOSTILE, "name": HOSTILE, "image_ref": HOSTILE,
                                 "annotations": { "wasmcloud.dev/appspec": HOSTILE },
                                 "max_instances": 1 }],
                "providers": [{ "id": HOSTILE, "name": HOSTILE, "image_ref": HOSTILE,
                                "annotations": { "wasmcloud.dev/appspec": HOSTILE } }] } }),
        ),
        (
            api.list(),
            json!([
                { "name": HOSTILE, "version": HOSTILE, "description": HOSTILE,
                  "deployed_version": HOSTILE, "detailed_status": status },
                { "name": "safe", "version": "v1", "description": HOSTILE,
                  "deployed_version": null, "detailed_status": status },
            ]),
        ),
        (
            api.versions("safe"),
            json!({ "result": "success", "versions": [{ "version": HOSTILE, "deployed": true }] }),
        ),
        (
            api.plugin_list(),
            json!({
                "plugin_dir": HOSTILE,
                "plugins": [{ "name": HOSTILE, "version": HOSTILE, "kind": HOSTILE,
                              "description": HOSTILE, "trait_types": [HOSTILE],
                              "calls": HOSTILE, "failures": { HOSTILE: HOSTILE },
                              "p50_us": HOSTILE, "p99_us": HOSTILE }],
                "problems": [{ "file": HOSTILE, "error": HOSTILE }],
            }),
        ),
        (
            api.validate(),
            json!({ "valid": false, "diagnostics": [{ "severity": HOSTILE, "path": HOSTILE,
                "message": HOSTILE, "hint": HOSTILE, "source": HOSTILE }] }),
        ),
        (
            api.plan("safe"),
            json!({
                "result": "success", "name": "safe", "version": "v1", "message": "",
                "commands": [
                    { "scaler": HOSTILE, "held": false,
                      "subject": format!("wasmbus.ctl.v1.{lattice}.component.scale.NHOSTILE"),
                      "body": { "component_id": HOSTILE, "max_instances": 1 } },
                    { "scaler": HOSTILE, "held": true, "subject": HOSTILE,
                      "body": { HOSTILE: HOSTILE } },
                ],
                "scalers": [{ "id": HOSTILE, "kind": HOSTILE, "name": HOSTILE,
                              "status": { "type": HOSTILE, "message": HOSTILE } }],
            }),
        ),
    ];
    for (subject, answer) in answers {
        let mut requests = client.subscribe(subject).await.unwrap();
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = client.publish(reply, answer.to_string().into()).await;
                }
            }
        });
    }
    client.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strings_show_as_text() {
    let (browser, devtools) = Browser::launch().unwrap_or_else(|e| panic!("{e:#}"));
    let dir = tempfile::tempdir().unwrap();
    let nats = trellis_cli::nats_server::NatsServer::start(0, &dir.path().join("nats")).unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let lattice = "hostile";
    hostile_lattice(client.clone(), lattice).await;
    let server = trellis_http::HttpServer::start(
        trellis_http::HttpConfig {
            address: "127.0.0.1:0".parse().unwrap(),
            token: None,
            lattice: lattice.into(),
            api_prefix: None,
        },
        client.clone(),
    )
    .await
    .unwrap();

    let cdp = Cdp::connect(&devtools).await.unwrap();
    cdp.open_page(&server.url()).await.unwrap();
    let seconds = Duration::from_secs;
    let hostile = serde_json::to_string(HOSTILE).unwrap();
    let shows = |selector: &str| {
        format!("document.querySelector('{selector}')?.innerText.includes({hostile})")
    };
    let body_text = "document.body.innerText.slice(0, 3000)";
    for (what, selector) in [
        ("the host, its labels and what it runs", "#hosts"),
        ("the apps with their statuses", "#apps"),
        ("the plugins with their failures", "#plugins"),
        ("the plugin problems", "#plugin-problems"),
    ] {
        cdp.wait_for(what, &shows(selector), body_text, seconds(10))
            .await
            .unwrap();
    }
    cdp.wait_for(
        "the live event stream",
        "document.querySelector('#live').textContent === 'live'",
        body_text,
        seconds(10),
    )
    .await
    .unwrap();

    // Validation findings, a plan (with the confirmation's copy of it), events.
    cdp.eval(
        "document.querySelector('#manifest-text').value = 'x'; \
         document.querySelector('#validate-button').click()",
    )
    .await
    .unwrap();
    cdp.wait_for(
        "the findings",
        &shows("#diagnostics"),
        body_text,
        seconds(10),
    )
    .await
    .unwrap();
    cdp.eval("document.querySelector('button[data-action=\"plan\"][data-app=\"safe\"]').click()")
        .await
        .unwrap();
    cdp.wait_for("the plan", &shows("#plan"), body_text, seconds(10))
        .await
        .unwrap();
    let event = json!({
        "type": format!("com.wasmcloud.lattice.{HOSTILE}"),
        "source": "NHOSTILE",
        "data": { "component_id": HOSTILE, "max_instances": HOSTILE, "error": HOSTILE },
    });
    client
        .publish(
            format!("wasmbus.evt.{lattice}.component_scaled"),
            event.to_string().into(),
        )
        .await
        .unwrap();
    let status = json!({ "status": { "type": HOSTILE, "message": HOSTILE } });
    client
        .publish(
            format!("wadm.status.{lattice}.safe"),
            status.to_string().into(),
        )
        .await
        .unwrap();
    cdp.wait_for(
        "the events",
        &format!(
            "document.querySelectorAll('#events li').length >= 2 && {}",
            shows("#events")
        ),
        "document.querySelector('#events').innerText",
        seconds(10),
    )
    .await
    .unwrap();
    cdp.eval("document.querySelector('button[data-action=\"deploy\"][data-app=\"safe\"]').click()")
        .await
        .unwrap();
    cdp.wait_for(
        "the deploy confirmation",
        &format!(
            "document.querySelector('#confirm').open && {}",
            shows("#confirm-body")
        ),
        "document.querySelector('#confirm').innerText",
        seconds(10),
    )
    .await
    .unwrap();

    // A manifest over the body limit: the browser reads the gateway's 413, not a reset
    // connection, and the page says why.
    cdp.eval("document.querySelector('#confirm').close()")
        .await
        .unwrap();
    cdp.eval(
        "document.querySelector('#manifest-text').value = '#'.repeat(2 << 20); \
         document.querySelector('#validate-button').click()",
    )
    .await
    .unwrap();
    cdp.wait_for(
        "the refusal of an oversized manifest",
        &format!(
            "document.querySelector('#upload-result').textContent.includes('over the limit of {} bytes')",
            trellis_http::gateway::MAX_BODY_BYTES
        ),
        "document.querySelector('#upload-result').textContent",
        seconds(10),
    )
    .await
    .unwrap();

    // Everywhere as text: no element, attribute or handler came from the data, and nothing ran.
    let found = cdp
        .eval(
            "({ images: document.querySelectorAll('img').length, \
                handlers: [...document.querySelectorAll('*')] \
                  .filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length, \
                pwned: window.pwned === 1, \
                violations: window.cspViolations })",
        )
        .await
        .unwrap();
    assert_eq!(
        found,
        json!({ "images": 0, "handlers": 0, "pwned": false, "violations": [] }),
        "the page shows: {}",
        cdp.eval(body_text).await.unwrap()
    );
    let exceptions = cdp.exceptions.lock().unwrap().clone();
    assert!(exceptions.is_empty(), "the page threw: {exceptions:?}");
    server.stop().await;
    drop(browser);
}
