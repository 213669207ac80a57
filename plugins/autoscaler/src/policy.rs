//! How many instances traffic asks for, and when to follow it: the autoscaler's decision as a
//! pure function of the properties, what runs, the traffic, what it remembers and the time.

use serde::Deserialize;

/// The most instances one autoscaler may run: far more than a lattice's hosts times what one
/// host serves; past it, a typo (an extra zero) would flood the lattice.
pub const MAX_INSTANCES: u32 = 10_000;

/// The longest cooldown: a day. Longer is no cooldown but a freeze.
pub const MAX_COOLDOWN_SECONDS: u32 = 86_400;

/// How often the autoscaler looks again while it may scale: traffic changes with every
/// heartbeat (each second), and a second is what "within seconds of load starting" needs.
pub const EVALUATE_MS: u64 = 1_000;

/// The trait's properties.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Properties {
    /// Fewest instances, even without traffic; 0 lets the app sleep (scale to zero): the node's
    /// HTTP server then holds the first request while an instance starts.
    #[serde(default = "one")]
    pub min_instances: u32,
    pub max_instances: u32,
    /// Requests in flight (served or waiting) per instance to aim for.
    #[serde(default)]
    pub target_in_flight: Option<f64>,
    /// Requests per second per instance to aim for.
    #[serde(default)]
    pub target_requests_per_second: Option<f64>,
    /// After scaling up, how long before scaling up again (new instances take load first).
    #[serde(default = "five")]
    pub scale_up_cooldown_seconds: u32,
    /// How long traffic must ask for fewer instances, without a break, before they go.
    #[serde(default = "thirty")]
    pub scale_down_cooldown_seconds: u32,
    /// Labels a host must carry to get an instance.
    #[serde(default)]
    pub requirements: std::collections::BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}
fn five() -> u32 {
    5
}
fn thirty() -> u32 {
    30
}

/// What is wrong with properties that parse: (path, message, hint).
pub fn problems(p: &Properties) -> Vec<(&'static str, String, &'static str)> {
    let mut found = Vec::new();
    if p.max_instances == 0 || p.max_instances > MAX_INSTANCES {
        found.push((
            "max_instances",
            format!("must be 1 to {MAX_INSTANCES}, not {}", p.max_instances),
            "the most instances traffic may ask for",
        ));
    }
    if p.min_instances > p.max_instances {
        found.push((
            "min_instances",
            format!(
                "{} is more than max_instances ({})",
                p.min_instances, p.max_instances
            ),
            "0 lets the app sleep when idle",
        ));
    }
    let valid = |t: f64| t.is_finite() && t > 0.0;
    match (p.target_in_flight, p.target_requests_per_second) {
        (Some(t), None) | (None, Some(t)) if valid(t) => {}
        (Some(_), Some(_)) => found.push((
            "target_in_flight",
            "give one target, not both target_in_flight and target_requests_per_second".into(),
            "in flight suits slow requests, per second fast ones",
        )),
        (None, None) => found.push((
            "target_in_flight",
            "no target: give target_in_flight or target_requests_per_second".into(),
            "e.g. `target_in_flight: 4` (requests being served or waiting per instance)",
        )),
        _ => found.push((
            if p.target_in_flight.is_some() {
                "target_in_flight"
            } else {
                "target_requests_per_second"
            },
            "must be a number above 0".into(),
            "requests per instance to aim for",
        )),
    }
    for (path, seconds) in [
        ("scale_up_cooldown_seconds", p.scale_up_cooldown_seconds),
        ("scale_down_cooldown_seconds", p.scale_down_cooldown_seconds),
    ] {
        if seconds > MAX_COOLDOWN_SECONDS {
            found.push((
                path,
                format!("{seconds} s is over a day ({MAX_COOLDOWN_SECONDS} s)"),
                "a cooldown is seconds to minutes",
            ));
        }
    }
    found
}

/// Traffic summed over the hosts: requests in flight (with those waiting for an instance)
/// and per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    pub in_flight: f64,
    pub requests_per_second: f64,
}

/// What the autoscaler remembers between calls (its memo): when it last scaled up, and since
/// when traffic has asked for fewer instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memo {
    pub up_at_ms: Option<u64>,
    pub low_since_ms: Option<u64>,
}

