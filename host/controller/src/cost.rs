//! Where the controller's CPU goes: the time its loops spend in each kind of work, counted in
//! CPU time of the thread doing it, for the whole process (every lattice and controller in it).
//! The scale benchmark prints the breakdown (docs/scale.md); what is left of the process's CPU
//! time is the NATS client, the API and the runtime's own threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The kinds of work the loop measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Decoding lattice events and applying them to the state.
    Events,
    /// Building a pass's snapshot: the state's instances, with commands in flight overlaid.
    Snapshot,
    /// Plugin calls of a pass (scalers, the placements they ask, cleanups), and overlaying
    /// each app's plan for the next.
    Plugins,
    /// Handing a pass's commands to the executor and publishing statuses.
    Commands,
}

const KINDS: usize = 4;

impl Work {
    pub const ALL: [Work; KINDS] = [Work::Events, Work::Snapshot, Work::Plugins, Work::Commands];

    pub fn name(self) -> &'static str {
        match self {
            Work::Events => "events",
            Work::Snapshot => "snapshot",
            Work::Plugins => "plugins",
            Work::Commands => "commands",
        }
    }
}

/// One reconcile pass over every app (a resync), as measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PassCost {
    pub apps: usize,
    pub wall: Duration,
    /// CPU time of the pass's own work, by kind: its snapshot, its plugin calls, and handing
    /// over commands and statuses.
    pub snapshot: Duration,
    pub plugins: Duration,
    pub commands: Duration,
}

impl PassCost {
    pub fn cpu(&self) -> Duration {
        self.snapshot + self.plugins + self.commands
    }
}

static SPENT_NS: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];
static LAST_QUIET_RESYNC: Mutex<Option<PassCost>> = Mutex::new(None);

/// CPU time of the calling thread. Work on one thread between two readings is that work's
/// alone (the loop does not yield inside a measured section).
pub fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime writes into the timespec we hand it and nothing else.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
        ts
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f`, counting its thread's CPU time as `work`; returns what `f` returned and that time.
pub fn measure<R>(work: Work, f: impl FnOnce() -> R) -> (R, Duration) {
    let started = thread_cpu();
    let result = f();
    let spent = thread_cpu().saturating_sub(started);
    add(work, spent);
    (result, spent)
}

pub fn add(work: Work, spent: Duration) {
    SPENT_NS[work as usize].fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
}

/// CPU time counted so far, per kind of work.
pub fn spent() -> Vec<(Work, Duration)> {
    Work::ALL
        .iter()
        .map(|&w| {
            let ns = SPENT_NS[w as usize].load(Ordering::Relaxed);
            (w, Duration::from_nanos(ns))
        })
        .collect()
}

/// Records a resync pass that issued nothing: what a settled lattice costs per resync.
pub fn record_quiet_resync(pass: PassCost) {
    *LAST_QUIET_RESYNC.lock().unwrap_or_else(|e| e.into_inner()) = Some(pass);
}

/// The last resync pass that found nothing to do.
pub fn last_quiet_resync() -> Option<PassCost> {
    *LAST_QUIET_RESYNC.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_work_is_counted_under_its_kind() {
        let before = spent();
        let (sum, took) = measure(Work::Snapshot, || {
            (0..2_000_000u64)
                .map(|i| std::hint::black_box(i ^ 7))
                .sum::<u64>()
        });
        assert!(sum > 0);
        let after = spent();
        let grew = |w: Work| {
            let i = w as usize;
            after[i].1.saturating_sub(before[i].1)
        };
        assert!(grew(Work::Snapshot) >= took, "{took:?} not counted");
        assert!(took > Duration::ZERO, "a busy loop takes CPU time");
    }
}
