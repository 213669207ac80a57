//! "Did you mean …?": the known name nearest to a misspelt one.

/// The candidate closest to `word` by edit distance (a swap of two neighbouring letters counts
/// as one edit), when it is close enough to be a typo: at most a third of its length, and
/// never more than 2 edits for short names. Ties go to the first in `candidates`' order.
pub fn closest<'a, S: AsRef<str>>(word: &str, candidates: &'a [S]) -> Option<&'a str> {
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let candidate = candidate.as_ref();
        let d = distance(word, candidate);
        if d > (candidate.chars().count() / 3).max(2) {
            continue;
        }
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// neighbouring characters each cost one.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested() {
        let known = ["link", "spreadscaler", "daemonscaler"];
        assert_eq!(closest("spreadscalar", &known), Some("spreadscaler"));
        assert_eq!(closest("lnik", &known), Some("link"));
        assert_eq!(closest("ecoh", &["echo", "httpserver"]), Some("echo"));
    }

    #[test]
    fn far_names_are_not() {
        assert_eq!(closest("database", &["echo", "httpserver"]), None);
        assert_eq!(closest("autoscaler", &["link"]), None);
        assert_eq!(closest("x", &[] as &[&str]), None);
    }

    #[test]
    fn swaps_cost_one() {
        assert_eq!(distance("ecoh", "echo"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
