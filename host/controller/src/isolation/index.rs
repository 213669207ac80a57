//! What the deployed apps claim, indexed by claim: the isolation check of one manifest looks up
//! its own claims instead of reading every deployed manifest. Reading them all on every put
//! and deploy made deploying 1,000 apps a million store reads (docs/scale.md).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use trellis_lattice::Manifest;

use super::{claims, Claim, Conflict};

/// The claims of each deployed app, and for each claimed name the apps claiming it. More than
/// one app may claim a name (two deploys that raced); a check reports one of them.
#[derive(Debug, Default)]
pub struct ClaimIndex {
    by_app: HashMap<String, Vec<Claim>>,
    ids: HashMap<String, BTreeSet<String>>,
    buckets: HashMap<String, BTreeSet<String>>,
    /// Config name → app → whether that app defines it.
    configs: HashMap<String, BTreeMap<String, bool>>,
}

impl ClaimIndex {
    /// Sets what `app` claims: what its deployed manifest does, or nothing when `None` (not
    /// deployed, or deleted).
    pub fn set(&mut self, app: &str, deployed: Option<&Manifest>) {
        if let Some(old) = self.by_app.remove(app) {
            for claim in &old {
                self.forget(app, claim);
            }
        }
        let Some(manifest) = deployed else { return };
        let claimed = claims(manifest);
        for claim in &claimed {
            match claim {
                Claim::ComponentId(id) => {
                    self.ids.entry(id.clone()).or_default().insert(app.into());
                }
                Claim::Bucket(b) => {
                    self.buckets
                        .entry(b.clone())
                        .or_default()
                        .insert(app.into());
                }
                Claim::Config { name, defined } => {
                    *self
                        .configs
                        .entry(name.clone())
                        .or_default()
                        .entry(app.into())
                        .or_default() |= defined;
                }
            }
        }
        self.by_app.insert(app.to_string(), claimed);
    }

    fn forget(&mut self, app: &str, claim: &Claim) {
        fn drop_from<V>(map: &mut HashMap<String, V>, key: &str, emptied: impl Fn(&mut V) -> bool) {
            if map.get_mut(key).is_some_and(emptied) {
                map.remove(key);
            }
        }
        match claim {
            Claim::ComponentId(id) => drop_from(&mut self.ids, id, |apps| {
                apps.remove(app);
                apps.is_empty()
            }),
            Claim::Bucket(b) => drop_from(&mut self.buckets, b, |apps| {
                apps.remove(app);
                apps.is_empty()
            }),
            Claim::Config { name, .. } => drop_from(&mut self.configs, name, |apps| {
                apps.remove(app);
                apps.is_empty()
            }),
        }
    }

    /// The apps other than `this` whose claims collide with `wanted`.
    fn owners<'a>(&'a self, this: &'a str, wanted: &'a Claim) -> Vec<&'a str> {
        let others = |apps: Option<&'a BTreeSet<String>>| {
            apps.into_iter()
                .flatten()
                .map(String::as_str)
                .filter(move |a| *a != this)
                .collect::<Vec<_>>()
        };
        match wanted {
            Claim::ComponentId(id) => others(self.ids.get(id)),
            Claim::Bucket(b) => others(self.buckets.get(b)),
            Claim::Config { name, defined } => self
                .configs
                .get(name)
                .into_iter()
                .flatten()
                .filter(|(app, &theirs)| app.as_str() != this && (theirs || *defined))
                .map(|(app, _)| app.as_str())
                .collect(),
        }
    }

    /// [`super::check`] against the indexed apps, with the same answer: the first app by name
    /// that `manifest` collides with, and the first of `manifest`'s claims it collides on.
    pub fn check(&self, manifest: &Manifest) -> Result<(), Conflict> {
        let wanted = claims(manifest);
        let collisions: Vec<(&Claim, Vec<&str>)> = wanted
            .iter()
            .map(|claim| (claim, self.owners(manifest.name(), claim)))
            .collect();
        let Some(owner) = collisions.iter().flat_map(|(_, owners)| owners).min() else {
            return Ok(());
        };
        let (claim, _) = collisions
            .iter()
            .find(|(_, owners)| owners.contains(owner))
            .expect("the owner came from a collision");
        Err(Conflict {
            claim: (*claim).clone(),
            owner: owner.to_string(),
        })
    }

    /// How many apps have claims.
    pub fn len(&self) -> usize {
        self.by_app.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_app.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::check;
    use super::super::tests::{plain, with_config, with_link};
    use super::*;

    /// Manifests whose names overlap in every way the rule cares about.
    fn cast() -> Vec<Manifest> {
        vec![
            plain("a"),
            plain("b"),
            with_config("c", "shared", true),
            with_config("d", "shared", false),
            with_config("e", "shared", true),
            with_link("f", "f-src", "f-kv", "store"),
            with_link("g", "g-src", "g-kv", "store"),
            with_link("h", "shared", "h-kv", "h"),
            with_link("a", "a-src", "a-kv", "a"),
        ]
    }

    /// For every set of deployed apps (from the cast, one version per name) and every
    /// manifest, the index answers as checking every deployed manifest does, including after
    /// apps are undeployed again.
    #[test]
    fn the_index_answers_as_the_full_check() {
        let cast = cast();
        for mask in 0u32..(1 << cast.len()) {
            let mut deployed: BTreeMap<&str, &Manifest> = BTreeMap::new();
            for (i, m) in cast.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    deployed.insert(m.name(), m);
                }
            }
            let mut index = ClaimIndex::default();
            // Everything first, then only the deployed set: undeploys must clean up.
            for m in &cast {
                index.set(m.name(), Some(m));
            }
            for m in &cast {
                index.set(m.name(), deployed.get(m.name()).copied());
            }
            for candidate in &cast {
                assert_eq!(
                    index.check(candidate),
                    check(candidate, deployed.values().copied()),
                    "{} against {:?}",
                    candidate.name(),
                    deployed.keys().collect::<Vec<_>>()
                );
            }
            assert_eq!(index.len(), deployed.len());
        }
    }
}
