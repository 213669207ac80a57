//! Host discovery: ask every host of the lattice for its inventory, so that a controller that
//! starts, or hears NATS again after an outage, knows what runs at once instead of after the
//! next heartbeats.

use std::time::Duration;

use futures::StreamExt;
use trellis_bus::gather::{gather, Window};
use trellis_lattice::ctl::{self, CtlResponse, HostInventory};

/// Pings every host of `lattice`, gathers the replies that arrive within half a second, and
/// asks each host that answered for its inventory. A host that does not answer its `host.get`
/// is left out; the error is about the ping only.
pub(crate) async fn inventories(
    client: &async_nats::Client,
    lattice: &str,
) -> anyhow::Result<Vec<HostInventory>> {
    let subjects = ctl::Subjects::new(lattice);
    // `host.ping` is scatter-gather: every host answers on one inbox.
    let window = Window::fixed(Duration::from_millis(500));
    let hosts = gather(client, subjects.host_ping(), Vec::new(), window).await?;
    let ids: Vec<String> = hosts
        .iter()
        .filter_map(|reply| serde_json::from_slice::<CtlResponse<ctl::Host>>(&reply.payload).ok())
        .filter_map(|resp| resp.response.map(|h| h.id))
        .collect();
    // Many hosts answer at once; ask a bounded number of them at a time.
    let subjects = &subjects;
    Ok(futures::stream::iter(ids)
        .map(|id| async move {
            let msg = client
                .request(subjects.host_get(&id), "".into())
                .await
                .ok()?;
            serde_json::from_slice::<CtlResponse<HostInventory>>(&msg.payload)
                .ok()?
                .response
        })
        .buffer_unordered(64)
        .filter_map(std::future::ready)
        .collect()
        .await)
}
