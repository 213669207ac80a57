//! Scaling components: each `component.scale` is accepted in arrival order, and the newest
//! for a component wins. Reading and compiling an image runs in a task of its own, before the
//! command's turn, so that a slow pull holds up nothing else; the outcome is published as
//! `component_scaled` or `component_scale_failed`.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use tracing::{debug, info, warn, Instrument as _};
use trellis_lattice::ctl::ScaleComponentCommand;
use trellis_lattice::event;

use super::Host;
use crate::component::RunningComponent;
use crate::engine::LoadedComponent;

impl Host {
    /// Takes a place in line for scaling `component_id`; call in arrival order.
    pub(super) fn scale_ticket(&self, component_id: &str) -> ScaleTicket {
        let mut queues = self
            .scale_queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let queue = queues.entry(component_id.to_string()).or_default();
        queue.latest += 1;
        ScaleTicket {
            seq: queue.latest,
            lock: queue.lock.clone(),
        }
    }

    fn is_latest(&self, component_id: &str, ticket: &ScaleTicket) -> bool {
        self.scale_queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(component_id)
            .is_some_and(|queue| queue.latest == ticket.seq)
    }

    /// Whether a newer command for `component_id` took its place in line after `ticket`: then
    /// this one is dropped (scaling is declarative: the newest is the one wanted, and it
    /// publishes the outcome).
    pub(super) fn superseded(&self, component_id: &str, ticket: &ScaleTicket) -> bool {
        let latest = self.is_latest(component_id, ticket);
        if !latest {
            debug!(host_id = %self.id, component_id, "scale command superseded by a newer one");
        }
        !latest
    }

    /// Applies a scale command (already validated) and publishes its outcome:
    /// `component_scaled` or `component_scale_failed`. A command overtaken by a newer one for
    /// the same component is dropped: scaling is declarative, the newest count is the one
    /// wanted, and the newer command publishes the outcome.
    pub(super) async fn scale_in_turn(
        self: Arc<Self>,
        cmd: ScaleComponentCommand,
        ticket: ScaleTicket,
    ) {
        let span = tracing::info_span!(
            "scale",
            host_id = %self.id,
            component_id = %cmd.component_id,
            count = cmd.max_instances
        );
        // The image is read and compiled before taking the component's place in line: a slow
        // pull must not hold up a newer command for the same component. Which command applies
        // is still decided in line, below; a superseded one loads nothing it can avoid and
        // publishes nothing.
        if self.superseded(&cmd.component_id, &ticket) {
            return;
        }
        let preloaded = match self.components.get(&cmd.component_id) {
            _ if cmd.max_instances == 0 => None,
            Some(running)
                if cmd.component_ref.is_empty()
                    || running.image_ref == cmd.component_ref
                    || !cmd.allow_update =>
            {
                None
            }
            _ => Some(
                self.load_image(&cmd.component_id, &cmd.component_ref)
                    .instrument(span.clone())
                    .await,
            ),
        };
        let _serialised = ticket.turn().await;
        if self.superseded(&cmd.component_id, &ticket) {
            return;
        }
        let outcome = self
            .apply_scale(&cmd, preloaded)
            .instrument(span.clone())
            .await;
        self.publish_outcome(&cmd, outcome, &span).await;
    }

    /// Publishes what came of `cmd`: `component_scaled` with the image now running, or
    /// `component_scale_failed` with why.
    pub(super) async fn publish_outcome(
        &self,
        cmd: &ScaleComponentCommand,
        outcome: Result<String, String>,
        span: &tracing::Span,
    ) {
        match outcome {
            Ok(image_ref) => {
                span.in_scope(|| info!(%image_ref, "component scaled"));
                let annotations = cmd.annotations.clone().unwrap_or_default();
                self.publish_scaled(
                    &cmd.component_id,
                    &image_ref,
                    annotations,
                    cmd.max_instances,
                )
                .await;
            }
            Err(error) => {
                span.in_scope(|| warn!(%error, "scale failed"));
                self.publish_scale_failed(cmd, error).await;
            }
        }
    }

