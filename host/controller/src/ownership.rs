//! Which controller reconciles which app, when several serve one lattice: exactly one owner per
//! app at a time, held in JetStream KV.
//!
//! Two buckets per lattice (docs/decisions/0003-controller-ownership.md says why this shape):
//!
//! - `TRELLIS_CONTROLLERS_{lattice}`: one key per running controller (its incarnation id),
//!   rewritten every `lease / 3`. Others count a controller alive while they keep receiving
//!   those writes; one silent for `lease` is dead to them.
//! - `TRELLIS_OWNERS_{lattice}`: one key per app naming its owner. Claims and takeovers are
//!   compare-and-swap writes on the key's revision, so two controllers racing for an app never
//!   both win.
//!
//! Why no command is issued twice by two owners: a controller acts only until `lease` after it
//! *sent* its last acknowledged renewal; another counts it dead only `lease` after it *received*
//! that renewal, which is later. A controller whose lease lapsed (paused, cut off) comes back
//! under a new id, so it owns nothing until it wins a claim like anyone else.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

/// The bucket of live controllers of a lattice.
pub fn controllers_bucket(lattice: &str) -> String {
    format!("TRELLIS_CONTROLLERS_{lattice}")
}

/// The bucket of app owners of a lattice.
pub fn owners_bucket(lattice: &str) -> String {
    format!("TRELLIS_OWNERS_{lattice}")
}

/// What an owner key holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OwnerRecord {
    /// The owning controller's incarnation id.
    pub owner: String,
    pub since: chrono::DateTime<chrono::Utc>,
}

/// What a controller key holds (for people reading the bucket; others only need the write).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Liveness {
    renewed: chrono::DateTime<chrono::Utc>,
    lease_ms: u64,
}

/// This controller's own lease, shared with the task that renews it.
#[derive(Debug)]
struct Lease {
    id: String,
    /// Until when this controller may act; `None` before the first renewal and after a lapse.
    valid_until: Option<Instant>,
}

/// Reads a controller's current id (for tests and logs).
#[derive(Debug, Clone)]
pub struct LeaseHandle(Arc<Mutex<Lease>>);

impl LeaseHandle {
    pub fn id(&self) -> String {
        lock(&self.0).id.clone()
    }
}

#[derive(Debug, Clone, Copy)]
enum Peer {
    Seen(Instant),
    /// Its key was deleted: it stopped gracefully.
    Gone,
}

/// One controller's view of who owns what on one lattice.
pub struct Ownership {
    lease: Arc<Mutex<Lease>>,
    ttl: Duration,
    owners: kv::Store,
    /// App → (owner, revision of its key), as the owners bucket says.
    records: HashMap<String, (String, u64)>,
    peers: HashMap<String, Peer>,
    started: Instant,
    /// Apps without a live owner, since when: a controller that is not the app's preferred
    /// owner claims it only after a grace period, so apps spread over controllers.
    unowned_since: HashMap<String, Instant>,
    renewal: tokio::task::JoinHandle<()>,
    controllers: kv::Store,
}

