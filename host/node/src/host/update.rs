//! Updating a component (`component.update`): the same component id runs from another image,
//! at the count it runs with. An update is a scale whose count is the current one: it takes
//! its place in the component's line among the scale commands (the newest wins), and its
//! outcome is published as theirs is (`component_scaled` with the new image, or
//! `component_scale_failed`).

use std::sync::Arc;

use tracing::Instrument as _;
use trellis_lattice::ctl::{ScaleComponentCommand, UpdateComponentCommand};

use super::scaling::ScaleTicket;
use super::Host;

impl Host {
    /// Applies an update (already checked: the component ran from another image when it
    /// arrived) once its turn comes.
    pub(super) async fn update_in_turn(
        self: Arc<Self>,
        cmd: UpdateComponentCommand,
        ticket: ScaleTicket,
    ) {
        let span = tracing::info_span!(
            "update",
            host_id = %self.id,
            component_id = %cmd.component_id,
            image_ref = %cmd.new_component_ref
        );
        if self.superseded(&cmd.component_id, &ticket) {
            return;
        }
        // Loaded before the turn, as a scale's image is: a slow pull holds up nobody.
        let loaded = self
            .load_image(&cmd.component_id, &cmd.new_component_ref)
            .instrument(span.clone())
            .await;
        let _serialised = ticket.turn().await;
        if self.superseded(&cmd.component_id, &ticket) {
            return;
        }
        // The count is read in turn, not on arrival: a scale applied meanwhile is kept.
        let Some(scale) = self.as_scale(&cmd) else {
            let scale = ScaleComponentCommand {
                component_ref: cmd.new_component_ref.clone(),
                component_id: cmd.component_id.clone(),
                annotations: cmd.annotations.clone(),
                host_id: self.id.clone(),
                ..Default::default()
            };
            let error = format!(
                "component {} stopped before its update to {} could apply",
                cmd.component_id, cmd.new_component_ref
            );
            self.publish_outcome(&scale, Err(error), &span).await;
            return;
        };
        let outcome = self
            .apply_scale(&scale, Some(loaded))
            .instrument(span.clone())
            .await;
        self.publish_outcome(&scale, outcome, &span).await;
    }

    /// The scale command that runs `cmd`'s image with the count, configs and (unless `cmd`
    /// names its own) annotations of the component as it runs now; `None` if it runs no more.
    fn as_scale(&self, cmd: &UpdateComponentCommand) -> Option<ScaleComponentCommand> {
        let running = self.components.get(&cmd.component_id)?;
        Some(ScaleComponentCommand {
            component_ref: cmd.new_component_ref.clone(),
            component_id: cmd.component_id.clone(),
            // wasmCloud replaces them with the command's (none: empty). Keeping the current
            // ones when none are given keeps a controller's ownership marks on the component.
            annotations: Some(
                cmd.annotations
                    .clone()
                    .unwrap_or_else(|| running.annotations.clone()),
            ),
            max_instances: running.max_instances,
            host_id: self.id.clone(),
            config: running.config_names.clone(),
            // A different image for a running component is the point of an update.
            allow_update: true,
        })
    }
}
