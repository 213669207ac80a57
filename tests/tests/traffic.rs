//! What a node reports of its load (issue 19): its heartbeats carry the machine's CPUs and
//! memory, and each component's requests over the last seconds (rate, latency, errors, in
//! flight), measured on a real node serving real HTTP.

use std::time::{Duration, Instant};

use futures::StreamExt;
use trellis_lattice::event::{self, CloudEvent, Event};
use trellis_tests::{http_get, TestLattice};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_host_resources_and_component_traffic() {
    let (lattice, _api, _manifest, address) = TestLattice::with_echo_deployed().await.unwrap();

    let requests = 30;
    let served = tokio::task::spawn_blocking(move || {
        (0..requests)
            .filter(|i| {
                let path = format!("/load/{i}");
                matches!(
                    http_get(&address, &path, Duration::from_secs(10)),
                    Ok((200, _))
                )
            })
            .count()
    })
    .await
    .unwrap();
    assert_eq!(served, requests);

    let client = async_nats::connect(lattice.nats.url()).await.unwrap();
    let mut beats = client
        .subscribe(event::subject(&lattice.lattice, event::HOST_HEARTBEAT))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (resources, traffic) = loop {
        let msg = tokio::time::timeout_at(deadline.into(), beats.next())
            .await
            .expect("a heartbeat with echo's traffic within 10 s")
            .unwrap();
        let cloud: CloudEvent = serde_json::from_slice(&msg.payload).unwrap();
        let Ok(Event::HostHeartbeat(beat)) = cloud.decode() else {
            continue;
        };
        let echo = beat.components.iter().find(|c| c.id == "echo-echo");
        if let (Some(resources), Some(traffic)) =
            (beat.resources.clone(), echo.and_then(|c| c.traffic.clone()))
        {
            break (resources, traffic);
        }
    };
    assert!(resources.cpus >= 1, "{resources:?}");
    assert!((0.0..=1.0).contains(&resources.cpu_use), "{resources:?}");
    if cfg!(target_os = "linux") {
        assert!(resources.memory_total_bytes > 0, "{resources:?}");
        assert!(
            resources.memory_available_bytes <= resources.memory_total_bytes,
            "{resources:?}"
        );
    }
    // 30 requests within the 10 s window: at least 3 a second, all answered, none in flight.
    assert!(traffic.requests_per_second >= 3.0, "{traffic:?}");
    assert!(
        traffic.p50_ms > 0.0 && traffic.p50_ms <= traffic.p99_ms,
        "{traffic:?}"
    );
    assert_eq!(traffic.error_rate, 0.0, "{traffic:?}");
    assert_eq!(traffic.in_flight, 0, "{traffic:?}");
    assert_eq!(traffic.window_seconds, 10, "{traffic:?}");
    // The 30 requests themselves, counted (the rate of a component younger than the window is
    // over the seconds it has run, so rate × window would overstate them).
    assert_eq!(traffic.requests, 30, "{traffic:?}");
}
