//! Counters of upgraded tunnels (WebSockets): how many are open on a worker, how many
//! ended, the bytes they carried each way and the time they lasted. Plain per-worker data
//! like the other metrics, summed when scraped.

use std::fmt::Write as _;
use std::time::Duration;

/// One worker's tunnel counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct TunnelCounts {
    pub open: u64,
    pub closed: u64,
    /// Bytes from clients to upstreams, after the 101.
    pub bytes_upstream: u64,
    /// Bytes from upstreams to clients, after the 101.
    pub bytes_downstream: u64,
    /// The summed lifetimes of the tunnels that ended.
    pub seconds: f64,
}

impl TunnelCounts {
    pub fn opened(&mut self) {
        self.open += 1;
    }

    pub fn closed(&mut self, upstream: u64, downstream: u64, lasted: Duration) {
        debug_assert!(self.open > 0, "more tunnels closed than opened");
        self.open = self.open.saturating_sub(1);
        self.closed += 1;
        self.bytes_upstream = self.bytes_upstream.saturating_add(upstream);
        self.bytes_downstream = self.bytes_downstream.saturating_add(downstream);
        self.seconds += lasted.as_secs_f64();
    }
}

/// Renders the tunnel families from each worker's `(worker index, counts)`.
pub fn render(out: &mut String, workers: &[(usize, TunnelCounts)]) {
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        out,
        "strait_worker_tunnels",
        "gauge",
        "Upgraded tunnels (WebSockets) open, by worker.",
    );
    for (worker, counts) in workers {
        let _ = writeln!(
            out,
            "strait_worker_tunnels{{worker=\"{worker}\"}} {}",
            counts.open
        );
    }
    let mut sum = TunnelCounts::default();
    for (_, counts) in workers {
        sum.closed += counts.closed;
        sum.bytes_upstream += counts.bytes_upstream;
        sum.bytes_downstream += counts.bytes_downstream;
        sum.seconds += counts.seconds;
    }
    family(
        out,
        "strait_tunnels_total",
        "counter",
        "Upgraded tunnels that ended.",
    );
    let _ = writeln!(out, "strait_tunnels_total {}", sum.closed);
    family(
        out,
        "strait_tunnel_bytes_total",
        "counter",
        "Bytes carried by ended tunnels after the 101, by direction: upstream (from clients) or downstream (to clients).",
    );
    let _ = writeln!(
        out,
        "strait_tunnel_bytes_total{{direction=\"upstream\"}} {}",
        sum.bytes_upstream
    );
    let _ = writeln!(
        out,
        "strait_tunnel_bytes_total{{direction=\"downstream\"}} {}",
        sum.bytes_downstream
    );
    family(
        out,
        "strait_tunnel_duration_seconds_total",
        "counter",
        "Summed lifetime of the tunnels that ended.",
    );
    let _ = writeln!(out, "strait_tunnel_duration_seconds_total {}", sum.seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_keep_their_gauge_and_sum_their_counters() {
        let mut a = TunnelCounts::default();
        a.opened();
        a.opened();
        a.closed(10, 20, Duration::from_millis(1500));
        let mut b = TunnelCounts::default();
        b.opened();
        b.closed(1, 2, Duration::from_millis(500));
        let mut out = String::new();
        render(&mut out, &[(0, a), (1, b)]);
        let samples: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "strait_worker_tunnels{worker=\"0\"} 1",
                "strait_worker_tunnels{worker=\"1\"} 0",
                "strait_tunnels_total 2",
                "strait_tunnel_bytes_total{direction=\"upstream\"} 11",
                "strait_tunnel_bytes_total{direction=\"downstream\"} 22",
                "strait_tunnel_duration_seconds_total 2",
            ]
        );
    }
}
