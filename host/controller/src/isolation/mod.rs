//! Isolation between apps: a manifest may not claim what another deployed app owns.
//!
//! In the wasmCloud wire model that trellis speaks, component ids, named configs and key-value
//! buckets are lattice-global: nothing in a control command or a config key says which app it
//! belongs to. So app B could set a component's `properties.id` to app A's component id (and
//! scale or stop A's instances), put or read A's named config, or open A's key-value bucket
//! through a link. This module decides, from the manifests alone, whether a manifest may be put
//! or deployed beside the apps deployed now. The rule:
//!
//! - a **component id** (explicit or derived, components and capabilities alike) is owned by
//!   the app whose manifest has it;
//! - a **named config** (a component's `properties.config`, a link trait's `source.config` and
//!   `target.config`, and their deprecated `source_config`/`target_config` forms) is owned by
//!   the app that defines it with `properties` (it puts it, and deletes it on undeploy, as the
//!   config and link scalers do). Another app may neither define it nor name it. A config that
//!   no app defines (put on the lattice by hand) may be named by several apps: nobody owns it
//!   and no undeploy deletes it;
//! - a **key-value bucket** named by the `bucket` property of a `wasi:keyvalue` link's target
//!   config is owned by the app whose manifest names it.
//!
//! Only apps with a deployed version own anything: two apps that are only stored never
//! conflict, which is why the check runs at deploy as well as at put. With the rule in place,
//! undeploying one app (which deletes the configs it defines and stops instances of its ids)
//! cannot touch what another deployed app runs.
//!
//! The check is a pure function of manifests; the manifest store keeps what the deployed ones
//! claim in a [`ClaimIndex`], so that a check costs the manifest checked, not every app. Two deploys racing on different apps may both pass it (the store's
//! compare-and-swap is per app); the check guards against mistakes and against an app taking
//! another's names, not against simultaneous conflicting deploys.

mod index;

use std::collections::{HashMap, HashSet};
use std::fmt;

pub use index::ClaimIndex;

use trellis_lattice::Manifest;

/// The trait type of links (wadm's `link` trait).
const LINK_TRAIT: &str = "link";

/// Something lattice-global a manifest claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    ComponentId(String),
    /// A named config; `defined` when the manifest gives its properties (and so puts it).
    Config {
        name: String,
        defined: bool,
    },
    Bucket(String),
}

impl Claim {
    /// What to do about it, after "choose another … or undeploy {owner}".
    fn remedy(&self) -> &'static str {
        match self {
            Claim::ComponentId(_) => "choose another id",
            Claim::Config { .. } => "rename the config",
            Claim::Bucket(_) => "choose another bucket",
        }
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Claim::ComponentId(id) => write!(f, "component id {id:?}"),
            Claim::Config { name, .. } => write!(f, "config {name:?}"),
            Claim::Bucket(bucket) => write!(f, "key-value bucket {bucket:?}"),
        }
    }
}

/// A manifest claims what another deployed app owns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{claim} belongs to app {owner:?} (deployed); {} or undeploy {owner}", claim.remedy())]
pub struct Conflict {
    /// What the refused manifest claims.
    pub claim: Claim,
    /// The deployed app that owns it.
    pub owner: String,
}

/// Checks `manifest` against the manifests of the apps deployed now. Versions of the same app
/// among `deployed` are skipped: a new version of an app may keep its own names.
pub fn check<'a>(
    manifest: &Manifest,
    deployed: impl IntoIterator<Item = &'a Manifest>,
) -> Result<(), Conflict> {
    let wanted = claims(manifest);
    for other in deployed {
        if other.name() == manifest.name() {
            continue;
        }
        // Sets, not pairs: a check costs the size of the manifests, not its square.
        let owned = Owned::of(claims(other));
        if let Some(claim) = wanted.iter().find(|w| owned.collides(w)) {
            return Err(Conflict {
                claim: claim.clone(),
                owner: other.name().to_string(),
            });
        }
    }
    Ok(())
}

/// What one app claims, for lookups.
#[derive(Default)]
struct Owned {
    ids: HashSet<String>,
    buckets: HashSet<String>,
    /// Config name → whether the app defines it.
    configs: HashMap<String, bool>,
}

impl Owned {
    fn of(claims: Vec<Claim>) -> Self {
        let mut owned = Self::default();
        for claim in claims {
            match claim {
                Claim::ComponentId(id) => {
                    owned.ids.insert(id);
                }
                Claim::Bucket(b) => {
                    owned.buckets.insert(b);
                }
                Claim::Config { name, defined } => {
                    *owned.configs.entry(name).or_default() |= defined;
                }
            }
        }
        owned
    }

