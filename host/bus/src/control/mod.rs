//! The control interface v1 as hosts answer it, written once for trellis nodes and simulated
//! hosts.
//!
//! A [`ControlInterface`] subscribes to `wasmbus.ctl.v1.{lattice}.…`, reads each request,
//! makes the checks every host makes (a body that parses; the ids a command needs; link fields
//! and config names that make valid KV keys; a host that is ours and alive), and replies
//! `{success, message, response}`. What a request changes is up to the [`LatticeHosts`] behind
//! it: one trellis node, or the many virtual hosts of a simulated lattice. Links and configs are
//! the lattice's, not a host's: the interface keeps them in the lattice's buckets itself
//! ([`LatticeData`]) and publishes their events, so that every kind of host keeps them alike.
//!
//! Host-addressed subjects (`….{verb}.{host_id}`) and `host.ping` reach the hosts they name;
//! auctions (`component.auction`, `provider.auction`) reach every host, and each that could run
//! what is offered bids; lattice-wide writes (`link.*`, `config.*`) and `claims.get` go through
//! a queue group so that one host handles each. Requests are handled one at a time in arrival order, so a `link.put` followed by a
//! `link.del` is applied in that order; slow work (compiling a component) is for the host to run
//! in a task of its own.

mod answer;
mod auction;
mod operation;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use async_nats::Subscriber;
use futures::stream::{select_all, SelectAll};
use futures::StreamExt as _;
use serde::Serialize;
use tracing::{debug, error, warn};
use trellis_lattice::ctl::{
    self, HostInventory, ScaleComponentCommand, StartProviderCommand, UpdateComponentCommand,
};
use trellis_lattice::event::{self, CloudEvent};

use crate::lattice_data::LatticeData;
pub use auction::{Auction, Offered};
pub use operation::Operation;

