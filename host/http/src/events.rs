//! `GET /api/v1/events`: the lattice's events and the apps' status changes as server-sent
//! events, straight from their NATS subjects.
//!
//! Four event names: `ready` once the subscriptions are in place (a client that acts after
//! it cannot miss what its action causes), `lattice` with a CloudEvent from
//! `wasmbus.evt.{lattice}.>`, `status` with `{"app", "status"}` from
//! `wadm.status.{lattice}.{app}`, `health` with the CloudEvent a controller publishes on
//! `wadm.evt.{lattice}.host_health_changed` when a host's health changes, and `rollout` with
//! the one an app's owner publishes on `wadm.evt.{lattice}.rollout_changed` when its rollout
//! takes a step, rolls back or ends.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::error;
use crate::gateway::Gateway;

/// A comment this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn stream(State(g): State<Arc<Gateway>>) -> Response {
    let lattice = g.lattice().to_string();
    let events_subject = trellis_lattice::event::all_subjects(&lattice);
    let status_subject = g.api().status_updates(">");
    let health_subject = g.api().manifest_event("host_health_changed");
    let rollout_subject = g.api().manifest_event("rollout_changed");
    let subscribe = async {
        let events = g.client().subscribe(events_subject.clone()).await?;
        let statuses = g.client().subscribe(status_subject.clone()).await?;
        let health = g.client().subscribe(health_subject.clone()).await?;
        let rollouts = g.client().subscribe(rollout_subject.clone()).await?;
        // The server has the subscriptions once a round trip has passed.
        g.client().flush().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((events, statuses, health, rollouts))
    };
    let (events, statuses, health, rollouts) = match subscribe.await {
        Ok(subs) => subs,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                &format!("cannot subscribe to {events_subject} and {status_subject}: {e}"),
            )
        }
    };
    let events = events.map(|msg| {
        let event = serde_json::from_slice::<serde_json::Value>(&msg.payload)
            .unwrap_or_else(|_| String::from_utf8_lossy(&msg.payload).into());
        Event::default()
            .event("lattice")
            .json_data(event)
            .expect("JSON values serialise")
    });
    let health = health.map(|msg| {
        let event = serde_json::from_slice::<serde_json::Value>(&msg.payload)
            .unwrap_or(serde_json::Value::Null);
        Event::default()
            .event("health")
            .json_data(event)
            .expect("JSON values serialise")
    });
    let rollouts = rollouts.map(|msg| {
        let event = serde_json::from_slice::<serde_json::Value>(&msg.payload)
            .unwrap_or(serde_json::Value::Null);
        Event::default()
            .event("rollout")
            .json_data(event)
            .expect("JSON values serialise")
    });
    let prefix = status_subject.trim_end_matches('>').to_string();
    let statuses = statuses.map(move |msg| {
        let app = msg
            .subject
            .as_str()
            .strip_prefix(&prefix)
            .unwrap_or_default();
        let status = serde_json::from_slice::<serde_json::Value>(&msg.payload)
            .unwrap_or(serde_json::Value::Null);
        Event::default()
            .event("status")
            .json_data(serde_json::json!({ "app": app, "status": status }))
            .expect("JSON values serialise")
    });
    let ready = Event::default()
        .event("ready")
        .json_data(serde_json::json!({ "lattice": lattice }))
        .expect("JSON values serialise");
    let all = futures::stream::once(async { ready })
        .chain(futures::stream::select_all([
            events.boxed(),
            statuses.boxed(),
            health.boxed(),
            rollouts.boxed(),
        ]))
        .map(Ok::<_, Infallible>);
    Sse::new(all)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}
