//! What the HTTP tests share: a lattice (real nats-server, controller and node) with the HTTP
//! API in front of it, and a small HTTP client that shows every status and header.

#![allow(dead_code)] // each test file uses its own part of this module

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trellis_http::{HttpConfig, HttpServer};
use trellis_tests::TestLattice;

/// The plugins the echo example needs, and the validator for diagnostics.
pub const PLUGINS: &[&str] = &[
    "spreadscaler",
    "linkscaler",
    "placement",
    "validator",
    "bluegreen",
];

pub struct Served {
    pub lattice: TestLattice,
    pub server: HttpServer,
    pub nats: async_nats::Client,
}

impl Served {
    /// A lattice with one node (label `zone=local`), served over HTTP on a free loopback port.
    pub async fn start(token: Option<&str>) -> Self {
        let mut lattice = TestLattice::start(PLUGINS).await.expect("lattice starts");
        lattice
            .add_node(&[("zone", "local")])
            .await
            .expect("node starts");
        let nats = async_nats::connect(lattice.nats.url())
            .await
            .expect("NATS connects");
        let server = HttpServer::start(
            HttpConfig {
                address: "127.0.0.1:0".parse().unwrap(),
                token: token.map(String::from),
                lattice: lattice.lattice.clone(),
                api_prefix: None,
            },
            nats.clone(),
        )
        .await
        .expect("HTTP server starts");
        Self {
            lattice,
            server,
            nats,
        }
    }

    pub fn http(&self) -> Http {
        Http {
            address: self.server.address().to_string(),
            token: None,
        }
    }

    /// The controller's raw JSON answer on a NATS subject: what the HTTP body must equal.
    pub async fn nats_answer(&self, subject: String, body: &[u8]) -> serde_json::Value {
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            self.nats.request(subject.clone(), body.to_vec().into()),
        )
        .await
        .unwrap_or_else(|_| panic!("no answer on {subject}"))
        .unwrap_or_else(|e| panic!("request {subject}: {e}"));
        serde_json::from_slice(&reply.payload).expect("JSON answer")
    }

    pub fn subjects(&self) -> trellis_lattice::api::Subjects {
        trellis_lattice::api::Subjects::new(&self.lattice.lattice)
    }
}

/// An HTTP/1.1 client of one server, one connection per request.
#[derive(Clone)]
pub struct Http {
    pub address: String,
    pub token: Option<String>,
}

pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }
}

impl Http {
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, b"").await
    }

    pub async fn post(&self, path: &str, body: &[u8]) -> Answer {
        self.send("POST", path, body).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send("DELETE", path, b"").await
    }

    pub async fn send(&self, method: &str, path: &str, body: &[u8]) -> Answer {
        self.send_with(method, path, &[], body).await
    }

    /// A request with extra headers; a `Host` among them replaces the real one.
    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        tokio::time::timeout(
            Duration::from_secs(20),
            self.try_send(method, path, headers, body),
        )
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within 20s"))
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
    }

    async fn try_send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Answer> {
        let mut stream = tokio::net::TcpStream::connect(&self.address)
            .await
            .with_context(|| format!("connecting to {}", self.address))?;
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let host = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("host"))
            .map_or(self.address.as_str(), |(_, value)| value);
        let extra: String = headers
            .iter()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{auth}{extra}Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let raw = String::from_utf8(raw).context("the answer is not UTF-8")?;
        let (head, body) = raw.split_once("\r\n\r\n").context("no end of the header")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .context("no status")?
            .parse()?;
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        Ok(Answer {
            status,
            head: head.to_string(),
            body: if chunked {
                dechunk(body)
            } else {
                body.to_string()
            },
        })
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The echo example as YAML text, with absolute images and a free HTTP port: what a user
/// would upload.
pub fn echo_yaml() -> String {
    let (manifest, _address) = trellis_tests::echo_manifest();
    serde_yaml_ng::to_string(&manifest).expect("manifest serialises")
}

/// The echo example with another version annotation.
pub fn echo_yaml_version(version: &str) -> String {
    let (mut manifest, _address) = trellis_tests::echo_manifest();
    manifest.metadata.annotations.insert(
        trellis_lattice::manifest::VERSION_ANNOTATION.into(),
        version.into(),
    );
    serde_yaml_ng::to_string(&manifest).expect("manifest serialises")
}

/// The echo example at `version`, rolled out blue-green with a manual switch.
pub fn echo_yaml_blue_green(version: &str) -> String {
    let (mut manifest, _address) = trellis_tests::echo_manifest();
    manifest.metadata.annotations.insert(
        trellis_lattice::manifest::VERSION_ANNOTATION.into(),
        version.into(),
    );
    manifest
        .spec
        .policies
        .push(trellis_lattice::manifest::Policy {
            name: trellis_lattice::api::ROLLOUT_POLICY.into(),
            policy_type: "blue-green".into(),
            properties: [("switch", "manual"), ("keep_old_for", "2s")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
    serde_yaml_ng::to_string(&manifest).expect("manifest serialises")
}

/// Polls `GET /api/v1/apps/{name}/status` until the status is `deployed`, for at most `patience`.
pub async fn wait_deployed(http: &Http, name: &str, patience: Duration) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let answer = http.get(&format!("/api/v1/apps/{name}/status")).await;
        let status = answer.json();
        if status["status"]["status"]["type"] == "deployed" {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} is not deployed after {patience:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
