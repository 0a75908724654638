//! Aggregation metrics: each part called, by route, part and result
//! (`strait_aggregate_parts_total`), counted per worker and summed when scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use super::AggregatePart;

/// One worker's part calls: route name → (part name, result) → count.
#[derive(Debug, Clone, Default)]
pub struct AggregateCounts(BTreeMap<String, BTreeMap<(Arc<str>, &'static str), u64>>);

impl AggregateCounts {
    /// Counts the parts of one aggregation on route `route`.
    pub fn parts(&mut self, route: &str, parts: &[AggregatePart]) {
        // A lookup first: the route's name is copied only the first time it is counted.
        if !self.0.contains_key(route) {
            self.0.insert(route.to_owned(), BTreeMap::new());
        }
        let Some(counts) = self.0.get_mut(route) else {
            return;
        };
        for part in parts {
            *counts
                .entry((Arc::clone(&part.name), part.result))
                .or_default() += 1;
        }
    }
}

/// Renders the family, summed over `workers` (its head alone until an aggregation runs).
pub fn render(out: &mut String, workers: &[AggregateCounts]) {
    let mut sums: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
    for worker in workers {
        for (route, counts) in &worker.0 {
            for ((part, result), n) in counts {
                *sums.entry((route, part, result)).or_default() += n;
            }
        }
    }
    let name = "strait_aggregate_parts_total";
    let _ = writeln!(
        out,
        "# HELP {name} Calls of aggregation parts, by route, part and result.\n# TYPE {name} counter"
    );
    for ((route, part, result), n) in sums {
        let _ = writeln!(
            out,
            "{name}{{route=\"{route}\",part=\"{part}\",result=\"{result}\"}} {n}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parts_are_summed_over_workers() {
        let part = |name: &str, result| AggregatePart {
            name: name.into(),
            status: 200,
            elapsed: Duration::ZERO,
            result,
        };
        let mut a = AggregateCounts::default();
        a.parts("d", &[part("user", "ok"), part("recs", "timeout")]);
        let mut b = AggregateCounts::default();
        b.parts("d", &[part("user", "ok")]);
        let mut out = String::new();
        render(&mut out, &[a, b]);
        assert!(
            out.contains(
                "strait_aggregate_parts_total{route=\"d\",part=\"user\",result=\"ok\"} 2\n"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "strait_aggregate_parts_total{route=\"d\",part=\"recs\",result=\"timeout\"} 1\n"
            ),
            "{out}"
        );
        let mut empty = String::new();
        render(&mut empty, &[AggregateCounts::default()]);
        assert_eq!(empty.lines().count(), 2, "HELP and TYPE only: {empty}");
    }
}
