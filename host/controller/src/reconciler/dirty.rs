//! Which apps the next pass looks at, and since when: the loop runs a pass a debounce after
//! the first change, so a burst of events makes one pass. Apps whose scalers asked to be
//! called again later (`recheck-after-ms`) wait here until then.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Which apps the next pass looks at.
#[derive(Default)]
pub(super) struct Dirty {
    all: bool,
    apps: BTreeSet<String>,
    /// When the first change since the last pass arrived.
    pub since: Option<Instant>,
    /// Apps to look at again at a time their scalers asked for, whatever happens meanwhile.
    rechecks: BTreeMap<String, Instant>,
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
    /// `app` is to be looked at again at `at` (the earliest of the times asked for wins).
    pub fn recheck(&mut self, app: &str, at: Instant) {
        let due = self.rechecks.entry(app.to_string()).or_insert(at);
        *due = (*due).min(at);
    }

    /// Marks the apps whose recheck is due at `now`.
    pub fn rechecks_due(&mut self, now: Instant) {
        let due: Vec<String> = self
            .rechecks
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(app, _)| app.clone())
            .collect();
        for app in due {
            self.rechecks.remove(&app);
            self.app(&app, now);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rechecks_mark_their_app_when_due_and_only_then() {
        let t0 = Instant::now();
        let mut dirty = Dirty::default();
        dirty.recheck("shop", t0 + Duration::from_secs(5));
        dirty.recheck("shop", t0 + Duration::from_secs(2));
        dirty.recheck("blog", t0 + Duration::from_secs(9));
        dirty.rechecks_due(t0 + Duration::from_secs(1));
        assert_eq!(dirty.since, None, "nothing due yet");
        // The earliest time asked for wins.
        dirty.rechecks_due(t0 + Duration::from_secs(2));
        assert_eq!(dirty.take(), Some(BTreeSet::from(["shop".to_string()])));
        // Said once: not due again until asked again.
        dirty.rechecks_due(t0 + Duration::from_secs(6));
        assert_eq!(dirty.since, None);
        dirty.rechecks_due(t0 + Duration::from_secs(9));
        assert_eq!(dirty.take(), Some(BTreeSet::from(["blog".to_string()])));
    }
}