    /// Whether an app claiming `wanted` would step on this one: the same component id or
    /// bucket, or the same config when either app defines it (puts it).
    fn collides(&self, wanted: &Claim) -> bool {
        match wanted {
            Claim::ComponentId(id) => self.ids.contains(id),
            Claim::Bucket(b) => self.buckets.contains(b),
            Claim::Config { name, defined } => self
                .configs
                .get(name)
                .is_some_and(|&theirs| theirs || *defined),
        }
    }
}

/// Everything lattice-global `manifest` claims, in manifest order.
pub fn claims(manifest: &Manifest) -> Vec<Claim> {
    let mut claims = Vec::new();
    for component in &manifest.spec.components {
        claims.push(Claim::ComponentId(manifest.component_id(component)));
        claims.extend(component.properties.config.iter().map(|c| Claim::Config {
            name: c.name.clone(),
            defined: c.properties.is_some(),
        }));
        for t in component.traits.iter().flatten() {
            if t.trait_type == LINK_TRAIT {
                link_claims(&t.properties, &mut claims);
            }
        }
    }
    claims
}

/// The configs and bucket of one link trait. Properties are read loosely (the link scaler owns
/// their schema and reports bad ones): whatever names a config here is claimed.
fn link_claims(properties: &serde_json::Value, claims: &mut Vec<Claim>) {
    let keyvalue = properties["namespace"] == "wasi" && properties["package"] == "keyvalue";
    let source = [
        &properties["source"]["config"],
        &properties["source_config"],
    ];
    let target = [
        &properties["target"]["config"],
        &properties["target_config"],
    ];
    for config in configs(source) {
        if let Some(claim) = config_claim(config) {
            claims.push(claim);
        }
    }
    for config in configs(target) {
        if let Some(claim) = config_claim(config) {
            claims.push(claim);
        }
        if keyvalue {
            if let Some(bucket) = config["properties"]["bucket"].as_str() {
                claims.push(Claim::Bucket(bucket.to_string()));
            }
        }
    }
}

/// The config entries of the lists that are present and are lists.
fn configs(lists: [&serde_json::Value; 2]) -> impl Iterator<Item = &serde_json::Value> {
    lists
        .into_iter()
        .filter_map(serde_json::Value::as_array)
        .flatten()
}

