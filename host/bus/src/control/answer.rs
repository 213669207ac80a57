//! Each request answered: its body read, checked, handed to the hosts, and the reply sent.

use std::sync::Arc;

use async_nats::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{debug, warn};
use trellis_lattice::ctl::{
    CtlResponse, DeleteLinkRequest, HostLabel, HostLabelIdentifier, Link, ScaleComponentCommand,
    StartProviderCommand, StopProviderCommand, StoredClaims, UpdateComponentCommand,
};
use trellis_lattice::event::{self, ConfigEvent, LinkdefDeleted};
use trellis_lattice::ErrorCode;

use super::{auction, publish_event, LatticeHosts, Operation};
use crate::lattice_data::ConfigValues;

pub(super) async fn answer<H: LatticeHosts>(
    hosts: &Arc<H>,
    request: Request<'_>,
    operation: Operation<'_>,
    text: &str,
) {
    use Operation::*;
    match operation {
        HostPing => {
            for host in hosts.ping() {
                request.reply(CtlResponse::ok(host)).await;
            }
        }
        HostGet(host_id) => {
            if let Some(inventory) = hosts.inventory(host_id) {
                request.reply(CtlResponse::ok(inventory)).await;
            }
        }
        HostStop(host_id) => {
            request.reply(CtlResponse::success("stopping")).await;
            hosts.stop_host(host_id).await;
        }
        ComponentScale(host_id) => scale_component(hosts, request, host_id).await,
        ComponentUpdate(host_id) => update_component(hosts, request, host_id).await,
        ProviderStart(host_id) => start_provider(hosts.as_ref(), request, host_id).await,
        ProviderStop(host_id) => stop_provider(hosts.as_ref(), request, host_id).await,
        LabelPut(host_id) => put_label(hosts.as_ref(), request, host_id).await,
        LabelDel(host_id) => delete_label(hosts.as_ref(), request, host_id).await,
        LinkPut => put_link(hosts.as_ref(), request).await,
        LinkDel => delete_link(hosts.as_ref(), request).await,
        LinkGet => match hosts.lattice_data().links().await {
            Ok(links) => request.reply(CtlResponse::ok(links)).await,
            Err(e) => request.refuse(format!("{e:#}")).await,
        },
        ConfigPut(name) => put_config(hosts.as_ref(), request, name).await,
        ConfigGet(name) => get_config(hosts.as_ref(), request, name).await,
        ConfigDel(name) => delete_config(hosts.as_ref(), request, name).await,
        // wadm asks on every heartbeat and needs a list to record the host. The list holds the
        // JWT claims embedded in the lattice's components and providers: trellis components
        // carry none (they are plain wasm components, not signed wasmCloud actors) and its
        // providers are built in, so the true answer is an empty list.
        ClaimsGet => {
            let claims: Vec<StoredClaims> = Vec::new();
            request.reply(CtlResponse::ok(claims)).await
        }
        ComponentAuction => auction::component(hosts.as_ref(), request).await,
        ProviderAuction => auction::provider(hosts.as_ref(), request).await,
        Unknown(_) => {
            request
                .refuse(format!("unknown control operation {text:?}"))
                .await
        }
    }
}

pub(super) struct Request<'a> {
    pub(super) client: &'a async_nats::Client,
    pub(super) lattice: &'a str,
    pub(super) msg: &'a Message,
}

impl Request<'_> {
    /// The body as a `T`, or `None` after replying with what is wrong with it.
    pub(super) async fn parse<T: DeserializeOwned>(&self, what: &str) -> Option<T> {
        match serde_json::from_slice(&self.msg.payload) {
            Ok(value) => Some(value),
            Err(e) => {
                self.refuse(format!("invalid {what} request: {e}")).await;
                None
            }
        }
    }

    pub(super) async fn refuse(&self, message: impl Into<String>) {
        self.reply(CtlResponse::<()>::error(message)).await
    }

    pub(super) async fn reply<T: Serialize>(&self, response: CtlResponse<T>) {
        let Some(reply) = self.msg.reply.clone() else {
            return;
        };
        if !response.success {
            debug!(subject = %self.msg.subject, message = %response.message, "request refused");
        }
        let payload = match serde_json::to_vec(&response) {
            Ok(payload) => payload,
            Err(e) => {
                warn!(subject = %self.msg.subject, error = %e, "cannot encode a control reply");
                return;
            }
        };
        if let Err(e) = self.client.publish(reply, payload.into()).await {
            warn!(subject = %self.msg.subject, error = %e, "cannot send a control reply");
        }
    }

    /// Publishes the event of a lattice-wide change.
    async fn publish<H: LatticeHosts>(&self, hosts: &H, kind: &str, data: impl Serialize) {
        let source = hosts.event_source();
        publish_event(self.client, self.lattice, &source, kind, data).await;
    }
}

