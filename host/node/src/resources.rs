//! What the machine under a node has and uses: CPUs, the share of CPU time in use since the
//! last look, and memory, read from the system at each heartbeat (`ctl::HostResources`). On a
//! system without `/proc` the node reports its CPU count only.

use std::sync::Mutex;

use trellis_lattice::ctl::HostResources;

/// CPU time counters as `/proc/stat` gives them: all time, and idle time (with I/O wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    total: u64,
    idle: u64,
}

/// Samples the machine; remembers the last CPU counters to tell the use since, and the last
/// sample for whoever asks between heartbeats.
#[derive(Default)]
pub(crate) struct Resources {
    last: Mutex<Option<CpuTimes>>,
    latest: Mutex<Option<HostResources>>,
}

impl Resources {
    /// The sample of the last heartbeat (a ping between two heartbeats does not shorten the
    /// interval the CPU use is measured over); a fresh one before the first.
    pub fn latest(&self) -> HostResources {
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        latest.unwrap_or_else(|| self.sample())
    }

    /// Samples the machine now: the CPU use is over the time since the previous sample.
    pub fn sample(&self) -> HostResources {
        let sample = self.measure();
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(sample.clone());
        sample
    }

    fn measure(&self) -> HostResources {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let now = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| cpu_times(&text));
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let cpu_use = match (*last, now) {
            (Some(before), Some(now)) => cpu_use(before, now),
            _ => 0.0,
        };
        if now.is_some() {
            *last = now;
        }
        let (memory_total_bytes, memory_available_bytes) = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .map(|text| memory(&text))
            .unwrap_or_default();
        HostResources {
            cpus,
            cpu_use,
            memory_total_bytes,
            memory_available_bytes,
        }
    }
}

/// The aggregate `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq steal …
fn cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // Guest time is already counted in user time: only the first eight fields add up.
    let total = fields
        .iter()
        .take(8)
        .fold(0u64, |sum, &f| sum.saturating_add(f));
    let idle = fields
        .get(3)?
        .saturating_add(fields.get(4).copied().unwrap_or(0));
    Some(CpuTimes { total, idle })
}

/// The share of CPU time not idle between two readings, 0–1.
fn cpu_use(before: CpuTimes, now: CpuTimes) -> f64 {
    let total = now.total.saturating_sub(before.total);
    let idle = now.idle.saturating_sub(before.idle);
    if total == 0 {
        return 0.0;
    }
    (1.0 - idle as f64 / total as f64).clamp(0.0, 1.0)
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes (0 where missing).
fn memory(meminfo: &str) -> (u64, u64) {
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib.saturating_mul(1024))
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_system_files_read_as_expected() {
        let stat = "cpu  100 0 50 800 50 0 0 0 10 0\ncpu0 50 0 25 400 25 0 0 0 5 0\nintr 1\n";
        assert_eq!(
            cpu_times(stat),
            Some(CpuTimes {
                total: 1000,
                idle: 850
            })
        );
        let later = CpuTimes {
            total: 2000,
            idle: 1350,
        };
        assert!((cpu_use(cpu_times(stat).unwrap(), later) - 0.5).abs() < 1e-9);
        let meminfo = "MemTotal:       16318480 kB\nMemFree:  1 kB\nMemAvailable:   8159240 kB\n";
        assert_eq!(memory(meminfo), (16318480 * 1024, 8159240 * 1024));
        assert_eq!(memory(""), (0, 0));
        assert_eq!(cpu_times("intr 1\n"), None);
    }

    #[test]
    fn a_sample_of_this_machine_is_plausible() {
        let resources = Resources::default();
        let first = resources.sample();
        assert!(first.cpus >= 1);
        if cfg!(target_os = "linux") {
            assert!(first.memory_total_bytes > 0);
            assert!(first.memory_available_bytes <= first.memory_total_bytes);
        }
        let second = resources.sample();
        assert!((0.0..=1.0).contains(&second.cpu_use));
    }

    proptest! {
        /// Whatever the system files hold, reading them neither panics nor gives a share
        /// outside 0–1.
        #[test]
        fn any_text_reads_safely(text in "(?s).{0,300}", a in any::<u64>(), b in any::<u64>()) {
            let _ = memory(&text);
            if let Some(times) = cpu_times(&text) {
                let use_ = cpu_use(times, CpuTimes { total: a, idle: b });
                prop_assert!((0.0..=1.0).contains(&use_));
            }
        }
    }
}