fn config_claim(config: &serde_json::Value) -> Option<Claim> {
    let name = config["name"].as_str()?;
    Some(Claim::Config {
        name: name.to_string(),
        defined: config.get("properties").is_some_and(|p| !p.is_null()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// App `name`: component `worker` (with `worker_properties` appended to its properties and
    /// `links` to its traits) and a capability `kv`.
    pub(super) fn app(name: &str, worker_properties: &str, links: &str) -> Manifest {
        let text = format!(
            r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
  annotations:
    version: v1
spec:
  components:
    - name: worker
      type: component
      properties:
        image: file://worker.wasm
{worker_properties}
      traits:
        - type: spreadscaler
          properties:
            instances: 1
{links}
    - name: kv
      type: capability
      properties:
        image: builtin:keyvalue
"#
        );
        Manifest::parse(&text).unwrap()
    }

    pub(super) fn plain(name: &str) -> Manifest {
        app(name, "", "")
    }

    pub(super) fn with_config(name: &str, config: &str, properties: bool) -> Manifest {
        let properties = if properties {
            "\n            properties:\n              level: debug"
        } else {
            ""
        };
        app(
            name,
            &format!("        config:\n          - name: {config}{properties}"),
            "",
        )
    }

    /// A `wasi:keyvalue` link from worker to kv, with a source config and a target config that
    /// names `bucket`.
    pub(super) fn with_link(name: &str, source: &str, target: &str, bucket: &str) -> Manifest {
        let link = format!(
            r#"        - type: link
          properties:
            namespace: wasi
            package: keyvalue
            interfaces: [store]
            source:
              config:
                - name: {source}
                  properties:
                    timeout: 5s
            target:
              name: kv
              config:
                - name: {target}
                  properties:
                    bucket: {bucket}"#
        );
        app(name, "", &link)
    }

    fn refused<'a>(
        manifest: &Manifest,
        deployed: impl IntoIterator<Item = &'a Manifest>,
    ) -> Conflict {
        check(manifest, deployed).expect_err("a conflict")
    }

    #[test]
    fn apps_with_their_own_names_live_side_by_side() {
        let web = with_link("web", "web-src", "web-kv", "web");
        let shop = with_link("shop", "shop-src", "shop-kv", "shop");
        assert_eq!(check(&shop, [&web]), Ok(()));
    }

    #[test]
    fn a_component_id_of_another_app_is_refused() {
        let web = plain("web");
        let shop = app("shop", "        id: web-worker", "");
        let conflict = refused(&shop, [&web]);
        assert_eq!(conflict.claim, Claim::ComponentId("web-worker".into()));
        assert_eq!(
            conflict.to_string(),
            r#"component id "web-worker" belongs to app "web" (deployed); choose another id or undeploy web"#
        );
    }

    #[test]
    fn a_capability_id_of_another_app_is_refused() {
        let web = plain("web");
        let shop = with_capability_id("shop", "web-kv");
        assert_eq!(
            refused(&shop, [&web]).claim,
            Claim::ComponentId("web-kv".into())
        );
    }

    /// App `name` whose capability `kv` has the explicit id `id`.
    fn with_capability_id(name: &str, id: &str) -> Manifest {
        let mut m = plain(name);
        m.spec.components[1].properties.id = Some(id.into());
        m
    }

    #[test]
    fn a_component_config_of_another_app_is_refused() {
        let web = with_config("web", "logging", true);
        // Defining it would overwrite web's; naming it would read web's.
        for properties in [true, false] {
            let conflict = refused(&with_config("shop", "logging", properties), [&web]);
            assert_eq!(conflict.owner, "web");
            assert_eq!(
                conflict.to_string(),
                r#"config "logging" belongs to app "web" (deployed); rename the config or undeploy web"#
            );
        }
        // Defining a config another app only names would change what that app reads.
        let reader = with_config("reader", "logging", false);
        assert_eq!(
            refused(&with_config("shop", "logging", true), [&reader]).owner,
            "reader"
        );
    }

    #[test]
    fn a_config_nobody_defines_may_be_named_by_several_apps() {
        let web = with_config("web", "tls", false);
        assert_eq!(check(&with_config("shop", "tls", false), [&web]), Ok(()));
    }

    #[test]
    fn a_link_source_config_of_another_app_is_refused() {
        let web = with_link("web", "web-src", "web-kv", "web");
        let shop = with_link("shop", "web-src", "shop-kv", "shop");
        let conflict = refused(&shop, [&web]);
        assert_eq!(
            conflict.claim,
            Claim::Config {
                name: "web-src".into(),
                defined: true
            }
        );
        // Across kinds too: a component config named like another app's link config.
        let shop = with_config("shop", "web-src", true);
        assert_eq!(refused(&shop, [&web]).owner, "web");
    }

    #[test]
    fn a_link_target_config_of_another_app_is_refused() {
        let web = with_link("web", "web-src", "web-kv", "web");
        let shop = with_link("shop", "shop-src", "web-kv", "shop");
        assert_eq!(
            refused(&shop, [&web]).claim,
            Claim::Config {
                name: "web-kv".into(),
                defined: true
            }
        );
    }

    #[test]
    fn deprecated_link_config_forms_are_claims_too() {
        let web = with_link("web", "web-src", "web-kv", "web");
        let link = r#"        - type: link
          properties:
            namespace: wasi
            package: keyvalue
            interfaces: [store]
            target: kv
            source_config:
              - name: web-src
                properties:
                  timeout: 1s"#;
        let shop = app("shop", "", link);
        assert_eq!(refused(&shop, [&web]).owner, "web");
        let shop = app(
            "shop",
            "",
            &link
                .replace("source_config", "target_config")
                .replace("web-src", "web-kv"),
        );
        assert_eq!(refused(&shop, [&web]).owner, "web");
    }

    #[test]
    fn a_bucket_of_another_app_is_refused_under_another_config_name() {
        let web = with_link("web", "web-src", "web-kv", "visits");
        let shop = with_link("shop", "shop-src", "shop-kv", "visits");
        let conflict = refused(&shop, [&web]);
        assert_eq!(conflict.claim, Claim::Bucket("visits".into()));
        assert_eq!(
            conflict.to_string(),
            r#"key-value bucket "visits" belongs to app "web" (deployed); choose another bucket or undeploy web"#
        );
    }

    #[test]
    fn a_bucket_property_of_a_link_that_is_not_keyvalue_is_no_bucket() {
        let web = with_link("web", "web-src", "web-kv", "visits");
        let shop = with_link("shop", "shop-src", "shop-kv", "visits");
        let mut json = serde_json::to_value(&shop).unwrap();
        json["spec"]["components"][0]["traits"][1]["properties"]["package"] = "http".into();
        let shop: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(check(&shop, [&web]), Ok(()));
    }

    #[test]
    fn a_new_version_of_the_same_app_keeps_its_names() {
        let v1 = with_link("web", "web-src", "web-kv", "web");
        let mut v2 = v1.clone();
        v2.metadata
            .annotations
            .insert("version".into(), "v2".into());
        assert_eq!(check(&v2, [&v1]), Ok(()));
    }

    #[test]
    fn the_first_conflict_in_manifest_order_is_reported() {
        let web = with_link("web", "web-src", "web-kv", "web");
        let mut shop = with_link("shop", "web-src", "web-kv", "web");
        shop.spec.components[0].properties.id = Some("web-worker".into());
        assert_eq!(
            refused(&shop, [&web]).claim,
            Claim::ComponentId("web-worker".into())
        );
    }
}
