//! Which apps the next pass looks at, and since when: the loop runs a pass a debounce after
//! the first change, so a burst of events makes one pass.

use std::collections::BTreeSet;
use std::time::Instant;

/// Which apps the next pass looks at.
#[derive(Default)]
pub(super) struct Dirty {
    all: bool,
    apps: BTreeSet<String>,
    /// When the first change since the last pass arrived.
    pub since: Option<Instant>,
}

impl Dirty {
    /// Every app is to be looked at.
    pub fn all(&mut self, now: Instant) {
        self.all = true;
        self.since.get_or_insert(now);
    }
    /// `app` is to be looked at.
    pub fn app(&mut self, app: &str, now: Instant) {
        if !self.all {
            self.apps.insert(app.to_string());
        }
        self.since.get_or_insert(now);
    }
    /// The apps the pass now due looks at (`None`: every app), leaving nothing dirty.
    pub fn take(&mut self) -> Option<BTreeSet<String>> {
        self.since = None;
        let apps = std::mem::take(&mut self.apps);
        if std::mem::take(&mut self.all) {
            None
        } else {
            Some(apps)
        }
    }
}
