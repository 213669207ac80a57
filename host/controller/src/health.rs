//! Host health with hysteresis: healthy, suspect, unreachable.
//!
//! A host goes down a step on silence and comes back only after a run of good heartbeats, as
//! device orchestrators do (a device is marked up or down only after several checks in a row
//! agree), so that a host whose heartbeats come and go does not make work move back and forth:
//!
//! - **healthy → suspect** after [`HealthThresholds::suspect_after_missed`] heartbeats missed in
//!   a row. A suspect host keeps its instances (nothing moves), but placement avoids it while
//!   any healthy host can take the work.
//! - **suspect → unreachable** once silent for the host timeout: the host is forgotten and its
//!   work runs elsewhere, as before this module existed.
//! - **suspect → healthy** after [`HealthThresholds::healthy_after`] heartbeats in a row, each
//!   on time. A late one starts the count again.
//! - A host that comes back after it was unreachable starts as suspect: it has to earn its way
//!   back before new work goes to it.
//!
//! Missed heartbeats are counted at the host's own pace: its interval is learned from the gaps
//! between its heartbeats (their lower quartile: a missed one does not make it look slow, and a
//! host missing every other heartbeat does not look like one sending half as often), never
//! below the lattice's [`HealthThresholds::heartbeat_interval`]. A lattice of thousands of
//! hosts sending every few seconds (docs/scale.md) needs no setting here. Until a host's first
//! gap is known, it is not judged suspect.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use trellis_runtime::Health;

/// How many heartbeats make a host suspect, and how many bring it back. Silence long enough to
/// make it unreachable is the loop's host timeout ([`crate::LoopSettings::host_timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthThresholds {
    /// How often hosts send heartbeats at the most (trellis nodes and wasmCloud hosts: every
    /// second). A host that sends less often is judged at its own pace.
    pub heartbeat_interval: Duration,
    /// Missed heartbeats in a row that make a healthy host suspect. Two: one late heartbeat
    /// (a loaded machine, a NATS hiccup) is not a sign of trouble.
    pub suspect_after_missed: u32,
    /// Heartbeats in a row, each on time, that make a suspect host healthy again. Three: a host
    /// that misses every other heartbeat stays suspect.
    pub healthy_after: u32,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        Self {
            heartbeat_interval: trellis_lattice::liveness::HEARTBEAT_INTERVAL,
            suspect_after_missed: 2,
            healthy_after: 3,
        }
    }
}

impl HealthThresholds {
    /// Silence that makes a healthy host suspect, for a host sending every `interval`.
    fn suspect_after(&self, interval: Duration) -> Duration {
        interval * self.suspect_after_missed.max(1)
    }

    /// The longest gap between two heartbeats that still counts as on time: half an interval
    /// of slack for a loaded sender or network.
    fn on_time(&self, interval: Duration) -> Duration {
        interval + interval / 2
    }

    /// Silence that makes a healthy host sending at the lattice's pace suspect.
    pub fn suspect_silence(&self) -> Duration {
        self.suspect_after(self.heartbeat_interval)
    }
}

/// Gaps between heartbeats kept to learn a host's interval.
const GAPS: usize = 8;

/// A host's health and what it rests on.
#[derive(Debug, Clone)]
pub struct HostHealth {
    pub health: Health,
    /// Since when the host has had this health.
    pub since: Instant,
    /// Heartbeats in a row on time, while suspect.
    streak: u32,
    last_heartbeat: Option<Instant>,
    /// The last gaps between heartbeats, in ms (a ring; 0 is empty).
    gaps: [u32; GAPS],
    next_gap: usize,
    /// The lower quartile of `gaps` (0 while none is known), kept with each gap: silence is
    /// judged for every host on every tick, so it is not worked out there.
    pace_ms: u32,
}

/// A change of a host's health, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthChange {
    pub host_id: String,
    pub friendly_name: String,
    pub from: Health,
    pub to: Health,
    pub reason: String,
}

impl HostHealth {
    /// A host heard of for the first time: healthy.
    pub fn joined(now: Instant) -> Self {
        Self::with(Health::Healthy, now)
    }

    /// A host heard of again after it was unreachable: suspect until it proves steady.
    pub fn returned(now: Instant) -> Self {
        Self::with(Health::Suspect, now)
    }

    fn with(health: Health, now: Instant) -> Self {
        Self {
            health,
            since: now,
            streak: 0,
            last_heartbeat: None,
            gaps: [0; GAPS],
            next_gap: 0,
            pace_ms: 0,
        }
    }

    /// The host's heartbeat interval: the lower quartile of its recent gaps, at least the
    /// lattice's (bunched heartbeats do not make it shorter). None until a gap is known.
    fn interval(&self, th: &HealthThresholds) -> Option<Duration> {
        (self.pace_ms > 0)
            .then(|| Duration::from_millis(u64::from(self.pace_ms)).max(th.heartbeat_interval))
    }

    fn add_gap(&mut self, gap: Duration) {
        self.gaps[self.next_gap] = gap.as_millis().clamp(1, u128::from(u32::MAX)) as u32;
        self.next_gap = (self.next_gap + 1) % GAPS;
        let mut sorted = self.gaps;
        sorted.sort_unstable();
        let known = &sorted[sorted.iter().take_while(|g| **g == 0).count()..];
        self.pace_ms = known[known.len() / 4];
    }

