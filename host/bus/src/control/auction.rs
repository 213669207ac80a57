//! Auctions: `component.auction` and `provider.auction` reach every host, and each host that
//! could run what is offered bids with an ack; the others say nothing, so the bidder (wadm,
//! the `wasmcloud-control-interface` client) collects whatever arrives within its timeout.
//! Which host bids is decided here, the same for nodes and simulated hosts, as wasmCloud hosts
//! decide it: every constraint matches one of the host's labels exactly, and the id does not
//! run on the host already.

use std::collections::BTreeMap;

use trellis_lattice::ctl::{
    ComponentAuctionAck, ComponentAuctionRequest, CtlResponse, ProviderAuctionAck,
    ProviderAuctionRequest,
};

use super::answer::Request;
use super::LatticeHosts;

/// What an auction offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Component,
    Provider,
}

/// One auction, as the hosts judge it.
#[derive(Debug, Clone, Copy)]
pub struct Auction<'a> {
    pub offered: Offered,
    /// The component or provider id.
    pub id: &'a str,
    /// Labels a bidding host carries, each with exactly this value.
    pub constraints: &'a BTreeMap<String, String>,
}

impl Auction<'_> {
    /// Whether a host with `labels`, where the offered id `already_runs` or not, bids.
    pub fn bids(&self, labels: &BTreeMap<String, String>, already_runs: bool) -> bool {
        !already_runs
            && self
                .constraints
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value))
    }
}

/// Answers `component.auction`: one ack per bidding host, nothing otherwise.
pub(super) async fn component<H: LatticeHosts>(hosts: &H, request: Request<'_>) {
    // A body that does not parse is refused (as wasmCloud hosts do): the bidder collects a
    // reply without an ack, and learns why.
    let Some(auction) = request
        .parse::<ComponentAuctionRequest>("component.auction")
        .await
    else {
        return;
    };
    let bidders = hosts.bidders(&Auction {
        offered: Offered::Component,
        id: &auction.component_id,
        constraints: &auction.constraints,
    });
    for host_id in bidders {
        let ack = ComponentAuctionAck {
            component_ref: auction.component_ref.clone(),
            component_id: auction.component_id.clone(),
            host_id,
            constraints: auction.constraints.clone(),
        };
        request.reply(CtlResponse::ok(ack)).await;
    }
}

/// Answers `provider.auction`: one ack per bidding host, nothing otherwise.
pub(super) async fn provider<H: LatticeHosts>(hosts: &H, request: Request<'_>) {
    let Some(auction) = request
        .parse::<ProviderAuctionRequest>("provider.auction")
        .await
    else {
        return;
    };
    let bidders = hosts.bidders(&Auction {
        offered: Offered::Provider,
        id: &auction.provider_id,
        constraints: &auction.constraints,
    });
    for host_id in bidders {
        let ack = ProviderAuctionAck {
            host_id,
            provider_ref: auction.provider_ref.clone(),
            provider_id: auction.provider_id.clone(),
            constraints: auction.constraints.clone(),
        };
        request.reply(CtlResponse::ok(ack)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_bids_when_every_constraint_matches_and_nothing_runs() {
        let labels = BTreeMap::from([
            ("region".to_string(), "east".to_string()),
            ("zone".to_string(), "a".to_string()),
        ]);
        let auction = |constraints| Auction {
            offered: Offered::Component,
            id: "echo",
            constraints,
        };
        let none = BTreeMap::new();
        assert!(auction(&none).bids(&labels, false));
        let east = BTreeMap::from([("region".to_string(), "east".to_string())]);
        assert!(auction(&east).bids(&labels, false));
        // Already running here: no second copy, no bid.
        assert!(!auction(&east).bids(&labels, true));
        let west = BTreeMap::from([("region".to_string(), "west".to_string())]);
        assert!(!auction(&west).bids(&labels, false));
        // A label the host lacks is not matched, and values compare exactly.
        let gpu = BTreeMap::from([("gpu".to_string(), "true".to_string())]);
        assert!(!auction(&gpu).bids(&labels, false));
        let case = BTreeMap::from([("region".to_string(), "East".to_string())]);
        assert!(!auction(&case).bids(&labels, false));
    }
}
