//! wadm's manifest events: when the API deploys an app, `manifest_published` (the deployed
//! version's manifest as data); when it undeploys or deletes one, `manifest_unpublished`
//! (`{"name": …}`). CloudEvents 1.0 on `wadm.evt.{lattice}.{kind}`, of type `com.wadm.{kind}`
//! and source `wadm`, as wadm 0.21 publishes them, so tools that watch wadm's events see
//! trellis's. They are published before the request is answered, on the same connection, so a
//! client that has its answer and watches the subject gets the event too.
//!
//! The events say what happened; the controller itself does not act on them (its reconcile
//! loop reads the manifest store). wadm publishes them through JetStream into its own event
//! stream; trellis has no such stream and publishes them plainly.

use trellis_lattice::api::{
    ManifestUnpublished, Subjects, MANIFEST_EVENT_SOURCE, MANIFEST_EVENT_TYPE_PREFIX,
    MANIFEST_PUBLISHED, MANIFEST_UNPUBLISHED,
};
use trellis_lattice::event::CloudEvent;
use trellis_lattice::Manifest;

/// Publishes a lattice's manifest events.
#[derive(Clone)]
pub struct ManifestEvents {
    client: async_nats::Client,
    lattice: String,
    subjects: Subjects,
}

impl ManifestEvents {
    pub fn new(client: async_nats::Client, lattice: &str) -> Self {
        Self {
            client,
            lattice: lattice.to_string(),
            subjects: Subjects::new(lattice),
        }
    }

    /// `manifest_published` with `manifest`, the version just deployed, as the data.
    pub async fn published(&self, manifest: &Manifest) {
        self.send(
            MANIFEST_PUBLISHED,
            manifest_event(MANIFEST_PUBLISHED, manifest),
        )
        .await
    }

    /// `manifest_unpublished` for app `name`.
    pub async fn unpublished(&self, name: &str) {
        let data = ManifestUnpublished {
            name: name.to_string(),
        };
        self.send(
            MANIFEST_UNPUBLISHED,
            manifest_event(MANIFEST_UNPUBLISHED, &data),
        )
        .await
    }

    async fn send(&self, kind: &str, event: CloudEvent) {
        let subject = self.subjects.manifest_event(kind);
        let body = match serde_json::to_vec(&event) {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(lattice = %self.lattice, "cannot encode the {kind} event: {e}");
                return;
            }
        };
        if let Err(e) = self.client.publish(subject, body.into()).await {
            tracing::warn!(lattice = %self.lattice, "cannot publish the {kind} event: {e}");
        }
    }
}

/// The kind of event a controller publishes when a host's health changes, on
/// `wadm.evt.{lattice}.host_health_changed` (beside wadm's manifest events; wadm's tools ignore
/// kinds they do not know).
pub const HOST_HEALTH_CHANGED: &str = "host_health_changed";

/// Publishes a change of a host's health (see [`crate::health`]). Every controller of the
/// lattice judges health and says so: a watcher may see a change once per controller, each
/// with its `source`.
pub async fn host_health_changed(
    client: &async_nats::Client,
    lattice: &str,
    controller: &str,
    change: &crate::health::HealthChange,
) {
    let event = CloudEvent {
        event_type: format!("com.trellis.{HOST_HEALTH_CHANGED}"),
        ..CloudEvent::new(HOST_HEALTH_CHANGED, controller, change)
    };
    let subject = Subjects::new(lattice).manifest_event(HOST_HEALTH_CHANGED);
    let body = serde_json::to_vec(&event).expect("health changes serialise");
    if let Err(e) = client.publish(subject, body.into()).await {
        tracing::warn!(
            lattice,
            "cannot publish the {HOST_HEALTH_CHANGED} event: {e}"
        );
    }
}

/// The event of a rollout taking a step, rolling back or ending (type
/// `com.trellis.rollout_changed`): data `{app, news, rollout}`, published by the app's owner
/// once the step is stored.
pub const ROLLOUT_CHANGED: &str = "rollout_changed";

/// Publishes a rollout's change (see [`crate::rollout`]).
pub async fn rollout_changed(
    client: &async_nats::Client,
    lattice: &str,
    controller: &str,
    app: &str,
    rollout: &trellis_lattice::api::Rollout,
    news: &str,
) {
    let data = serde_json::json!({ "app": app, "news": news, "rollout": rollout });
    let event = CloudEvent {
        event_type: format!("com.trellis.{ROLLOUT_CHANGED}"),
        ..CloudEvent::new(ROLLOUT_CHANGED, controller, data)
    };
    let subject = Subjects::new(lattice).manifest_event(ROLLOUT_CHANGED);
    let body = serde_json::to_vec(&event).unwrap_or_default();
    if let Err(e) = client.publish(subject, body.into()).await {
        tracing::warn!(lattice, "cannot publish the {ROLLOUT_CHANGED} event: {e}");
    }
}

/// The CloudEvent wadm sends for `kind` with `data`.
pub fn manifest_event(kind: &str, data: impl serde::Serialize) -> CloudEvent {
    CloudEvent {
        event_type: format!("{MANIFEST_EVENT_TYPE_PREFIX}{kind}"),
        ..CloudEvent::new(kind, MANIFEST_EVENT_SOURCE, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_wadms_type_source_and_data() {
        let manifest = Manifest::parse(
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: echo\n  annotations:\n    version: v1\nspec:\n  components: []\n",
        )
        .unwrap();
        let published =
            serde_json::to_value(manifest_event(MANIFEST_PUBLISHED, &manifest)).unwrap();
        assert_eq!(published["type"], "com.wadm.manifest_published");
        assert_eq!(published["source"], "wadm");
        assert_eq!(published["specversion"], "1.0");
        assert_eq!(published["datacontenttype"], "application/json");
        // The manifest itself is the data (wadm flattens it into the event's payload).
        assert_eq!(published["data"]["metadata"]["name"], "echo");
        assert_eq!(published["data"]["apiVersion"], "core.oam.dev/v1beta1");

        let gone = ManifestUnpublished {
            name: "echo".into(),
        };
        let unpublished =
            serde_json::to_value(manifest_event(MANIFEST_UNPUBLISHED, &gone)).unwrap();
        assert_eq!(unpublished["type"], "com.wadm.manifest_unpublished");
        assert_eq!(unpublished["data"], serde_json::json!({"name": "echo"}));
    }
}