/// The watches that feed an [`Ownership`], opened before its loop starts.
pub struct OwnershipWatches {
    pub owners: kv::Watch,
    pub controllers: kv::Watch,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Ownership {
    /// Opens the buckets, registers this controller and keeps renewing its lease.
    pub async fn start(
        js: &jetstream::Context,
        lattice: &str,
        ttl: Duration,
        durability: trellis_bus::Durability,
    ) -> anyhow::Result<(Self, OwnershipWatches)> {
        let controllers =
            trellis_bus::open_durable_bucket(js, &controllers_bucket(lattice), durability).await?;
        let owners =
            trellis_bus::open_durable_bucket(js, &owners_bucket(lattice), durability).await?;
        let watches = OwnershipWatches {
            owners: owners.watch_with_history(">").await?,
            controllers: controllers.watch_with_history(">").await?,
        };
        let lease = Arc::new(Mutex::new(Lease {
            id: new_id(),
            valid_until: None,
        }));
        // The first renewal before anything else, so the controller may act at once.
        renew(&controllers, &lease, ttl).await;
        let renewal = tokio::spawn(renew_forever(controllers.clone(), Arc::clone(&lease), ttl));
        Ok((
            Self {
                lease,
                ttl,
                owners,
                records: HashMap::new(),
                peers: HashMap::new(),
                started: Instant::now(),
                unowned_since: HashMap::new(),
                renewal,
                controllers,
            },
            watches,
        ))
    }

    /// A handle that reads this controller's id from elsewhere.
    pub fn handle(&self) -> LeaseHandle {
        LeaseHandle(Arc::clone(&self.lease))
    }

    /// This controller's current id (it changes after a lapsed lease).
    pub fn id(&self) -> String {
        lock(&self.lease).id.clone()
    }

    /// Whether this controller may act now.
    pub fn live(&self, now: Instant) -> bool {
        lock(&self.lease).valid_until.is_some_and(|t| now < t)
    }

    /// Whether this controller reconciles `app` now.
    pub fn owns(&self, app: &str, now: Instant) -> bool {
        let lease = lock(&self.lease);
        lease.valid_until.is_some_and(|t| now < t)
            && self
                .records
                .get(app)
                .is_some_and(|(owner, _)| *owner == lease.id)
    }

    /// The owner of `app` as this controller sees it.
    pub fn owner_of(&self, app: &str) -> Option<&str> {
        self.records.get(app).map(|(o, _)| o.as_str())
    }

    /// Applies a change of the owners bucket.
    pub fn on_owner_entry(&mut self, entry: kv::Entry) {
        match entry.operation {
            kv::Operation::Put => {
                if let Ok(record) = serde_json::from_slice::<OwnerRecord>(&entry.value) {
                    self.records
                        .insert(entry.key, (record.owner, entry.revision));
                }
            }
            _ => {
                self.records.remove(&entry.key);
            }
        }
    }

    /// Applies a change of the controllers bucket.
    pub fn on_controller_entry(&mut self, entry: kv::Entry, now: Instant) {
        let peer = match entry.operation {
            kv::Operation::Put => Peer::Seen(now),
            _ => Peer::Gone,
        };
        self.peers.insert(entry.key, peer);
    }

    fn peer_alive(&self, id: &str, now: Instant, my_id: &str) -> bool {
        if id == my_id {
            return true;
        }
        // A controller never heard from since we started counts from our start.
        let seen = match self.peers.get(id) {
            Some(Peer::Seen(t)) => *t,
            Some(Peer::Gone) => return false,
            None => self.started,
        };
        now.duration_since(seen) <= self.ttl
    }

    /// Claims the apps in `wanted` that have no live owner: at once when this controller is
    /// the app's preferred owner among the live ones, after a grace period otherwise (in case
    /// the preferred one cannot). Returns the apps it won.
    pub async fn claim(&mut self, wanted: &[String], now: Instant) -> Vec<String> {
        let (my_id, live) = {
            let lease = lock(&self.lease);
            (lease.id.clone(), lease.valid_until.is_some_and(|t| now < t))
        };
        let wanted_set: HashSet<&str> = wanted.iter().map(String::as_str).collect();
        self.unowned_since
            .retain(|app, _| wanted_set.contains(app.as_str()));
        if !live {
            return Vec::new();
        }
        let mut live_peers: Vec<String> = self
            .peers
            .keys()
            .filter(|id| self.peer_alive(id, now, &my_id))
            .cloned()
            .collect();
        if !live_peers.contains(&my_id) {
            live_peers.push(my_id.clone());
        }
        let mut attempts = Vec::new();
        for app in wanted {
            let current = self.records.get(app);
            if current.is_some_and(|(owner, _)| self.peer_alive(owner, now, &my_id)) {
                self.unowned_since.remove(app);
                continue;
            }
            let since = *self.unowned_since.entry(app.clone()).or_insert(now);
            let preferred = live_peers
                .iter()
                .max_by_key(|peer| rendezvous(app, peer))
                .is_some_and(|p| *p == my_id);
            if preferred || now.duration_since(since) >= self.ttl {
                attempts.push((app.clone(), current.map(|(_, rev)| *rev)));
            }
        }
        let record = serde_json::to_vec(&OwnerRecord {
            owner: my_id.clone(),
            since: chrono::Utc::now(),
        })
        .unwrap_or_default();
        let owners = &self.owners;
        let results = futures::future::join_all(attempts.into_iter().map(|(app, revision)| {
            let value: bytes::Bytes = record.clone().into();
            async move {
                let result = match revision {
                    None => owners.create(&app, value).await.map_err(|e| e.to_string()),
                    Some(rev) => owners
                        .update(&app, value, rev)
                        .await
                        .map_err(|e| e.to_string()),
                };
                (app, result)
            }
        }))
        .await;
        let mut won = Vec::new();
        for (app, result) in results {
            match result {
                Ok(revision) => {
                    tracing::info!(app, controller = %my_id, "took ownership");
                    self.records.insert(app.clone(), (my_id.clone(), revision));
                    self.unowned_since.remove(&app);
                    won.push(app);
                }
                // Someone else won the race; its write reaches us through the watch.
                Err(e) => tracing::debug!(app, "claim lost: {e}"),
            }
        }
        won
    }

    /// Gives up `app` if this controller owns it (it was undeployed and cleaned up).
    pub async fn release(&mut self, app: &str) {
        let my_id = self.id();
        if let Some((owner, revision)) = self.records.get(app) {
            if *owner == my_id {
                let revision = *revision;
                if self
                    .owners
                    .delete_expect_revision(app, Some(revision))
                    .await
                    .is_ok()
                {
                    self.records.remove(app);
                }
            }
        }
    }

    /// Stops renewing and deletes this controller's key, so others take its apps over at once
    /// instead of after the lease runs out.
    pub async fn resign(&self) {
        self.renewal.abort();
        let id = self.id();
        lock(&self.lease).valid_until = None;
        let _ = self.controllers.delete(&id).await;
    }
}

impl Drop for Ownership {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// Highest-random-weight hashing: every controller computes the same preferred owner for an
/// app from the same set of live controllers, and few apps move when that set changes.
fn rendezvous(app: &str, controller: &str) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in app.bytes().chain([0]).chain(controller.bytes()) {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    // FNV's low bits mix poorly; finish with a multiply-xorshift.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51afd7ed558ccd);
    hash ^ (hash >> 33)
}

fn lock(lease: &Mutex<Lease>) -> std::sync::MutexGuard<'_, Lease> {
    lease.lock().unwrap_or_else(|e| e.into_inner())
}

async fn renew(controllers: &kv::Store, lease: &Mutex<Lease>, ttl: Duration) {
    let id = {
        let mut lease = lock(lease);
        if lease.valid_until.is_some_and(|t| Instant::now() >= t) {
            // Lapsed: others may have taken our apps already. Come back as a new controller.
            let old = std::mem::replace(&mut lease.id, new_id());
            tracing::warn!(old, new = %lease.id, "controller lease lapsed; rejoining under a new id");
            lease.valid_until = None;
        }
        lease.id.clone()
    };
    let sent = Instant::now();
    let value = serde_json::to_vec(&Liveness {
        renewed: chrono::Utc::now(),
        lease_ms: ttl.as_millis() as u64,
    })
    .unwrap_or_default();
    match controllers.put(&id, value.into()).await {
        Ok(_) => {
            let mut lease = lock(lease);
            if lease.id == id {
                lease.valid_until = Some(sent + ttl);
            }
        }
        Err(e) => tracing::warn!(controller = %id, "cannot renew the controller lease: {e}"),
    }
}

async fn renew_forever(controllers: kv::Store, lease: Arc<Mutex<Lease>>, ttl: Duration) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        renew(&controllers, &lease, ttl).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_spreads_apps_over_controllers() {
        let controllers = ["a", "b", "c"];
        let mut counts = [0; 3];
        for i in 0..300 {
            let app = format!("app-{i}");
            let best = (0..3)
                .max_by_key(|&c| rendezvous(&app, controllers[c]))
                .unwrap();
            counts[best] += 1;
        }
        assert!(counts.iter().all(|&n| n > 60), "{counts:?}");
    }
}