    /// A heartbeat arrived at `at`. Returns the new health and why, when it changed.
    pub fn heartbeat(&mut self, at: Instant, th: &HealthThresholds) -> Option<(Health, String)> {
        // Replayed heartbeats arrive out of order: only a later one makes a gap.
        let gap = self
            .last_heartbeat
            .and_then(|last| at.checked_duration_since(last));
        self.last_heartbeat = Some(self.last_heartbeat.map_or(at, |last| last.max(at)));
        let on_time = match (gap, self.interval(th)) {
            (Some(gap), Some(interval)) => gap <= th.on_time(interval),
            (Some(gap), None) => gap <= th.on_time(th.heartbeat_interval),
            (None, _) => false,
        };
        if let Some(gap) = gap.filter(|g| !g.is_zero()) {
            self.add_gap(gap);
        }
        if self.health != Health::Suspect {
            return None;
        }
        self.streak = if on_time { self.streak + 1 } else { 0 };
        if self.streak + 1 < th.healthy_after.max(1) {
            return None;
        }
        self.set(Health::Healthy, at);
        Some((
            Health::Healthy,
            format!("{} heartbeats in a row on time", th.healthy_after.max(1)),
        ))
    }

    /// Judges the silence since `last_seen` (the host's last sign of life) at `now`. Returns the
    /// new health and why, when the host just became suspect. Unreachable is the caller's
    /// judgement (the host timeout), as it forgets the host.
    pub fn judge(
        &mut self,
        last_seen: Instant,
        now: Instant,
        th: &HealthThresholds,
    ) -> Option<(Health, String)> {
        let interval = self.interval(th)?;
        let silence = now.saturating_duration_since(last_seen);
        if self.health == Health::Healthy && silence >= th.suspect_after(interval) {
            self.set(Health::Suspect, now);
            return Some((
                Health::Suspect,
                format!(
                    "no heartbeat for {:.1}s ({} missed)",
                    silence.as_secs_f64(),
                    silence.as_millis() / interval.as_millis().max(1)
                ),
            ));
        }
        if self.health == Health::Suspect && silence > th.on_time(interval) {
            // Still silent: the run of good heartbeats, if one had begun, is broken.
            self.streak = 0;
        }
        None
    }

    fn set(&mut self, health: Health, now: Instant) {
        self.health = health;
        self.since = now;
        self.streak = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn missed_heartbeats_make_a_host_suspect() {
        let th = HealthThresholds::default();
        let t0 = Instant::now();
        let mut h = HostHealth::joined(t0);
        h.heartbeat(t0, &th);
        // No gap known yet: not judged.
        assert_eq!(h.judge(t0, t0 + secs(2.5), &th), None);
        let t1 = t0 + secs(1.0);
        h.heartbeat(t1, &th);
        assert_eq!(h.judge(t1, t1 + secs(1.9), &th), None);
        let (to, why) = h.judge(t1, t1 + secs(2.1), &th).expect("became suspect");
        assert_eq!(to, Health::Suspect);
        assert!(why.contains("2 missed"), "{why}");
        // Said once.
        assert_eq!(h.judge(t1, t1 + secs(2.5), &th), None);
    }

    #[test]
    fn a_host_sending_slowly_is_judged_at_its_own_pace() {
        let th = HealthThresholds::default();
        let t0 = Instant::now();
        let mut h = HostHealth::joined(t0);
        // Every 2 s, with one missed and two bunched: its pace is taken as about 2 s.
        for at in [0.0, 2.0, 4.0, 8.0, 10.0, 10.05, 12.0] {
            h.heartbeat(t0 + secs(at), &th);
        }
        let last = t0 + secs(12.0);
        assert_eq!(h.judge(last, last + secs(3.8), &th), None);
        let (to, why) = h.judge(last, last + secs(4.1), &th).expect("suspect");
        assert_eq!(to, Health::Suspect);
        assert!(why.contains("2 missed"), "{why}");
        // Back at its pace, it recovers: gaps of 2 s are on time for it.
        for i in 1..=3 {
            let r = h.heartbeat(last + secs(4.5 + 2.0 * f64::from(i)), &th);
            assert_eq!(r.is_some(), i == 3, "heartbeat {i}");
        }
    }

    #[test]
    fn a_suspect_host_recovers_after_heartbeats_in_a_row() {
        let th = HealthThresholds::default();
        let t0 = Instant::now();
        let mut h = HostHealth::returned(t0);
        assert_eq!(h.heartbeat(t0, &th), None);
        assert_eq!(h.heartbeat(t0 + secs(1.0), &th), None);
        let (to, _) = h.heartbeat(t0 + secs(2.0), &th).expect("recovered");
        assert_eq!(to, Health::Healthy);
    }

    #[test]
    fn a_flapping_host_stays_suspect() {
        let th = HealthThresholds::default();
        let t0 = Instant::now();
        let mut h = HostHealth::returned(t0);
        // Heartbeats 1 s and 3 s apart in turn: never three in a row on time.
        let mut at = t0;
        for i in 0..20 {
            at += secs(if i % 2 == 0 { 1.0 } else { 3.0 });
            assert_eq!(h.heartbeat(at, &th), None, "heartbeat {i}");
            assert_eq!(h.judge(at, at + secs(0.9), &th), None);
        }
        assert_eq!(h.health, Health::Suspect);
        // Then three in a row: healthy.
        assert_eq!(h.heartbeat(at + secs(1.0), &th), None);
        assert!(h.heartbeat(at + secs(2.0), &th).is_some());
    }

    #[test]
    fn healthy_hosts_stay_healthy_on_time() {
        let th = HealthThresholds::default();
        let t0 = Instant::now();
        let mut h = HostHealth::joined(t0);
        for i in 0..5 {
            let at = t0 + secs(f64::from(i));
            assert_eq!(h.heartbeat(at, &th), None);
            assert_eq!(h.judge(at, at + secs(1.2), &th), None);
        }
        assert_eq!(h.health, Health::Healthy);
    }
}
