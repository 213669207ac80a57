use super::*;
use proptest::prelude::*;

fn to(scheme: &'static str, host: &'static str, port: u16) -> Destination<'static> {
    Destination { scheme, host, port }
}

fn hosts(text: &str) -> OutboundHosts {
    OutboundHosts::parse(text).unwrap()
}

#[test]
fn nothing_is_granted_by_default() {
    let none = OutboundHosts::default();
    assert!(!none.allows(to("https", "example.com", 443), false));
    assert!(hosts("").is_empty());
}

#[test]
fn entries_match_scheme_host_and_port() {
    let h = hosts("https://api.example.com, http://*.internal:8080 svc.local:*");
    assert!(h.allows(to("https", "api.example.com", 443), false));
    assert!(h.allows(to("https", "API.example.com", 443), false));
    assert!(!h.allows(to("http", "api.example.com", 80), false));
    assert!(!h.allows(to("https", "api.example.com", 8443), false));
    assert!(h.allows(to("http", "db.internal", 8080), false));
    assert!(!h.allows(to("http", "internal", 8080), false));
    assert!(!h.allows(to("http", "db.internal", 80), false));
    assert!(h.allows(to("http", "svc.local", 1234), false));
    assert!(h.allows(to("https", "svc.local", 1), false));
    assert!(!h.allows(to("ftp", "svc.local", 1), false));
}

#[test]
fn sensitive_destinations_need_an_exact_entry() {
    let wild = hosts("*://*:*");
    assert!(wild.allows(to("http", "example.com", 80), false));
    assert!(!wild.allows(to("http", "127.0.0.1", 8800), true));
    let exact_port_wild = hosts("http://127.0.0.1:*");
    assert!(!exact_port_wild.allows(to("http", "127.0.0.1", 8800), true));
    let exact = hosts("http://127.0.0.1:8800, http://[::1]:9000");
    assert!(exact.allows(to("http", "127.0.0.1", 8800), true));
    assert!(!exact.allows(to("http", "127.0.0.1", 4222), true));
    assert!(exact.allows(to("http", "::1", 9000), true));
    let under = hosts("http://*.example.com");
    assert!(!under.allows(to("http", "evil.example.com", 80), true));
}

#[test]
fn bad_entries_are_named() {
    for (entry, why) in [
        ("ftp://x", "scheme"),
        ("http://x/path", "path"),
        ("http://x:port", "port"),
        ("http://a*b", "wildcard"),
        ("http://[::1", "closing"),
        ("http://:80", "empty"),
    ] {
        let err = OutboundHosts::parse(entry).unwrap_err();
        assert!(err.contains(entry) && err.contains(why), "{entry}: {err}");
    }
}

#[test]
fn sensitive_addresses() {
    for ip in [
        "127.0.0.1",
        "127.8.9.10",
        "0.0.0.0",
        "169.254.169.254",
        "::1",
        "::",
        "fe80::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.1.1",
    ] {
        assert!(sensitive_ip(ip.parse().unwrap()), "{ip}");
    }
    for ip in ["10.0.0.1", "93.184.216.34", "2001:db8::1", "fec0::1"] {
        assert!(!sensitive_ip(ip.parse().unwrap()), "{ip}");
    }
}

fn grants(linked: &[&str]) -> Grants {
    Grants {
        app_bucket: app_bucket("default", Some("shop")),
        linked_buckets: linked.iter().map(|s| s.to_string()).collect(),
        ..Grants::default()
    }
}

#[test]
fn a_component_opens_its_own_buckets_only() {
    let g = grants(&[]);
    assert_eq!(g.bucket("").unwrap(), "trellis-kv-default-shop");
    assert_eq!(g.bucket("default").unwrap(), "trellis-kv-default-shop");
    assert_eq!(
        g.bucket("trellis-kv-default-shop").unwrap(),
        "trellis-kv-default-shop"
    );
    let linked = grants(&["carts"]);
    assert_eq!(linked.bucket("").unwrap(), "carts");
    assert_eq!(linked.bucket("carts").unwrap(), "carts");
    assert_eq!(
        linked.bucket("trellis-kv-default-shop").unwrap(),
        "trellis-kv-default-shop"
    );
    for name in [
        "TRELLIS_MANIFESTS_default",
        "TRELLIS_OWNERS_default",
        "TRELLIS_STATUS_default",
        "CONFIGDATA_default",
        "LATTICEDATA_default",
        "trellis-kv-default-other",
        "trellis-kv-default",
        "wadm_manifests",
        "orders",
    ] {
        assert!(
            matches!(linked.bucket(name), Err(BucketRefusal::Denied(_))),
            "{name}"
        );
    }
    assert_eq!(linked.bucket("a.b"), Err(BucketRefusal::Invalid));
}

#[test]
fn a_link_cannot_grant_the_control_plane() {
    let g = grants(&["TRELLIS_MANIFESTS_default"]);
    assert!(matches!(g.bucket(""), Err(BucketRefusal::Denied(_))));
    assert!(matches!(
        g.bucket("TRELLIS_MANIFESTS_default"),
        Err(BucketRefusal::Denied(_))
    ));
}

#[test]
fn app_buckets_are_valid_names() {
    assert!(valid_bucket_name(&app_bucket("my.lattice", Some("a b/c"))));
    assert_eq!(app_bucket("default", None), "trellis-kv-default");
    assert!(!valid_bucket_name("a.b"));
}

proptest! {
    // Any text parses or fails with a message naming the key; it never panics.
    #[test]
    fn parsing_never_panics(text in "\\PC{0,80}") {
        if let Err(e) = OutboundHosts::parse(&text) {
            prop_assert!(e.contains(ALLOWED_HOSTS_KEY));
        }
    }

    // No grant at all, however written, makes a sensitive destination reachable through a
    // wildcard: only an entry naming that host does.
    #[test]
    fn wildcards_never_reach_sensitive_hosts(
        scheme in prop::sample::select(vec!["http://", "https://", "*://", ""]),
        host in prop::sample::select(vec!["*", "*.0.1", "*.localhost"]),
        port in prop::sample::select(vec!["", ":*", ":8800", ":80"]),
        target in prop::sample::select(vec!["127.0.0.1", "localhost", "169.254.169.254"]),
        target_port in prop::sample::select(vec![80u16, 8800, 443]),
    ) {
        let h = OutboundHosts::parse(&format!("{scheme}{host}{port}")).unwrap();
        let to = Destination { scheme: "http", host: target, port: target_port };
        prop_assert!(!h.allows(to, true));
    }

    // Whatever a component asks for, it gets its own or a linked bucket, never another.
    #[test]
    fn opened_buckets_are_always_granted_ones(identifier in "[A-Za-z0-9_-]{0,30}") {
        let g = grants(&["carts"]);
        if let Ok(name) = g.bucket(&identifier) {
            prop_assert!(name == "carts" || name == g.app_bucket);
        }
    }
}
