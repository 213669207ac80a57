//! What one component's requests on this node look like over the last seconds: how many are in
//! flight, how many a second, how long they take (p50, p99) and what share fail. The node
//! reports it in its heartbeats (`ctl::ComponentTraffic`, a field wasmCloud tools ignore), so
//! that the controller, and the policies it runs, can see load.
//!
//! Counting costs a lock and a few additions per request: the window is a ring of one-second
//! slots, each with a latency histogram of fixed buckets (a quarter of a doubling wide, so a
//! percentile is within 19 % of the truth), and nothing is kept per request.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use trellis_lattice::ctl::ComponentTraffic;

/// How far back the figures look. Long enough that one burst does not swing an autoscaler,
/// short enough that a change in load shows within seconds.
pub const WINDOW: Duration = Duration::from_secs(10);

const SLOTS: usize = WINDOW.as_secs() as usize;

/// Histogram buckets per doubling of latency.
const PER_DOUBLING: usize = 4;

/// Buckets from 1 µs up to 2^27 µs (over two minutes, beyond any request deadline).
const BUCKETS: usize = 27 * PER_DOUBLING;

#[derive(Clone)]
struct Slot {
    /// Which second since the start this slot counts (slots are reused round the ring).
    second: u64,
    requests: u64,
    errors: u64,
    latencies: [u32; BUCKETS],
}

impl Slot {
    fn empty(second: u64) -> Self {
        Self {
            second,
            requests: 0,
            errors: 0,
            latencies: [0; BUCKETS],
        }
    }
}

/// The requests of one component on this node.
pub(crate) struct Traffic {
    started: Instant,
    in_flight: AtomicU32,
    slots: Mutex<Vec<Slot>>,
}

/// A request in flight; counted out when dropped.
pub(crate) struct InFlight<'a>(&'a AtomicU32);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            in_flight: AtomicU32::new(0),
            slots: Mutex::new(vec![Slot::empty(u64::MAX); SLOTS]),
        }
    }
}

impl Traffic {
    /// Counts a request in until the guard is dropped.
    pub fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    /// Counts a finished request: how long it took, and whether it failed (a 5xx answer).
    pub fn record(&self, latency: Duration, failed: bool) {
        self.record_at(Instant::now(), latency, failed);
    }

    fn record_at(&self, now: Instant, latency: Duration, failed: bool) {
        let second = now.saturating_duration_since(self.started).as_secs();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[(second % SLOTS as u64) as usize];
        if slot.second != second {
            *slot = Slot::empty(second);
        }
        slot.requests += 1;
        slot.errors += u64::from(failed);
        let bucket = &mut slot.latencies[bucket_of(latency)];
        *bucket = bucket.saturating_add(1);
    }

    /// The figures over the last [`WINDOW`]; `None` when nothing was asked of the component in
    /// that time and nothing is in flight.
    pub fn summary(&self) -> Option<ComponentTraffic> {
        self.summary_at(Instant::now())
    }

    fn summary_at(&self, now: Instant) -> Option<ComponentTraffic> {
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        let elapsed = now.saturating_duration_since(self.started);
        let second = elapsed.as_secs();
        // The current second is part-way through: the window is the full seconds before it
        // plus the part of this one, so a young component's rate is not diluted.
        let oldest = second.saturating_sub(SLOTS as u64 - 1);
        let span = (elapsed.as_secs_f64() - oldest as f64).clamp(1.0, WINDOW.as_secs_f64());
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let (mut requests, mut errors) = (0u64, 0u64);
        let mut latencies = [0u64; BUCKETS];
        for slot in slots
            .iter()
            .filter(|s| s.second >= oldest && s.second <= second)
        {
            requests += slot.requests;
            errors += slot.errors;
            for (sum, &n) in latencies.iter_mut().zip(&slot.latencies) {
                *sum += u64::from(n);
            }
        }
        drop(slots);
        if requests == 0 && in_flight == 0 {
            return None;
        }
        let percentile = |p: f64| -> f64 {
            let wanted = ((requests as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (bucket, &n) in latencies.iter().enumerate() {
                seen += n;
                if seen >= wanted {
                    return upper_bound_ms(bucket);
                }
            }
            0.0
        };
        Some(ComponentTraffic {
            in_flight,
            requests_per_second: requests as f64 / span,
            p50_ms: if requests == 0 { 0.0 } else { percentile(0.5) },
            p99_ms: if requests == 0 { 0.0 } else { percentile(0.99) },
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            window_seconds: WINDOW.as_secs() as u32,
            requests,
        })
    }
}

/// The bucket of a latency: a quarter of a doubling of microseconds each.
fn bucket_of(latency: Duration) -> usize {
    let micros = latency.as_micros().max(1) as f64;
    ((micros.log2() * PER_DOUBLING as f64) as usize).min(BUCKETS - 1)
}

/// The largest latency in `bucket`, in milliseconds.
fn upper_bound_ms(bucket: usize) -> f64 {
    2f64.powf((bucket + 1) as f64 / PER_DOUBLING as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nothing_asked_is_nothing_reported() {
        let traffic = Traffic::default();
        assert!(traffic.summary().is_none());
        let guard = traffic.begin();
        assert_eq!(traffic.summary().unwrap().in_flight, 1);
        drop(guard);
        assert!(traffic.summary().is_none());
    }

    #[test]
    fn rates_percentiles_and_errors_over_the_window() {
        let traffic = Traffic::default();
        let t0 = traffic.started;
        // 5 seconds of 20 requests each: 18 at 2 ms, 2 at 100 ms, of which 1 failed.
        for s in 0..5 {
            let at = t0 + Duration::from_secs(s) + Duration::from_millis(500);
            for i in 0..20 {
                let slow = i >= 18;
                let latency = Duration::from_millis(if slow { 100 } else { 2 });
                traffic.record_at(at, latency, slow && i == 19);
            }
        }
        let summary = traffic
            .summary_at(t0 + Duration::from_millis(5_000))
            .unwrap();
        assert!(
            (summary.requests_per_second - 20.0).abs() < 0.01,
            "{summary:?}"
        );
        assert!((2.0..=2.4).contains(&summary.p50_ms), "{summary:?}");
        assert!((100.0..=120.0).contains(&summary.p99_ms), "{summary:?}");
        assert!((summary.error_rate - 0.05).abs() < 1e-9, "{summary:?}");
        assert_eq!(summary.window_seconds, 10);
        assert_eq!(summary.requests, 100, "counted, not rate × window");
        // Past the window, the old seconds no longer count.
        assert!(traffic.summary_at(t0 + Duration::from_secs(16)).is_none());
    }

    proptest! {
        /// A bucket's bounds hold the latencies put in it, within a quarter of a doubling.
        #[test]
        fn a_latency_lands_in_a_bucket_that_bounds_it(micros in 1u64..100_000_000) {
            let bucket = bucket_of(Duration::from_micros(micros));
            let upper = upper_bound_ms(bucket) * 1000.0;
            prop_assert!(micros as f64 <= upper * 1.000_001, "{micros} µs in bucket up to {upper}");
            prop_assert!(micros as f64 >= upper / 2f64.powf(1.0 / PER_DOUBLING as f64) * 0.999_999);
        }
    }
}
