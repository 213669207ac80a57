//! What the machine under a node has and uses: CPUs, the share of CPU time in use since the
//! last look (the machine's, and the node process's own: several nodes may share a machine),
//! and memory, read from the system at each heartbeat (`ctl::HostResources`). On a system
//! without `/proc` the node reports its CPU count only.

use std::sync::Mutex;

use trellis_lattice::ctl::HostResources;

/// CPU time counters as `/proc/stat` gives them: all time, and idle time (with I/O wait); and
/// this process's (user and system, from `/proc/self/stat`), in the same clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    total: u64,
    idle: u64,
    process: u64,
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
        let process = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|text| process_ticks(&text))
            .unwrap_or(0);
        let now = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| cpu_times(&text))
            .map(|times| CpuTimes { process, ..times });
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let (cpu_use, process_cpu_use) = match (*last, now) {
            (Some(before), Some(now)) => (cpu_use(before, now), process_use(before, now)),
            _ => (0.0, 0.0),
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
            process_cpu_use,
            memory_total_bytes,
            memory_available_bytes,
        }
    }
}

/// User and system time of a process from its `/proc/{pid}/stat` line: fields 14 and 15,
/// counted after the command name (in parentheses, and possibly holding spaces).
fn process_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name, field 3 (state) is the first: utime is field 14, the 12th here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

/// The share of the machine's CPU time this process used between two readings, 0–1.
fn process_use(before: CpuTimes, now: CpuTimes) -> f64 {
    let total = now.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    (now.process.saturating_sub(before.process) as f64 / total as f64).clamp(0.0, 1.0)
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
    Some(CpuTimes {
        total,
        idle,
        process: 0,
    })
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
                idle: 850,
                process: 0,
            })
        );
        let later = CpuTimes {
            total: 2000,
            idle: 1350,
            process: 250,
        };
        assert!((cpu_use(cpu_times(stat).unwrap(), later) - 0.5).abs() < 1e-9);
        assert!((process_use(cpu_times(stat).unwrap(), later) - 0.25).abs() < 1e-9);
        let own = "4242 (trellis node) S 1 4242 4242 0 -1 4194560 900 0 0 0 120 30 0 0 20 0 9 0";
        assert_eq!(process_ticks(own), Some(150));
        assert_eq!(process_ticks("4242 (x) S 1"), None);
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
            let process = process_ticks(&text).unwrap_or(b);
            if let Some(times) = cpu_times(&text) {
                let later = CpuTimes { total: a, idle: b, process };
                let use_ = cpu_use(times, later);
                prop_assert!((0.0..=1.0).contains(&use_));
                prop_assert!((0.0..=1.0).contains(&process_use(times, later)));
            }
        }
    }
}
