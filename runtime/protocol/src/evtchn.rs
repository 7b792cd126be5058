//! Event channels, 2-level ABI (event_channel.h; the pending and mask bitmaps in
//! shared_info): port numbers and the bitmap scan.
//!
//! # When events arrive, and why that is safe
//! Xen delivers an event *asynchronously* only by building a bounce frame on the guest's
//! stack and jumping to the event callback — right below %rsp, without skipping the red
//! zone that the precompiled libcore uses. The runtime never lets that happen: it registers
//! no event callback (`set_callbacks` is never called) and keeps vCPU 0's
//! `evtchn_upcall_mask` at 1, as Xen starts a PV guest (`docs/xen-pv-facts.md` records what
//! was verified). Xen still *records* events at any time (it sets the port's pending bit in
//! shared_info), but nothing runs because of it. The platform crate looks at pending bits
//! only at explicit points: `xenpv_rt::evtchn::wait` (which blocks in `SCHEDOP_poll`, a
//! hypercall that does not unmask delivery) and its `is_pending` / `pending` (the latter
//! runs [`scan`] over shared_info's bitmaps). So an event that fires while the application
//! computes costs it nothing: the boot test `events` lets thousands of timer events fire in
//! the middle of `core::fmt` work and checks every result.
//!
//! This module is the pure part, host-tested; the hypercalls (and the one-shot timer)
//! live in the platform crate.
//!
//! ```
//! use xenpv_protocol::evtchn::{checked, scan, EvtchnError};
//!
//! let (mut pending, mut mask) = ([0u64; 64], [0u64; 64]);
//! pending[0] = 0b1010; // ports 1 and 3
//! pending[1] = 1; // port 64
//! mask[0] = 0b1000; // port 3 masked
//! assert_eq!(scan(&pending, &mask).collect::<Vec<_>>(), [1, 64]);
//! assert_eq!(checked(4096), Err(EvtchnError::BadPort(4096)));
//! ```

/// An event-channel port.
pub type Port = u32;

/// Ports the 2-level ABI has on 64-bit: 64 words of 64 bits.
pub const NR_PORTS: u32 = 64 * 64;

/// Ports pending and not masked, in ascending order.
pub fn scan<'a>(pending: &'a [u64; 64], mask: &'a [u64; 64]) -> impl Iterator<Item = Port> + 'a {
    pending
        .iter()
        .zip(mask)
        .enumerate()
        .flat_map(|(w, (&p, &m))| {
            let mut bits = p & !m;
            core::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                Some(w as u32 * 64 + b)
            })
        })
}

/// Ports one wait watches at most (what the runtime hands `SCHEDOP_poll`).
pub const WAIT_MAX: usize = 8;

/// The ports of one wait, checked: at most [`WAIT_MAX`], each a valid port. More is an
/// error, never a silent truncation (a port left out would never wake the waiter).
pub fn wait_set(ports: &[Port]) -> Result<([Port; WAIT_MAX], usize), EvtchnError> {
    if ports.len() > WAIT_MAX {
        return Err(EvtchnError::TooManyPorts {
            given: ports.len(),
            max: WAIT_MAX,
        });
    }
    let mut set = [0; WAIT_MAX];
    for (slot, &p) in set.iter_mut().zip(ports) {
        *slot = checked(p)?;
    }
    Ok((set, ports.len()))
}

/// A port number from Xen or from start_info, checked against the ABI.
pub fn checked(port: u32) -> Result<Port, EvtchnError> {
    if port < NR_PORTS {
        Ok(port)
    } else {
        Err(EvtchnError::BadPort(port))
    }
}

/// Why an event-channel operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtchnError {
    /// A port number outside the 2-level ABI's 4096.
    BadPort(u32),
    /// Xen refused the operation.
    Xen(&'static str, xenpv_abi::XenError),
    /// More ports than one wait can watch.
    TooManyPorts {
        /// Ports asked for.
        given: usize,
        /// Ports a wait watches at most.
        max: usize,
    },
}

impl core::fmt::Display for EvtchnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EvtchnError::BadPort(p) => write!(f, "port {p} is not below {NR_PORTS}"),
            EvtchnError::Xen(op, e) => write!(f, "{op}: {e}"),
            EvtchnError::TooManyPorts { given, max } => {
                write!(f, "{given} ports to wait on, at most {max}")
            }
        }
    }
}

/// The timeout to hand `SCHEDOP_poll` for a wait until Xen system time `deadline_ns`.
/// Xen reads it as an `s_time_t` (i64), so a deadline of 2^63 ns or more (a caller's
/// `saturating_add` of a huge timeout) would be negative, in the past, and the poll
/// would return at once: a wait would spin. Clamped to `i64::MAX`, it is "never".
pub fn poll_timeout(deadline_ns: u64) -> u64 {
    deadline_ns.min(i64::MAX as u64)
}

