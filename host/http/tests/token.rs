//! Who may use the API: off loopback the server needs a token, and with a token every API
//! request without it is a 401 with a JSON error (the dashboard's files need none); other web
//! sites may not change anything, and without a token only loopback names are answered.

mod common;

use trellis_cli::nats_server::NatsServer;
use trellis_http::{HttpConfig, HttpServer};

async fn nats() -> (tempfile::TempDir, NatsServer, async_nats::Client) {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start(0, &dir.path().join("nats")).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    (dir, server, client)
}

fn config(address: &str, token: Option<&str>) -> HttpConfig {
    HttpConfig {
        address: address.parse().unwrap(),
        token: token.map(String::from),
        lattice: "test".into(),
        api_prefix: None,
    }
}

#[tokio::test]
async fn a_non_loopback_address_without_token_is_refused() {
    let (_dir, _nats, client) = nats().await;
    for token in [None, Some("")] {
        let refused = HttpServer::start(config("0.0.0.0:0", token), client.clone())
            .await
            .err()
            .expect("refused without a token");
        let message = refused.to_string();
        assert!(
            message.contains("refusing to serve the HTTP API on 0.0.0.0:0 without a token")
                && message.contains("--http-token"),
            "{message}"
        );
    }
    // With a token it serves, and asks for it.
    let server = HttpServer::start(config("0.0.0.0:0", Some("s3cret")), client)
        .await
        .unwrap();
    let http = common::Http {
        address: format!("127.0.0.1:{}", server.address().port()),
        token: None,
    };
    assert_eq!(http.get("/api/v1/lattice").await.status, 401);
    assert_eq!(
        http.with_token("s3cret")
            .get("/api/v1/lattice")
            .await
            .json()["lattice"],
        "test"
    );
    server.stop().await;
}

#[tokio::test]
async fn requests_without_the_token_get_401() {
    let (_dir, _nats, client) = nats().await;
    let server = HttpServer::start(config("127.0.0.1:0", Some("s3cret")), client)
        .await
        .unwrap();
    let http = common::Http {
        address: server.address().to_string(),
        token: None,
    };
    for path in [
        "/api/v1/apps",
        "/api/v1/hosts",
        "/api/v1/events",
        "/api/v1/openapi.json",
    ] {
        let answer = http.get(path).await;
        assert_eq!(answer.status, 401, "{path}");
        assert_eq!(
            answer.header("content-type").as_deref(),
            Some("application/json")
        );
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap()
                .contains("Authorization: Bearer"),
            "{}",
            answer.body
        );
    }
    let posted = http.post("/api/v1/apps/echo/deploy", b"").await;
    assert_eq!(posted.status, 401);
    let wrong = http.with_token("guess").get("/api/v1/apps").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.json()["error"]
        .as_str()
        .unwrap()
        .contains("not this server's"));
    let right = http.with_token("s3cret").get("/api/v1/lattice").await;
    assert_eq!(right.status, 200, "{}", right.body);

    // The page itself carries no data: it loads, then asks for the token.
    let page = http.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>trellis</title>"));
    assert_eq!(http.get("/dashboard.js").await.status, 200);
    assert_eq!(http.get("/dashboard.css").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn other_web_sites_may_not_use_the_api() {
    let (_dir, _nats, client) = nats().await;
    let server = HttpServer::start(config("127.0.0.1:0", None), client)
        .await
        .unwrap();
    let address = server.address().to_string();
    let http = common::Http {
        address: address.clone(),
        token: None,
    };
    // A page elsewhere posting to the local API (a form needs no CORS preflight): refused.
    let forged = http
        .send_with(
            "POST",
            "/api/v1/apps/echo/undeploy",
            &[
                ("Origin", "http://evil.example"),
                ("Content-Type", "text/plain"),
            ],
            b"",
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(
        forged.json()["error"]
            .as_str()
            .unwrap()
            .contains("http://evil.example may not change this lattice"),
        "{}",
        forged.body
    );
    // The dashboard's own origin passes the gate (and reaches NATS, where no controller is).
    let own_origin = format!("http://{address}");
    let own = http
        .send_with(
            "POST",
            "/api/v1/apps/echo/undeploy",
            &[("Origin", own_origin.as_str())],
            b"",
        )
        .await;
    assert_eq!(own.status, 503, "{}", own.body);
    // A name re-bound to 127.0.0.1 arrives with its own Host: refused without a token.
    let rebound = http
        .send_with(
            "GET",
            "/api/v1/lattice",
            &[("Host", "evil.example:8800")],
            b"",
        )
        .await;
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    let localhost = format!("localhost:{}", server.address().port());
    let by_name = http
        .send_with(
            "GET",
            "/api/v1/lattice",
            &[("Host", localhost.as_str())],
            b"",
        )
        .await;
    assert_eq!(by_name.status, 200, "{}", by_name.body);
    server.stop().await;
}
