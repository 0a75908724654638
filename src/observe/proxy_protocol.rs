//! Connections closed at their PROXY header, by reason: a balancer sending from an address
//! missing in `from`, one that stopped sending headers, or a scanner on the port shows here
//! first. Plain per-worker counters like the other metrics, summed when scraped.

use std::fmt::Write as _;

/// Why a connection was closed before HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyRejection {
    /// `required = true` and the connection began with something else.
    Missing,
    /// A header from a source not in `from`.
    Untrusted,
    /// Not a valid v1 or v2 header.
    Malformed,
    /// Closed, failed or silent past `header_read` before a whole header came.
    Incomplete,
}

impl ProxyRejection {
    const ALL: [ProxyRejection; 4] = [
        ProxyRejection::Missing,
        ProxyRejection::Untrusted,
        ProxyRejection::Malformed,
        ProxyRejection::Incomplete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProxyRejection::Missing => "missing",
            ProxyRejection::Untrusted => "untrusted",
            ProxyRejection::Malformed => "malformed",
            ProxyRejection::Incomplete => "incomplete",
        }
    }
}

/// One worker's rejections, indexed like [`ProxyRejection::ALL`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyRejections([u64; 4]);

impl ProxyRejections {
    pub fn count(&mut self, why: ProxyRejection) {
        self.0[why as usize] += 1;
    }
}

/// Renders the family, summed over the workers.
pub fn render(out: &mut String, workers: &[ProxyRejections]) {
    let name = "strait_proxy_protocol_rejected_total";
    let _ = writeln!(
        out,
        "# HELP {name} Connections closed at their PROXY protocol header, by reason.\n# TYPE {name} counter"
    );
    for why in ProxyRejection::ALL {
        let sum: u64 = workers.iter().map(|w| w.0[why as usize]).sum();
        let _ = writeln!(out, "{name}{{reason=\"{}\"}} {sum}", why.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_is_summed_over_workers() {
        let mut a = ProxyRejections::default();
        a.count(ProxyRejection::Untrusted);
        a.count(ProxyRejection::Incomplete);
        let mut b = ProxyRejections::default();
        b.count(ProxyRejection::Untrusted);
        let mut out = String::new();
        render(&mut out, &[a, b]);
        let lines: Vec<_> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "strait_proxy_protocol_rejected_total{reason=\"missing\"} 0",
                "strait_proxy_protocol_rejected_total{reason=\"untrusted\"} 2",
                "strait_proxy_protocol_rejected_total{reason=\"malformed\"} 0",
                "strait_proxy_protocol_rejected_total{reason=\"incomplete\"} 1",
            ]
        );
    }
}
