//! The control interface v1 as a node answers it: subscriptions, request parsing and replies.
//!
//! Host-addressed subjects (`….{verb}.{host_id}`) and `host.ping` reach this node alone or every
//! node; lattice-wide writes (`link.*`, `config.*`) go through a queue group so one node handles
//! each request. Requests are handled one at a time in arrival order, so a `link.put` followed by
//! a `link.del` is applied in that order; slow work (compiling a component) runs in its own task.

use std::sync::Arc;

use anyhow::Context as _;
use async_nats::{Message, Subscriber};
use futures::stream::{select_all, SelectAll};
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use trellis_lattice::ctl::{
    link_key, CtlResponse, DeleteLinkRequest, HostLabel, HostLabelIdentifier, Link,
    ScaleComponentCommand, StartProviderCommand, StopProviderCommand,
};
use trellis_lattice::event::{self, ConfigEvent, LinkdefDeleted};

use crate::host::Host;
use crate::store::ConfigValues;

/// Queue group for lattice-wide writes, so one node handles each.
fn queue_group(lattice: &str) -> String {
    format!("trellis-node.{lattice}")
}

pub(crate) async fn subscribe(host: &Host) -> anyhow::Result<SelectAll<Subscriber>> {
    let prefix = host.subjects.prefix();
    let client = &host.client;
    let group = queue_group(&host.lattice);
    let subscriptions = vec![
        client.subscribe(host.subjects.host_ping()).await,
        // Every host-addressed verb: component.scale, provider.start, host.get, label.put, …
        client.subscribe(format!("{prefix}.*.*.{}", host.id)).await,
        client
            .queue_subscribe(format!("{prefix}.link.*"), group.clone())
            .await,
        client
            .queue_subscribe(format!("{prefix}.config.>"), group)
            .await,
    ];
    let subscriptions = subscriptions
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .context("cannot subscribe to the control interface")?;
    Ok(select_all(subscriptions))
}

/// Answers control requests until the task is aborted.
pub(crate) async fn serve(
    host: Arc<Host>,
    mut requests: SelectAll<Subscriber>,
    stop_requested: watch::Sender<bool>,
) {
    let prefix = format!("{}.", host.subjects.prefix());
    while let Some(msg) = requests.next().await {
        let Some(operation) = msg
            .subject
            .as_str()
            .strip_prefix(&prefix)
            .map(str::to_owned)
        else {
            continue;
        };
        debug!(host_id = %host.id, operation, "control request");
        let request = Request {
            host: &host,
            msg: &msg,
        };
        let parts: Vec<&str> = operation.splitn(3, '.').collect();
        match parts.as_slice() {
            ["host", "ping"] => request.reply(CtlResponse::ok(host.ping())).await,
            ["host", "get", _] => request.reply(CtlResponse::ok(host.inventory())).await,
            ["host", "stop", _] => {
                info!(host_id = %host.id, "stop requested over the control interface");
                request.reply(CtlResponse::success("stopping")).await;
                let _ = stop_requested.send(true);
            }
            ["component", "scale", _] => scale_component(request).await,
            ["component", "update", _] => {
                request
                    .reply(CtlResponse::<()>::error(
                        "component.update is not supported by this node yet; send component.scale with allow_update",
                    ))
                    .await
            }
            ["provider", "start", _] => start_provider(request).await,
            ["provider", "stop", _] => stop_provider(request).await,
            ["label", "put", _] => put_label(request).await,
            ["label", "del", _] => delete_label(request).await,
            ["link", "put"] => put_link(request).await,
            ["link", "del"] => delete_link(request).await,
            ["link", "get"] => get_links(request).await,
            ["config", "put", name] => put_config(request, name).await,
            ["config", "get", name] => get_config(request, name).await,
            ["config", "del", name] => delete_config(request, name).await,
            _ => {
                request
                    .reply(CtlResponse::<()>::error(format!(
                        "unknown control operation {operation:?}"
                    )))
                    .await
            }
        }
    }
}

struct Request<'a> {
    host: &'a Arc<Host>,
    msg: &'a Message,
}