async fn scale_component<H: LatticeHosts>(hosts: &Arc<H>, request: Request<'_>, host_id: &str) {
    let Some(cmd) = request
        .parse::<ScaleComponentCommand>("component.scale")
        .await
    else {
        return;
    };
    if cmd.component_id.is_empty() {
        request.refuse("component.scale needs a component_id").await;
        return;
    }
    if cmd.component_ref.is_empty()
        && cmd.max_instances > 0
        && !hosts.runs_component(host_id, &cmd.component_id)
    {
        request
            .refuse(format!(
                "component.scale of {} needs a component_ref (file:///path/to/component.wasm)",
                cmd.component_id
            ))
            .await;
        return;
    }
    request.reply(CtlResponse::success("accepted")).await;
    hosts.scale_component(host_id, cmd).await;
}

/// `component.update`: another image for a running component, at the count it runs with. Like
/// wasmCloud, an update to the image already running changes nothing, and a component that
/// does not run here cannot be updated (it has no count to keep: scale it instead).
async fn update_component<H: LatticeHosts>(hosts: &Arc<H>, request: Request<'_>, host_id: &str) {
    let Some(cmd) = request
        .parse::<UpdateComponentCommand>("component.update")
        .await
    else {
        return;
    };
    if cmd.component_id.is_empty() {
        request
            .refuse("component.update needs a component_id")
            .await;
        return;
    }
    if cmd.new_component_ref.is_empty() {
        request
            .refuse(format!(
                "component.update of {} needs a new_component_ref (file:///path/to/component.wasm)",
                cmd.component_id
            ))
            .await;
        return;
    }
    match hosts.component_image(host_id, &cmd.component_id) {
        None => {
            let message = format!(
                "component {} is not running on host {host_id}, so there is nothing to update; start it with component.scale",
                cmd.component_id
            );
            request
                .reply(CtlResponse::<()>::error(message).with_code(ErrorCode::NotFound))
                .await
        }
        Some(image) if image == cmd.new_component_ref => {
            let message = format!("component {} already runs {image}", cmd.component_id);
            request.reply(CtlResponse::success(message)).await
        }
        Some(_) => {
            request.reply(CtlResponse::success("accepted")).await;
            hosts.update_component(host_id, cmd).await;
        }
    }
}

async fn start_provider<H: LatticeHosts>(hosts: &H, request: Request<'_>, host_id: &str) {
    let Some(cmd) = request
        .parse::<StartProviderCommand>("provider.start")
        .await
    else {
        return;
    };
    if cmd.provider_id.is_empty() {
        request.refuse("provider.start needs a provider_id").await;
        return;
    }
    match hosts.start_provider(host_id, cmd).await {
        Ok(failures) if failures.is_empty() => request.reply(CtlResponse::success("started")).await,
        // The provider runs (and retries what failed); the reply says what does not work yet,
        // as the health_check_failed event does.
        Ok(failures) => {
            let message = format!("started, but {}", failures.join("; "));
            request.reply(CtlResponse::success(message)).await
        }
        Err(error) => request.refuse(error).await,
    }
}

async fn stop_provider<H: LatticeHosts>(hosts: &H, request: Request<'_>, host_id: &str) {
    let Some(cmd) = request.parse::<StopProviderCommand>("provider.stop").await else {
        return;
    };
    if hosts.stop_provider(host_id, &cmd.provider_id).await {
        request.reply(CtlResponse::success("stopped")).await;
    } else {
        request
            .refuse(format!(
                "provider {} is not running on this host",
                cmd.provider_id
            ))
            .await;
    }
}

