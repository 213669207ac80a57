//! A short history of the lattice's load: per host, CPU, free memory and instances; per
//! component, instances and traffic summed over its hosts. One sample every
//! [`SAMPLE_INTERVAL`], the last [`SAMPLES`] kept: what the dashboard's charts draw and
//! `hosts.get` answers with `history`.
//!
//! Hosts that report no resources (wasmCloud hosts, simulated ones) get no host samples, so a
//! lattice of them costs nothing here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use trellis_lattice::api::{ComponentSample, HostSample};
use trellis_lattice::ctl::ComponentTraffic;

use crate::state::LatticeState;

/// Between two samples: fine enough to see a burst of load in a chart, coarse enough that
/// 10,000 hosts cost one pass over them every few seconds.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Samples kept: five minutes' worth, what a chart of "the last minutes" shows.
pub const SAMPLES: usize = 60;

#[derive(Debug, Default)]
pub struct History {
    last: Option<Instant>,
    hosts: HashMap<String, VecDeque<(Instant, HostSample)>>,
    components: BTreeMap<String, VecDeque<(Instant, ComponentSample)>>,
}

impl History {
    /// Takes a sample of `state` if one is due at `now`.
    pub fn sample(&mut self, state: &LatticeState, now: Instant) {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < SAMPLE_INTERVAL)
        {
            return;
        }
        self.last = Some(now);
        let mut components: BTreeMap<&str, ComponentSample> = BTreeMap::new();
        for (id, host) in &state.hosts {
            for (cid, c) in &host.components {
                let sample = components.entry(cid).or_default();
                sample.instances += u64::from(c.count);
                sample.hosts += 1;
            }
            for (cid, t) in &host.traffic {
                add_traffic(&mut components.entry(cid).or_default().traffic, t);
            }
            let Some(r) = &host.resources else {
                continue;
            };
            let instances = host.instances();
            push(
                self.hosts.entry(id.clone()).or_default(),
                now,
                HostSample {
                    ago_seconds: 0,
                    cpu_use: r.cpu_use,
                    process_cpu_use: r.process_cpu_use,
                    memory_available_bytes: r.memory_available_bytes,
                    instances,
                },
            );
        }
        self.hosts.retain(|id, _| state.hosts.contains_key(id));
        // A component that stopped running keeps its history (a chart shows it go to zero)
        // until its samples age out.
        for (cid, samples) in &mut self.components {
            if !components.contains_key(cid.as_str()) {
                push(samples, now, ComponentSample::default());
            }
        }
        for (cid, sample) in components {
            push(
                self.components.entry(cid.to_string()).or_default(),
                now,
                sample,
            );
        }
        self.components
            .retain(|_, samples| samples.iter().any(|(_, s)| s.instances > 0));
    }

    /// A host's samples, oldest first, aged as of `now`.
    pub fn host(&self, id: &str, now: Instant) -> Vec<HostSample> {
        self.hosts
            .get(id)
            .map(|samples| {
                aged(samples, now, |s, ago| HostSample {
                    ago_seconds: ago,
                    ..*s
                })
            })
            .unwrap_or_default()
    }

    /// Every component's samples, by component id, oldest first.
    pub fn components(&self, now: Instant) -> impl Iterator<Item = (&str, Vec<ComponentSample>)> {
        self.components.iter().map(move |(id, samples)| {
            let list = aged(samples, now, |s, ago| ComponentSample {
                ago_seconds: ago,
                ..s.clone()
            });
            (id.as_str(), list)
        })
    }
}

fn push<T>(samples: &mut VecDeque<(Instant, T)>, now: Instant, sample: T) {
    if samples.len() == SAMPLES {
        samples.pop_front();
    }
    samples.push_back((now, sample));
}

fn aged<T, U>(samples: &VecDeque<(Instant, T)>, now: Instant, f: impl Fn(&T, u32) -> U) -> Vec<U> {
    samples
        .iter()
        .map(|(at, s)| f(s, now.saturating_duration_since(*at).as_secs() as u32))
        .collect()
}

/// Adds one host's traffic to a component's total: counts and rates add up, latency is the
/// worst host's, the error rate is weighted by requests.
fn add_traffic(total: &mut ComponentTraffic, t: &ComponentTraffic) {
    let requests = total.requests_per_second + t.requests_per_second;
    if requests > 0.0 {
        total.error_rate = (total.error_rate * total.requests_per_second
            + t.error_rate * t.requests_per_second)
            / requests;
    }
    total.requests_per_second = requests;
    total.in_flight += t.in_flight;
    total.p50_ms = total.p50_ms.max(t.p50_ms);
    total.p99_ms = total.p99_ms.max(t.p99_ms);
    total.window_seconds = total.window_seconds.max(t.window_seconds);
    total.requests += t.requests;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_adds_up_over_hosts() {
        let mut total = ComponentTraffic::default();
        let a = ComponentTraffic {
            in_flight: 2,
            requests_per_second: 30.0,
            p50_ms: 2.0,
            p99_ms: 10.0,
            error_rate: 0.0,
            window_seconds: 10,
            requests: 300,
        };
        let b = ComponentTraffic {
            in_flight: 1,
            requests_per_second: 10.0,
            p99_ms: 40.0,
            error_rate: 0.4,
            ..a.clone()
        };
        add_traffic(&mut total, &a);
        add_traffic(&mut total, &b);
        assert_eq!(total.in_flight, 3);
        assert_eq!(total.requests_per_second, 40.0);
        assert_eq!(total.p99_ms, 40.0);
        assert!(
            (total.error_rate - 0.1).abs() < 1e-9,
            "{}",
            total.error_rate
        );
    }

    #[test]
    fn history_keeps_the_last_samples_at_the_interval() {
        let mut state = LatticeState::default();
        let t0 = Instant::now();
        let host = crate::state::HostState::new(t0);
        state.hosts.insert("h".into(), host);
        state.hosts.get_mut("h").unwrap().resources = Some(Default::default());
        let mut history = History::default();
        for i in 0..(SAMPLES as u32 + 10) {
            history.sample(&state, t0 + SAMPLE_INTERVAL * i);
            // Asked again within the interval: no sample.
            history.sample(&state, t0 + SAMPLE_INTERVAL * i + Duration::from_secs(1));
        }
        let now = t0 + SAMPLE_INTERVAL * (SAMPLES as u32 + 9);
        let samples = history.host("h", now);
        assert_eq!(samples.len(), SAMPLES);
        assert_eq!(samples.last().unwrap().ago_seconds, 0);
        assert_eq!(
            samples[0].ago_seconds,
            (SAMPLE_INTERVAL * (SAMPLES as u32 - 1)).as_secs() as u32
        );
    }
}