/// The deadline to hand `set_timer_op` for a timer at `deadline_ns`, at time `now_ns`.
/// Xen fires a one-shot timer at once when its deadline is negative as an `s_time_t`
/// or more than 2^50 ns (about 13 days) ahead (`do_set_timer_op`, a workaround for
/// old Linux), so a far deadline becomes the farthest Xen keeps. 0 (cancel) stays 0.
pub fn timer_deadline(deadline_ns: u64, now_ns: u64) -> u64 {
    let farthest = now_ns.saturating_add((1 << 50) - 1);
    poll_timeout(deadline_ns.min(farthest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn far_deadlines_are_clamped_to_what_xen_can_express() {
        // As Xen reads the poll's timeout: an s_time_t, in the past when negative.
        let as_s_time = |t: u64| t as i64;
        for d in [1u64, 1 << 40, i64::MAX as u64] {
            assert_eq!(poll_timeout(d), d, "{d}");
        }
        for d in [1u64 << 63, u64::MAX, u64::MAX - 1, (1 << 63) + 5] {
            let t = poll_timeout(d);
            assert!(
                as_s_time(t) > 0,
                "deadline {d}: poll timeout {t} is in the past"
            );
            assert_eq!(t, i64::MAX as u64, "{d}");
        }
        // set_timer_op: at most 2^50 - 1 ns ahead (Xen fires at once past that).
        let now = 5_000_000_000u64;
        assert_eq!(timer_deadline(0, now), 0, "0 cancels");
        assert_eq!(timer_deadline(now + 1000, now), now + 1000);
        assert_eq!(
            timer_deadline(1, now),
            1,
            "a past deadline fires at once, as asked"
        );
        for d in [u64::MAX, 1 << 63, now + (1 << 50), now + (1 << 55)] {
            let t = timer_deadline(d, now);
            assert!(
                t > now && (t - now) >> 50 == 0 && as_s_time(t) > 0,
                "deadline {d}: timer {t} fires at once"
            );
        }
        assert_eq!(timer_deadline(u64::MAX, u64::MAX - 3), i64::MAX as u64);
    }

    #[test]
    fn scan_reports_pending_unmasked_ports_in_order() {
        let (mut p, mut m) = ([0u64; 64], [0u64; 64]);
        for port in [0u32, 5, 63, 64, 700, 4095] {
            p[(port / 64) as usize] |= 1 << (port % 64);
        }
        m[0] |= 1 << 5;
        m[10] |= 1 << (700 % 64);
        assert_eq!(scan(&p, &m).collect::<Vec<_>>(), vec![0, 63, 64, 4095]);
        assert_eq!(scan(&[!0; 64], &[!0; 64]).count(), 0);
        assert_eq!(scan(&[!0; 64], &[0; 64]).count(), 4096);
    }

    #[test]
    fn ports_from_outside_are_checked() {
        assert_eq!(checked(4095), Ok(4095));
        assert_eq!(checked(4096), Err(EvtchnError::BadPort(4096)));
        assert!(EvtchnError::BadPort(u32::MAX).to_string().contains("4096"));
    }

    fn bitmap(ports: &[Port]) -> [u64; 64] {
        let mut b = [0u64; 64];
        for &p in ports {
            b[(p / 64) as usize] |= 1 << (p % 64);
        }
        b
    }

    #[test]
    fn each_edge_port_alone_is_found_and_masked_alone() {
        for port in [0, 1, 62, 63, 64, 65, 127, 128, 4031, 4032, 4094, 4095] {
            let p = bitmap(&[port]);
            assert_eq!(scan(&p, &[0; 64]).collect::<Vec<_>>(), [port]);
            assert_eq!(scan(&p, &bitmap(&[port])).count(), 0, "{port} masked");
            // Masking every other port leaves this one.
            let mut m = [!0u64; 64];
            m[(port / 64) as usize] &= !(1 << (port % 64));
            assert_eq!(scan(&[!0; 64], &m).collect::<Vec<_>>(), [port]);
        }
    }

    #[test]
    fn a_masked_port_that_is_not_pending_reports_nothing() {
        assert_eq!(scan(&[0; 64], &[!0; 64]).count(), 0);
        assert_eq!(scan(&[0; 64], &[0; 64]).count(), 0);
    }

    #[test]
    fn the_port_limit_is_checked_at_its_edge() {
        assert_eq!(NR_PORTS, 4096);
        assert_eq!(checked(0), Ok(0));
        assert_eq!(checked(NR_PORTS - 1), Ok(NR_PORTS - 1));
        for bad in [NR_PORTS, NR_PORTS + 1, u32::MAX] {
            assert_eq!(checked(bad), Err(EvtchnError::BadPort(bad)));
        }
    }

    #[test]
    fn xen_errors_name_the_operation() {
        let e = EvtchnError::Xen("EVTCHNOP_send", xenpv_abi::XenError(-22));
        assert_eq!(e.to_string(), "EVTCHNOP_send: EINVAL (-22)");
    }

    proptest! {
        #[test]
        fn scan_finds_exactly_the_pending_unmasked_ports(
            p in proptest::array::uniform32(any::<u64>()),
            m in proptest::array::uniform32(any::<u64>()),
        ) {
            // The upper half of each bitmap mirrors the lower, shifted.
            let (mut pending, mut mask) = ([0u64; 64], [0u64; 64]);
            for i in 0..32 {
                pending[i] = p[i];
                pending[63 - i] = p[i].rotate_left(i as u32);
                mask[i] = m[i];
                mask[63 - i] = m[i].rotate_right(i as u32);
            }
            let naive: Vec<Port> = (0..NR_PORTS)
                .filter(|&port| {
                    let (w, b) = ((port / 64) as usize, port % 64);
                    pending[w] >> b & 1 == 1 && mask[w] >> b & 1 == 0
                })
                .collect();
            prop_assert_eq!(scan(&pending, &mask).collect::<Vec<_>>(), naive);
        }
    }

    #[test]
    fn a_wait_takes_at_most_eight_valid_ports() {
        let (set, n) = wait_set(&[1, 2, 3]).unwrap();
        assert_eq!((&set[..n], n), (&[1, 2, 3][..], 3));
        assert!(wait_set(&[0; 8]).is_ok());
        let e = wait_set(&[0; 9]).unwrap_err();
        assert_eq!(e, EvtchnError::TooManyPorts { given: 9, max: 8 });
        assert!(e.to_string().contains("9 ports"), "{e}");
        assert_eq!(
            wait_set(&[1, 4096]).unwrap_err(),
            EvtchnError::BadPort(4096)
        );
    }
}