async fn put_label<H: LatticeHosts>(hosts: &H, request: Request<'_>, host_id: &str) {
    let Some(label) = request.parse::<HostLabel>("label.put").await else {
        return;
    };
    hosts.put_label(host_id, label.key, label.value).await;
    request.reply(CtlResponse::success("")).await;
}

async fn delete_label<H: LatticeHosts>(hosts: &H, request: Request<'_>, host_id: &str) {
    let Some(label) = request.parse::<HostLabelIdentifier>("label.del").await else {
        return;
    };
    let message = if hosts.delete_label(host_id, &label.key).await {
        String::new()
    } else {
        format!("label {} was not set", label.key)
    };
    request.reply(CtlResponse::success(message)).await;
}

async fn put_link<H: LatticeHosts>(hosts: &H, request: Request<'_>) {
    let Some(link) = request.parse::<Link>("link.put").await else {
        return;
    };
    if let Err(problem) = check_link(&link) {
        request.refuse(format!("invalid link: {problem}")).await;
        return;
    }
    match hosts.lattice_data().put_link(&link).await {
        Ok(()) => {
            request.reply(CtlResponse::success("")).await;
            request.publish(hosts, event::LINKDEF_SET, &link).await;
        }
        Err(e) => request.refuse(format!("{e:#}")).await,
    }
}

async fn delete_link<H: LatticeHosts>(hosts: &H, request: Request<'_>) {
    let Some(del) = request.parse::<DeleteLinkRequest>("link.del").await else {
        return;
    };
    let deleted = hosts
        .lattice_data()
        .delete_link(
            &del.source_id,
            &del.name,
            &del.wit_namespace,
            &del.wit_package,
        )
        .await;
    match deleted {
        Ok(existed) => {
            request.reply(CtlResponse::success("")).await;
            if existed {
                let data = LinkdefDeleted {
                    source_id: del.source_id,
                    name: del.name,
                    wit_namespace: del.wit_namespace,
                    wit_package: del.wit_package,
                };
                request.publish(hosts, event::LINKDEF_DELETED, data).await;
            }
        }
        Err(e) => request.refuse(format!("{e:#}")).await,
    }
}

async fn put_config<H: LatticeHosts>(hosts: &H, request: Request<'_>, name: &str) {
    let Some(values) = request.parse::<ConfigValues>("config.put").await else {
        return;
    };
    if let Err(problem) = check_key(name) {
        request
            .refuse(format!("invalid config name {name:?}: {problem}"))
            .await;
        return;
    }
    match hosts.lattice_data().put_config(name, &values).await {
        Ok(()) => {
            request.reply(CtlResponse::success("")).await;
            let data = ConfigEvent {
                config_name: name.into(),
            };
            request.publish(hosts, event::CONFIG_SET, data).await;
        }
        Err(e) => request.refuse(format!("{e:#}")).await,
    }
}

async fn get_config<H: LatticeHosts>(hosts: &H, request: Request<'_>, name: &str) {
    match hosts.lattice_data().config(name).await {
        Ok(Some(values)) => request.reply(CtlResponse::ok(values)).await,
        // Like wasmCloud: a missing config reads as empty, and the message says so.
        Ok(None) => {
            let mut response = CtlResponse::ok(ConfigValues::new()).with_code(ErrorCode::NotFound);
            response.message = format!("config {name} not found");
            request.reply(response).await
        }
        Err(e) => request.refuse(format!("{e:#}")).await,
    }
}

async fn delete_config<H: LatticeHosts>(hosts: &H, request: Request<'_>, name: &str) {
    match hosts.lattice_data().delete_config(name).await {
        Ok(()) => {
            request.reply(CtlResponse::success("")).await;
            let data = ConfigEvent {
                config_name: name.into(),
            };
            request.publish(hosts, event::CONFIG_DELETED, data).await;
        }
        Err(e) => request.refuse(format!("{e:#}")).await,
    }
}

/// A link's ids and names become parts of its KV key, and it must connect something.
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