/// The hosts of one process, as the control interface sees them: a trellis node is one host, a
/// simulated lattice many. Every method that names a host is called only for a host
/// [`LatticeHosts::serves`], after the request was checked.
pub trait LatticeHosts: Send + Sync + 'static {
    /// Whether `host_id` is a host of this process that is running. Requests to any other host
    /// get no answer: it may be another process's, and a dead host says nothing.
    fn serves(&self, host_id: &str) -> bool;

    /// The lattice's links and configs.
    fn lattice_data(&self) -> &LatticeData;

    /// The host named as the source of the events of lattice-wide changes (a link or a config
    /// set or deleted).
    fn event_source(&self) -> String;

    /// Sees every request before it is checked: `host.ping`, every request to a host this
    /// process serves, and every lattice-wide one (the simulator counts them).
    fn received(&self, _operation: &Operation<'_>) {}

    /// The answers to `host.ping`: one per host.
    fn ping(&self) -> Vec<ctl::Host>;

    /// The answer to `host.get`; `None` (no answer) if the host went away meanwhile.
    fn inventory(&self, host_id: &str) -> Option<HostInventory>;

    /// `host.stop`, after the reply (`stopping`) has gone.
    fn stop_host(&self, host_id: &str) -> impl Future<Output = ()> + Send;

    /// The image `component_id` runs from on the host, if it runs there: an update needs it to.
    fn component_image(&self, host_id: &str, component_id: &str) -> Option<String>;

    /// Whether `component_id` runs on the host: a scale that names no image needs it to.
    fn runs_component(&self, host_id: &str, component_id: &str) -> bool {
        self.component_image(host_id, component_id).is_some()
    }

    /// The hosts that bid in `auction`: each running host for which [`Auction::bids`] holds
    /// (its labels meet every constraint, and the offered id does not run there yet).
    fn bidders(&self, auction: &Auction<'_>) -> Vec<String>;

    /// `component.scale`, after the reply (`accepted`) has gone: changes what runs and
    /// publishes the outcome (`component_scaled` or `component_scale_failed`). Called in
    /// arrival order; slow work (reading and compiling an image) belongs in a task of its own,
    /// so that it holds up no other request.
    fn scale_component(
        self: &Arc<Self>,
        host_id: &str,
        cmd: ScaleComponentCommand,
    ) -> impl Future<Output = ()> + Send;

    /// `component.update`, after the reply (`accepted`) has gone, for a component that runs on
    /// the host from another image: runs it from `cmd.new_component_ref` at the count it runs
    /// with (annotations: the command's, else the current ones), and publishes the outcome as a
    /// scale does. Called in arrival order, among the scales; slow work in a task of its own.
    fn update_component(
        self: &Arc<Self>,
        host_id: &str,
        cmd: UpdateComponentCommand,
    ) -> impl Future<Output = ()> + Send;

    /// `provider.start`: `Ok` with what does not work yet if the provider runs (an HTTP address
    /// in use: it runs and retries), or why it does not run.
    fn start_provider(
        &self,
        host_id: &str,
        cmd: StartProviderCommand,
    ) -> impl Future<Output = Result<Vec<String>, String>> + Send;

    /// `provider.stop`; false if the provider was not running on the host.
    fn stop_provider(&self, host_id: &str, provider_id: &str) -> impl Future<Output = bool> + Send;

    /// `label.put`.
    fn put_label(
        &self,
        host_id: &str,
        key: String,
        value: String,
    ) -> impl Future<Output = ()> + Send;

    /// `label.del`; false if the label was not set.
    fn delete_label(&self, host_id: &str, key: &str) -> impl Future<Output = bool> + Send;
}

/// Which host-addressed subjects a process takes.
#[derive(Debug, Clone, Copy)]
pub enum Addressed<'a> {
    /// Those of one host (a node).
    To(&'a str),
    /// Those of every host: the hosts of a simulated lattice share one subscription, and
    /// [`LatticeHosts::serves`] picks out theirs.
    ToAny,
}

/// The control interface of one lattice, subscribed to and ready to serve.
pub struct ControlInterface {
    client: async_nats::Client,
    lattice: String,
    /// `wasmbus.ctl.v1.{lattice}.`
    prefix: String,
    requests: SelectAll<Subscriber>,
}

impl ControlInterface {
    /// Subscribes to `lattice`'s control interface: `host.ping`, the auctions, the
    /// host-addressed subjects of `addressed`, (in the hosts' queue group) `link.*` and
    /// `config.*`, and (in wasmCloud's queue group for it) `claims.get`.
    pub async fn subscribe(
        client: &async_nats::Client,
        lattice: &str,
        addressed: Addressed<'_>,
    ) -> anyhow::Result<Self> {
        let subjects = ctl::Subjects::new(lattice);
        let prefix = subjects.prefix();
        let group = ctl::host_queue_group(lattice);
        let host = match addressed {
            Addressed::To(host_id) => host_id,
            Addressed::ToAny => "*",
        };
        let subscriptions = vec![
            client.subscribe(subjects.host_ping()).await,
            // Every host-addressed verb: component.scale, provider.start, host.get, label.put, …
            client.subscribe(format!("{prefix}.*.*.{host}")).await,
            client
                .queue_subscribe(format!("{prefix}.link.*"), group.clone())
                .await,
            client
                .queue_subscribe(format!("{prefix}.config.>"), group)
                .await,
            // The group wasmCloud hosts use, so that a lattice of both answers once.
            client
                .queue_subscribe(subjects.claims_get(), ctl::claims_queue_group(lattice))
                .await,
            // Every host hears an auction and decides for itself whether to bid.
            client.subscribe(subjects.component_auction()).await,
            client.subscribe(subjects.provider_auction()).await,
        ];
        let subscriptions = subscriptions
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .context("cannot subscribe to the control interface")?;
        Ok(Self {
            client: client.clone(),
            lattice: lattice.to_string(),
            prefix: format!("{prefix}."),
            requests: select_all(subscriptions),
        })
    }

    /// Answers requests, one at a time in arrival order, until the task is aborted.
    pub async fn serve<H: LatticeHosts>(self, hosts: Arc<H>) {
        let Self {
            client,
            lattice,
            prefix,
            mut requests,
        } = self;
        while let Some(msg) = requests.next().await {
            let Some(text) = msg.subject.as_str().strip_prefix(&prefix) else {
                continue;
            };
            let operation = Operation::parse(text);
            if operation
                .host_id()
                .is_some_and(|host_id| !hosts.serves(host_id))
            {
                continue;
            }
            debug!(%lattice, operation = text, "control request");
            hosts.received(&operation);
            let request = answer::Request {
                client: &client,
                lattice: &lattice,
                msg: &msg,
            };
            answer::answer(&hosts, request, operation, text).await;
        }
    }
}

/// Publishes the CloudEvent `kind` from `source` on the lattice's event subject; a failure is
/// logged, not returned: an event nobody receives is like one published while nobody listened.
pub async fn publish_event(
    client: &async_nats::Client,
    lattice: &str,
    source: &str,
    kind: &str,
    data: impl Serialize,
) {
    let event = CloudEvent::new(kind, source, data);
    let payload = match serde_json::to_vec(&event) {
        Ok(payload) => payload,
        Err(e) => {
            error!(host_id = source, kind, error = %e, "cannot encode event");
            return;
        }
    };
    if let Err(e) = client
        .publish(event::subject(lattice, kind), payload.into())
        .await
    {
        warn!(host_id = source, kind, error = %e, "cannot publish event");
    }
}
