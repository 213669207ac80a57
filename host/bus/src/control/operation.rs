//! What a control-interface request asks for, read from its subject.

/// A control-interface request, as its subject names it (after `wasmbus.ctl.v1.{lattice}.`):
/// with the host it is addressed to, or the config it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation<'a> {
    HostPing,
    HostGet(&'a str),
    HostStop(&'a str),
    ComponentScale(&'a str),
    ComponentUpdate(&'a str),
    ProviderStart(&'a str),
    ProviderStop(&'a str),
    LabelPut(&'a str),
    LabelDel(&'a str),
    LinkPut,
    LinkDel,
    LinkGet,
    ConfigPut(&'a str),
    ConfigGet(&'a str),
    ConfigDel(&'a str),
    /// `claims.get`: lattice-wide, answered by one host (a queue group).
    ClaimsGet,
    /// `component.auction`: every host hears it, and those that could run the component bid.
    ComponentAuction,
    /// `provider.auction`: likewise, for a provider.
    ProviderAuction,
    /// Anything else, with the host id when the subject has the shape of a host-addressed one.
    Unknown(Option<&'a str>),
}

impl<'a> Operation<'a> {
    /// Reads `operation`, the subject after the lattice's prefix (`component.scale.{host}`).
    pub fn parse(operation: &'a str) -> Self {
        use Operation::*;
        let parts: Vec<&str> = operation.splitn(3, '.').collect();
        match parts.as_slice() {
            ["host", "ping"] => HostPing,
            ["link", "put"] => LinkPut,
            ["link", "del"] => LinkDel,
            ["link", "get"] => LinkGet,
            ["claims", "get"] => ClaimsGet,
            ["component", "auction"] => ComponentAuction,
            ["provider", "auction"] => ProviderAuction,
            ["config", "put", name] => ConfigPut(name),
            ["config", "get", name] => ConfigGet(name),
            ["config", "del", name] => ConfigDel(name),
            ["link" | "config", ..] => Unknown(None),
            [noun, verb, host_id] => match (*noun, *verb) {
                ("host", "get") => HostGet(host_id),
                ("host", "stop") => HostStop(host_id),
                ("component", "scale") => ComponentScale(host_id),
                ("component", "update") => ComponentUpdate(host_id),
                ("provider", "start") => ProviderStart(host_id),
                ("provider", "stop") => ProviderStop(host_id),
                ("label", "put") => LabelPut(host_id),
                ("label", "del") => LabelDel(host_id),
                _ => Unknown(Some(host_id)),
            },
            _ => Unknown(None),
        }
    }

    /// The host the request is addressed to, if it is addressed to one.
    pub fn host_id(&self) -> Option<&'a str> {
        use Operation::*;
        match *self {
            HostGet(host_id)
            | HostStop(host_id)
            | ComponentScale(host_id)
            | ComponentUpdate(host_id)
            | ProviderStart(host_id)
            | ProviderStop(host_id)
            | LabelPut(host_id)
            | LabelDel(host_id) => Some(host_id),
            Unknown(host_id) => host_id,
            HostPing | LinkPut | LinkDel | LinkGet | ConfigPut(_) | ConfigGet(_) | ConfigDel(_)
            | ClaimsGet | ComponentAuction | ProviderAuction => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_operations_and_hosts() {
        use Operation::*;
        assert_eq!(Operation::parse("host.ping"), HostPing);
        assert_eq!(
            Operation::parse("component.scale.NABC"),
            ComponentScale("NABC")
        );
        assert_eq!(Operation::parse("link.put"), LinkPut);
        // A config name may hold dots; it is everything after the verb.
        assert_eq!(
            Operation::parse("config.put.app.settings"),
            ConfigPut("app.settings")
        );
        // Host-shaped but unknown: still addressed, so only that host answers.
        let odd = Operation::parse("component.frobnicate.NABC");
        assert_eq!(odd.host_id(), Some("NABC"));
        assert_eq!(Operation::parse("link.put.NABC").host_id(), None);
        assert_eq!(Operation::parse("config.put"), Unknown(None));
        assert_eq!(Operation::parse("host.ping.NABC").host_id(), Some("NABC"));
    }

    #[test]
    fn claims_and_auctions_are_lattice_wide() {
        use Operation::*;
        for (subject, operation) in [
            ("claims.get", ClaimsGet),
            ("component.auction", ComponentAuction),
            ("provider.auction", ProviderAuction),
        ] {
            assert_eq!(Operation::parse(subject), operation, "{subject}");
            // No host named: every host that hears it may answer.
            assert_eq!(operation.host_id(), None, "{subject}");
        }
        // Only `get` is a claims query; other verbs are not host-addressed claims requests.
        assert_eq!(Operation::parse("claims.put"), Unknown(None));
        assert_eq!(Operation::parse("claims"), Unknown(None));
        // An auction names no host: one that does is something else, for that host only.
        let addressed = Operation::parse("component.auction.NABC");
        assert_eq!(addressed, Unknown(Some("NABC")));
    }

    #[test]
    fn updates_are_addressed_to_one_host() {
        use Operation::*;
        let update = Operation::parse("component.update.NABC");
        assert_eq!(update, ComponentUpdate("NABC"));
        assert_eq!(update.host_id(), Some("NABC"));
        // Without a host it is no update at all.
        assert_eq!(Operation::parse("component.update"), Unknown(None));
    }
}