impl Memo {
    /// `up=MS low=MS`, either left out when unknown.
    pub fn encode(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ms) = self.up_at_ms {
            parts.push(format!("up={ms}"));
        }
        if let Some(ms) = self.low_since_ms {
            parts.push(format!("low={ms}"));
        }
        parts.join(" ")
    }

    /// What [`Memo::encode`] wrote; anything else reads as nothing remembered.
    pub fn decode(text: Option<&str>) -> Self {
        let mut memo = Memo::default();
        for part in text.unwrap_or_default().split_whitespace() {
            match part.split_once('=') {
                Some(("up", ms)) => memo.up_at_ms = ms.parse().ok(),
                Some(("low", ms)) => memo.low_since_ms = ms.parse().ok(),
                _ => {}
            }
        }
        memo
    }
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Instances to run.
    pub instances: u32,
    pub memo: Memo,
    /// When to look again (ms from now), even if nothing changes.
    pub recheck_ms: Option<u64>,
    /// Why, for the status.
    pub why: String,
}

/// Instances traffic asks for, between the minimum and the maximum: the load over the target,
/// rounded up, and at least one while any request is in flight or waiting.
pub fn wanted(p: &Properties, load: Load) -> u32 {
    let (metric, target) = match (p.target_in_flight, p.target_requests_per_second) {
        (Some(t), _) => (load.in_flight, t),
        (None, Some(t)) => (load.requests_per_second, t),
        (None, None) => (load.in_flight, 1.0),
    };
    let raw = if metric.is_finite() && target.is_finite() && target > 0.0 && metric > 0.0 {
        (metric / target).ceil().min(f64::from(MAX_INSTANCES)) as u32
    } else {
        0
    };
    let demand = load.in_flight > 0.0 || load.requests_per_second > 0.0;
    let raw = if demand { raw.max(1) } else { raw };
    raw.clamp(p.min_instances.min(p.max_instances), p.max_instances)
}

/// The decision for `current` instances under `load` at `now_ms`.
pub fn decide(p: &Properties, current: u32, load: Load, memo: Memo, now_ms: u64) -> Decision {
    let want = wanted(p, load);
    let up_cooldown = u64::from(p.scale_up_cooldown_seconds) * 1000;
    let down_cooldown = u64::from(p.scale_down_cooldown_seconds) * 1000;
    let evaluate = (p.min_instances < p.max_instances).then_some(EVALUATE_MS);
    let hold = |memo: Memo, recheck: Option<u64>, why: String| Decision {
        instances: current,
        memo,
        recheck_ms: recheck,
        why,
    };
    if want > current {
        let ready_at = memo.up_at_ms.map_or(0, |up| up.saturating_add(up_cooldown));
        // From zero there is nothing to cool down: a request is waiting.
        if current == 0 || now_ms >= ready_at {
            return Decision {
                instances: want,
                memo: Memo {
                    up_at_ms: Some(now_ms),
                    low_since_ms: None,
                },
                recheck_ms: evaluate,
                why: format!("traffic asks for {want}"),
            };
        }
        let wait = ready_at - now_ms;
        let memo = Memo {
            low_since_ms: None,
            ..memo
        };
        let why = format!(
            "traffic asks for {want}; cooling down for {:.1} s",
            wait as f64 / 1000.0
        );
        return hold(memo, Some(wait.min(EVALUATE_MS)), why);
    }
    if want < current {
        let since = memo.low_since_ms.unwrap_or(now_ms).min(now_ms);
        let ready_at = since.saturating_add(down_cooldown);
        if now_ms >= ready_at {
            return Decision {
                instances: want,
                memo: Memo {
                    up_at_ms: memo.up_at_ms,
                    low_since_ms: None,
                },
                recheck_ms: evaluate,
                why: format!(
                    "traffic asked for {want} for {} s",
                    p.scale_down_cooldown_seconds
                ),
            };
        }
        let wait = ready_at - now_ms;
        let memo = Memo {
            low_since_ms: Some(since),
            ..memo
        };
        let why = format!(
            "traffic asks for {want}; keeping {current} for {:.1} s more",
            wait as f64 / 1000.0
        );
        return hold(memo, Some(wait.min(EVALUATE_MS)), why);
    }
    let memo = Memo {
        low_since_ms: None,
        ..memo
    };
    hold(memo, evaluate, format!("traffic asks for {want}"))
}