impl Request<'_> {
    /// The body as a `T`, or `None` after replying with what is wrong with it.
    async fn parse<T: DeserializeOwned>(&self, what: &str) -> Option<T> {
        match serde_json::from_slice(&self.msg.payload) {
            Ok(value) => Some(value),
            Err(e) => {
                self.reply(CtlResponse::<()>::error(format!(
                    "invalid {what} request: {e}"
                )))
                .await;
                None
            }
        }
    }

    async fn reply<T: Serialize>(&self, response: CtlResponse<T>) {
        let Some(reply) = self.msg.reply.clone() else {
            return;
        };
        if !response.success {
            debug!(host_id = %self.host.id, subject = %self.msg.subject, message = %response.message, "request refused");
        }
        let payload = match serde_json::to_vec(&response) {
            Ok(payload) => payload,
            Err(e) => {
                warn!(host_id = %self.host.id, error = %e, "cannot encode a control reply");
                return;
            }
        };
        if let Err(e) = self.host.client.publish(reply, payload.into()).await {
            warn!(host_id = %self.host.id, error = %e, "cannot send a control reply");
        }
    }
}

async fn scale_component(request: Request<'_>) {
    let Some(cmd) = request
        .parse::<ScaleComponentCommand>("component.scale")
        .await
    else {
        return;
    };
    if cmd.component_id.is_empty() {
        request
            .reply(CtlResponse::<()>::error(
                "component.scale needs a component_id",
            ))
            .await;
        return;
    }
    if cmd.component_ref.is_empty()
        && cmd.max_instances > 0
        && request.host.components.get(&cmd.component_id).is_none()
    {
        request
            .reply(CtlResponse::<()>::error(format!(
                "component.scale of {} needs a component_ref (file:///path/to/component.wasm)",
                cmd.component_id
            )))
            .await;
        return;
    }
    // The ticket is taken here, in arrival order; loading runs in its own task.
    let ticket = request.host.scale_ticket(&cmd.component_id);
    request.reply(CtlResponse::success("accepted")).await;
    tokio::spawn(request.host.clone().scale_component(cmd, ticket));
}

async fn start_provider(request: Request<'_>) {
    let Some(cmd) = request
        .parse::<StartProviderCommand>("provider.start")
        .await
    else {
        return;
    };
    if cmd.provider_id.is_empty() {
        request
            .reply(CtlResponse::<()>::error(
                "provider.start needs a provider_id",
            ))
            .await;
        return;
    }
    match request.host.start_provider(cmd).await {
        Ok(failures) if failures.is_empty() => request.reply(CtlResponse::success("started")).await,
        // The provider runs (and retries its listeners every heartbeat); the reply says what
        // does not work yet, as the health_check_failed event does.
        Ok(failures) => {
            let message = format!("started, but {}", failures.join("; "));
            request.reply(CtlResponse::success(message)).await
        }
        Err(error) => request.reply(CtlResponse::<()>::error(error)).await,
    }
}

async fn stop_provider(request: Request<'_>) {
    let Some(cmd) = request.parse::<StopProviderCommand>("provider.stop").await else {
        return;
    };
    if request.host.stop_provider(&cmd.provider_id).await {
        request.reply(CtlResponse::success("stopped")).await;
    } else {
        request
            .reply(CtlResponse::<()>::error(format!(
                "provider {} is not running on this host",
                cmd.provider_id
            )))
            .await;
    }
}

async fn put_label(request: Request<'_>) {
    let Some(label) = request.parse::<HostLabel>("label.put").await else {
        return;
    };
    request.host.put_label(label.key, label.value).await;
    request.reply(CtlResponse::success("")).await;
}

async fn delete_label(request: Request<'_>) {
    let Some(label) = request.parse::<HostLabelIdentifier>("label.del").await else {
        return;
    };
    if request.host.delete_label(&label.key).await {
        request.reply(CtlResponse::success("")).await;
    } else {
        request
            .reply(CtlResponse::success(format!(
                "label {} was not set",
                label.key
            )))
            .await;
    }
}

async fn put_link(request: Request<'_>) {
    let Some(link) = request.parse::<Link>("link.put").await else {
        return;
    };
    if let Err(problem) = check_link(&link) {
        request
            .reply(CtlResponse::<()>::error(format!("invalid link: {problem}")))
            .await;
        return;
    }
    match request.host.stores.put_link(&link).await {
        Ok(()) => {
            request.reply(CtlResponse::success("")).await;
            request.host.publish_event(event::LINKDEF_SET, &link).await;
        }
        Err(e) => {
            request
                .reply(CtlResponse::<()>::error(format!("{e:#}")))
                .await
        }
    }
}

