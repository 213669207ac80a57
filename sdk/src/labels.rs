//! Label requirements: which hosts a spread or placement request may use.

use crate::types::Labels;

/// Whether `labels` carry every `key=value` of `requirements` (no requirement matches all).
pub fn matches(labels: &Labels, requirements: &Labels) -> bool {
    requirements
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

/// `k1=v1, k2=v2`, or `none`: for status messages.
pub fn describe(requirements: &Labels) -> String {
    if requirements.is_empty() {
        return "none".into();
    }
    requirements
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::label_map as labels;

    #[test]
    fn every_requirement_must_match() {
        let host = labels(&[("region", "east"), ("zone", "a")]);
        assert!(matches(&host, &labels::<&str, &str>(&[])));
        assert!(matches(&host, &labels(&[("region", "east")])));
        assert!(matches(
            &host,
            &labels(&[("region", "east"), ("zone", "a")])
        ));
        assert!(!matches(&host, &labels(&[("region", "west")])));
        assert!(!matches(
            &host,
            &labels(&[("region", "east"), ("gpu", "yes")])
        ));
        assert!(!matches(&Labels::new(), &labels(&[("region", "east")])));
    }

    #[test]
    fn describe_is_sorted() {
        assert_eq!(describe(&Labels::new()), "none");
        assert_eq!(
            describe(&labels(&[("zone", "a"), ("region", "east")])),
            "region=east, zone=a"
        );
    }
}