    /// Changes what runs; returns the image ref now running (or last run, for a count of 0).
    /// `preloaded` is `cmd`'s image, if it was loaded before the command's turn came.
    pub(super) async fn apply_scale(
        &self,
        cmd: &ScaleComponentCommand,
        preloaded: Option<Result<LoadedComponent, String>>,
    ) -> Result<String, String> {
        if cmd.max_instances == 0 {
            self.stop_taking_calls(&cmd.component_id);
            let stopped = self.components.remove(&cmd.component_id);
            return Ok(stopped.map_or_else(|| cmd.component_ref.clone(), |c| c.image_ref.clone()));
        }
        self.check_capacity(cmd)?;
        let (image_ref, loaded) = match self.components.get(&cmd.component_id) {
            Some(running)
                if cmd.component_ref.is_empty() || running.image_ref == cmd.component_ref =>
            {
                (running.image_ref.clone(), running.loaded.clone())
            }
            Some(running) if !cmd.allow_update => {
                return Err(format!(
                    "component {} already runs image {} on this host; scale it with allow_update to change it to {}",
                    cmd.component_id, running.image_ref, cmd.component_ref
                ));
            }
            _ => {
                let loaded = match preloaded {
                    Some(loaded) => loaded?,
                    // What runs changed while the command waited: load it now.
                    None => {
                        self.load_image(&cmd.component_id, &cmd.component_ref)
                            .await?
                    }
                };
                (cmd.component_ref.clone(), loaded)
            }
        };
        let annotations = cmd.annotations.clone().unwrap_or_default();
        let env = self
            .component_env(&cmd.component_id, &annotations, &cmd.config)
            .await?;
        // A new count gets a new semaphore: requests in flight finish under the old one. The
        // traffic figures carry over: a new count is no new component.
        let traffic = self
            .components
            .get(&cmd.component_id)
            .map(|running| running.traffic.clone())
            .unwrap_or_default();
        self.components.insert(Arc::new(RunningComponent::new(
            cmd.component_id.clone(),
            image_ref.clone(),
            annotations,
            cmd.max_instances,
            cmd.config.clone(),
            loaded,
            env,
            self.services.clone(),
            traffic,
        )));
        self.take_calls(&cmd.component_id).await;
        Ok(image_ref)
    }

    /// Reads and compiles `image_ref`, to run as `component_id`.
    pub(super) async fn load_image(
        &self,
        component_id: &str,
        image_ref: &str,
    ) -> Result<LoadedComponent, String> {
        self.runtime
            .load(image_ref)
            .await
            .map_err(|e| format!("cannot start {component_id} from {image_ref}: {e}"))
    }

    /// Refuses a scale that would take the instances this node runs (every component's count
    /// together) past its limit.
    fn check_capacity(&self, cmd: &ScaleComponentCommand) -> Result<(), String> {
        let others: u64 = self
            .components
            .all()
            .iter()
            .filter(|c| c.id != cmd.component_id)
            .map(|c| u64::from(c.max_instances))
            .sum();
        let total = others + u64::from(cmd.max_instances);
        let limit = self.limits.max_node_instances;
        if total > u64::from(limit) {
            return Err(format!(
                "scaling {} to {} would run {total} instances on this node, over its limit of {limit} (max node instances); place it on another node or raise the limit",
                cmd.component_id, cmd.max_instances
            ));
        }
        Ok(())
    }

    async fn publish_scaled(
        &self,
        component_id: &str,
        image_ref: &str,
        annotations: BTreeMap<String, String>,
        max_instances: u32,
    ) {
        let data = event::ComponentScaled {
            annotations,
            host_id: self.id.clone(),
            image_ref: image_ref.into(),
            max_instances,
            component_id: component_id.into(),
        };
        self.publish_event(event::COMPONENT_SCALED, data).await;
        self.changed();
    }

    pub(super) async fn publish_scale_failed(&self, cmd: &ScaleComponentCommand, error: String) {
        let data = event::ComponentScaleFailed {
            annotations: cmd.annotations.clone().unwrap_or_default(),
            host_id: self.id.clone(),
            image_ref: cmd.component_ref.clone(),
            max_instances: cmd.max_instances,
            component_id: cmd.component_id.clone(),
            error,
        };
        self.publish_event(event::COMPONENT_SCALE_FAILED, data)
            .await;
    }
}

/// The scale commands of one component: the newest ticket, and the lock they take in turn.
#[derive(Default)]
pub(super) struct ScaleQueue {
    latest: u64,
    lock: Arc<tokio::sync::Mutex<()>>,
}

/// A scale command's place in its component's line.
pub(super) struct ScaleTicket {
    seq: u64,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl ScaleTicket {
    /// Waits until no other command of the component is being applied; holds its turn while
    /// the guard lives.
    pub(super) async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }
}
