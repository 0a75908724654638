//! IP allow/deny lists (`[server.access]` and a route's `access`).
//!
//! Where it sits: the global list is checked first for every parsed request (before
//! routing, so a refused client learns nothing about the routes), a route's list right
//! after the route is found, as its first filter (`proxy/pipeline.rs`, before CORS, `auth`
//! and rate limits). A refused request is answered 403 locally and nothing is forwarded.
//!
//! Invariants: deny wins over allow; an empty allow list allows everyone (not denied), a
//! non-empty one only its networks; IPv4-mapped IPv6 peers (`::ffff:a.b.c.d`, from a
//! dual-stack listener) are matched as the IPv4 address they are. The address checked is the
//! request's client address (`client_addr.rs`): the TCP peer unless a trusted proxy
//! forwarded the request.

pub mod client_addr;
pub mod config;

use std::net::IpAddr;

/// A network: an address whose bits past `prefix` are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `::1/128`, or a bare address (a single host). Host bits set past the
    /// prefix are an error (`10.0.0.1/8` is most likely a typo).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("invalid IP address \"{addr_text}\" in \"{text}\""))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("invalid prefix length \"{p}\": must be 0..={max}")),
            },
        };
        let cidr = Cidr { addr, prefix };
        let network = cidr.network();
        if network != addr {
            return Err(format!(
                "host bits set in \"{text}\": the network is {network}/{prefix}"
            ));
        }
        Ok(cidr)
    }

    fn mask(&self) -> u128 {
        let bits = if self.addr.is_ipv4() { 32 } else { 128 };
        let host_bits = u32::from(bits - self.prefix.min(bits));
        let ones: u128 = if bits == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        ones.checked_shl(host_bits).map_or(0, |m| m & ones)
    }

    fn network(&self) -> IpAddr {
        let masked = bits_of(self.addr) & self.mask();
        match self.addr {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(masked as u32)),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(masked)),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && bits_of(ip) & self.mask() == bits_of(self.addr)
    }
}

fn bits_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// `10.0.0.0/8`, `::1/128`: the network as the config would write it.
impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One `access` table: who may send requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    /// Empty: everyone not denied.
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl AccessList {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `ip` may pass: not denied, and allowed when there is an allow list.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.deny.iter().any(|c| c.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cidrs() {
        // (text, Ok((network, prefix)) or Err(message))
        type Case = (&'static str, Result<(&'static str, u8), &'static str>);
        let cases: &[Case] = &[
            ("10.0.0.0/8", Ok(("10.0.0.0", 8))),
            ("127.0.0.1", Ok(("127.0.0.1", 32))),
            ("::1/128", Ok(("::1", 128))),
            ("::/0", Ok(("::", 0))),
            ("0.0.0.0/0", Ok(("0.0.0.0", 0))),
            ("fd00::/8", Ok(("fd00::", 8))),
            (
                "10.0.0.1/8",
                Err("host bits set in \"10.0.0.1/8\": the network is 10.0.0.0/8"),
            ),
            (
                "10.0.0.0/33",
                Err("invalid prefix length \"33\": must be 0..=32"),
            ),
            (
                "::/129",
                Err("invalid prefix length \"129\": must be 0..=128"),
            ),
            (
                "10.0.0.0/",
                Err("invalid prefix length \"\": must be 0..=32"),
            ),
            (
                "10.0.0.0/+8",
                Err("invalid prefix length \"+8\": must be 0..=32"),
            ),
            (
                "10.0.0/8",
                Err("invalid IP address \"10.0.0\" in \"10.0.0/8\""),
            ),
            ("", Err("invalid IP address \"\" in \"\"")),
        ];
        for (text, want) in cases {
            let got = Cidr::parse(text);
            let want = want.map(|(a, p)| Cidr {
                addr: a.parse().unwrap(),
                prefix: p,
            });
            assert_eq!(got, want.map_err(String::from), "{text}");
        }
    }

    #[test]
    fn matches() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("0.0.0.0/0", "::1", false),
            ("::/0", "::1", true),
            ("::1/128", "::1", true),
            ("::1/128", "127.0.0.1", false),
            ("fd00::/8", "fdff::1", true),
            ("fd00::/8", "fe00::1", false),
        ];
        for (cidr, addr, want) in cases {
            assert_eq!(
                Cidr::parse(cidr).unwrap().contains(ip(addr)),
                *want,
                "{cidr} {addr}"
            );
        }
        let list = AccessList {
            allow: vec![Cidr::parse("10.0.0.0/8").unwrap()],
            deny: vec![Cidr::parse("10.0.0.5").unwrap()],
        };
        assert!(list.permits(ip("10.0.0.4")));
        assert!(!list.permits(ip("10.0.0.5")), "deny wins");
        assert!(!list.permits(ip("192.168.0.1")), "not in the allow list");
        assert!(AccessList::default().permits(ip("192.168.0.1")));
        let deny_only = AccessList {
            allow: Vec::new(),
            deny: vec![Cidr::parse("192.168.0.0/16").unwrap()],
        };
        assert!(deny_only.permits(ip("10.0.0.1")));
        assert!(!deny_only.permits(ip("192.168.3.4")));
    }
}
