//! `trellis.api.{lattice}.rollout.{get,promote,abort}.{name}`: a rollout as stored, and what a
//! person may do to one. Promote and abort only mark the stored rollout; the app's owner acts
//! on the mark at its next look (within a second while a step holds).

use trellis_lattice::api::{RolloutAction, RolloutRequest, RolloutResponse};

use crate::bodies::parse_body;
use crate::store::{ManifestStore, StoreError};

/// Answers one rollout request.
pub async fn answer(
    store: &ManifestStore,
    action: RolloutAction,
    name: &str,
    payload: &[u8],
) -> RolloutResponse {
    let request: RolloutRequest = match parse_body("rollout", payload) {
        Ok(request) => request,
        Err(message) => return failed(name, StoreError::Nats(message)),
    };
    let outcome = match action {
        RolloutAction::Get => match store.get(name).await {
            Ok(Some((app, _))) => match app.rollout {
                Some(rollout) => Ok(rollout),
                None => Err(StoreError::NoRollout(name.into())),
            },
            Ok(None) => Err(StoreError::NotFound(name.into())),
            Err(e) => Err(e),
        },
        RolloutAction::Promote => {
            store
                .change_rollout(name, "promote", |r| {
                    r.promoted = true;
                })
                .await
        }
        RolloutAction::Abort => {
            let why = request
                .reason
                .clone()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| "no reason given".into());
            store
                .change_rollout(name, "abort", |r| r.abort_requested = Some(why.clone()))
                .await
        }
    };
    match outcome {
        Ok(rollout) => {
            let message = match action {
                RolloutAction::Get => format!(
                    "{name}: {} → {} by {}, {} at step {}",
                    rollout.from, rollout.to, rollout.strategy, rollout.state, rollout.step
                ),
                RolloutAction::Promote => format!(
                    "{name}: promoted past step {}; the owner moves on at its next look",
                    rollout.step
                ),
                RolloutAction::Abort => format!(
                    "{name}: aborting; every request goes back to {}, then {} is removed",
                    rollout.from, rollout.to
                ),
            };
            RolloutResponse {
                result: "success".into(),
                code: None,
                message,
                name: name.into(),
                rollout: Some(rollout),
            }
        }
        Err(e) => failed(name, e),
    }
}

fn failed(name: &str, e: StoreError) -> RolloutResponse {
    let code = e.code();
    RolloutResponse {
        result: if code == trellis_lattice::ErrorCode::NotFound {
            "notfound".into()
        } else {
            "error".into()
        },
        code: Some(code),
        message: e.to_string(),
        name: name.into(),
        rollout: None,
    }
}
