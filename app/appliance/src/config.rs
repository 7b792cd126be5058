//! The appliance's network words: `vifs=N` (how many vifs to bring up, 1..=4, default
//! 1) and `ip=` with one entry per vif, comma-separated: `A.B.C.D/PREFIX` or `dhcp`.
//!
//! ```
//! use xenpv_appliance::config::{parse_ips, Ip};
//! let ips = parse_ips("169.254.100.2/24,dhcp").unwrap();
//! assert_eq!(ips[0], Ip::Static { addr: [169, 254, 100, 2], prefix: 24 });
//! assert_eq!(ips[1], Ip::Dhcp);
//! ```

use core::fmt;

/// Most vifs the appliance brings up (and `SCHEDOP_poll` watches, with xenstore's port).
pub const MAX_VIFS: usize = 4;

/// How one vif gets its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ip {
    /// A fixed IPv4 address and prefix length.
    Static {
        /// The address.
        addr: [u8; 4],
        /// The prefix length (1..=32).
        prefix: u8,
    },
    /// DHCPv4.
    Dhcp,
}

/// A word that could not be used: which entry, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadIp<'a> {
    /// The entry.
    pub entry: &'a str,
    /// Why.
    pub why: &'static str,
}

impl fmt::Display for BadIp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ip entry {:?}: {}", self.entry, self.why)
    }
}

/// Parse `ip=`'s value: one entry per vif.
pub fn parse_ips(v: &str) -> Result<heapless::Vec<Ip, MAX_VIFS>, BadIp<'_>> {
    let mut out = heapless::Vec::new();
    for entry in v.split(',') {
        let bad = |why| BadIp { entry, why };
        let ip = if entry == "dhcp" {
            Ip::Dhcp
        } else {
            let (a, p) = entry.split_once('/').ok_or(bad("no /PREFIX"))?;
            let prefix: u8 = p.parse().map_err(|_| bad("the prefix is not a number"))?;
            if !(1..=32).contains(&prefix) {
                return Err(bad("the prefix is not in 1..=32"));
            }
            let mut addr = [0u8; 4];
            let mut parts = a.split('.');
            for b in addr.iter_mut() {
                let s = parts.next().ok_or(bad("fewer than four numbers"))?;
                if s.is_empty() || s.len() > 3 || !s.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(bad("a part is not a number 0..=255"));
                }
                *b = s
                    .parse()
                    .map_err(|_| bad("a part is not a number 0..=255"))?;
            }
            if parts.next().is_some() {
                return Err(bad("more than four numbers"));
            }
            Ip::Static { addr, prefix }
        };
        out.push(ip).map_err(|_| BadIp {
            entry: v,
            why: "more entries than the 4 vifs the appliance brings up",
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_strict() {
        assert_eq!(parse_ips("10.0.0.1/8").unwrap().len(), 1);
        for (v, why) in [
            ("10.0.0.1", "no /PREFIX"),
            ("10.0.0.1/33", "the prefix is not in 1..=32"),
            ("10.0.0.1/x", "the prefix is not a number"),
            ("10.0.0/8", "fewer than four numbers"),
            ("10.0.0.1.1/8", "more than four numbers"),
            ("10.0.0.256/8", "a part is not a number 0..=255"),
            ("10.0.+1.0/8", "a part is not a number 0..=255"),
            ("", "no /PREFIX"),
        ] {
            assert_eq!(parse_ips(v).unwrap_err().why, why, "{v:?}");
        }
        assert!(parse_ips("dhcp,dhcp,dhcp,dhcp,dhcp").is_err());
    }
}