async fn delete_link(request: Request<'_>) {
    let Some(del) = request.parse::<DeleteLinkRequest>("link.del").await else {
        return;
    };
    let key = link_key(
        &del.source_id,
        &del.name,
        &del.wit_namespace,
        &del.wit_package,
    );
    match request.host.stores.delete_link(&key).await {
        Ok(existed) => {
            request.reply(CtlResponse::success("")).await;
            if existed {
                let data = LinkdefDeleted {
                    source_id: del.source_id,
                    name: del.name,
                    wit_namespace: del.wit_namespace,
                    wit_package: del.wit_package,
                };
                request
                    .host
                    .publish_event(event::LINKDEF_DELETED, data)
                    .await;
            }
        }
        Err(e) => {
            request
                .reply(CtlResponse::<()>::error(format!("{e:#}")))
                .await
        }
    }
}

async fn get_links(request: Request<'_>) {
    match request.host.stores.links().await {
        Ok(links) => request.reply(CtlResponse::ok(links)).await,
        Err(e) => {
            request
                .reply(CtlResponse::<()>::error(format!("{e:#}")))
                .await
        }
    }
}

async fn put_config(request: Request<'_>, name: &str) {
    let Some(values) = request.parse::<ConfigValues>("config.put").await else {
        return;
    };
    if let Err(problem) = check_key(name) {
        request
            .reply(CtlResponse::<()>::error(format!(
                "invalid config name {name:?}: {problem}"
            )))
            .await;
        return;
    }
    match request.host.stores.put_config(name, &values).await {
        Ok(()) => {
            request.reply(CtlResponse::success("")).await;
            let data = ConfigEvent {
                config_name: name.into(),
            };
            request.host.publish_event(event::CONFIG_SET, data).await;
        }
        Err(e) => {
            request
                .reply(CtlResponse::<()>::error(format!("{e:#}")))
                .await
        }
    }
}

async fn get_config(request: Request<'_>, name: &str) {
    match request.host.stores.config(name).await {
        Ok(Some(values)) => request.reply(CtlResponse::ok(values)).await,
        // Like wasmCloud: a missing config reads as empty.
        Ok(None) => {
            let mut response = CtlResponse::ok(ConfigValues::new());
            response.message = format!("config {name} not found");
            request.reply(response).await
        }
        Err(e) => {
            request
                .reply(CtlResponse::<()>::error(format!("{e:#}")))
                .await
        }
    }
}

async fn delete_config(request: Request<'_>, name: &str) {
    match request.host.stores.delete_config(name).await {
        Ok(()) => {
            request.reply(CtlResponse::success("")).await;
            let data = ConfigEvent {
                config_name: name.into(),
            };
            request
                .host
                .publish_event(event::CONFIG_DELETED, data)
                .await;
        }
        Err(e) => {
            request
                .reply(CtlResponse::<()>::error(format!("{e:#}")))
                .await
        }
    }
}

fn check_link(link: &Link) -> Result<(), String> {
    for (field, value) in [
        ("source_id", &link.source_id),
        ("target", &link.target),
        ("name", &link.name),
        ("wit_namespace", &link.wit_namespace),
        ("wit_package", &link.wit_package),
    ] {
        if value.is_empty() {
            return Err(format!("{field} is empty"));
        }
        check_key(value).map_err(|problem| format!("{field} {value:?} {problem}"))?;
    }
    if link.interfaces.is_empty() {
        return Err("interfaces is empty".into());
    }
    Ok(())
}

/// KV keys allow letters, digits and `-_=/.`; ids and names become parts of keys.
fn check_key(value: &str) -> Result<(), &'static str> {
    let valid = !value.is_empty()
        && !value.starts_with('.')
        && !value.ends_with('.')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=/.".contains(c));
    if valid {
        Ok(())
    } else {
        Err("may hold only letters, digits and -_=/. (and not start or end with a dot)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_must_make_valid_keys() {
        let mut link = Link {
            source_id: "http-server".into(),
            target: "echo".into(),
            name: "default".into(),
            wit_namespace: "wasi".into(),
            wit_package: "http".into(),
            interfaces: vec!["incoming-handler".into()],
            ..Default::default()
        };
        assert!(check_link(&link).is_ok());
        link.source_id = "bad id".into();
        assert!(check_link(&link).unwrap_err().contains("source_id"));
        link.source_id = "ok".into();
        link.interfaces.clear();
        assert!(check_link(&link).is_err());
    }
}
