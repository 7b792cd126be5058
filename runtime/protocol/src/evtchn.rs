//! Event channels, 2-level ABI (the pending and mask bitmaps in shared_info), and the
//! one-shot timer.
//!
//! # When events arrive, and why that is safe
//! Xen delivers an event *asynchronously* only by building a bounce frame on the guest's
//! stack and jumping to the event callback — right below %rsp, without skipping the red
//! zone that the precompiled libcore uses (`shared/xen-notes.md`). The runtime never lets
//! that happen: it registers no event callback (`set_callbacks` is never called) and keeps
//! vCPU 0's `evtchn_upcall_mask` at 1, as Xen starts a PV guest. Xen still *records* events
//! at any time (it sets the port's pending bit in shared_info), but nothing runs because of
//! it. The runtime looks at pending bits only at explicit points: [`wait`] (which blocks in
//! `SCHEDOP_poll`, a hypercall that does not unmask delivery) and [`is_pending`] /
//! [`pending`]. So an event that fires while the application computes costs it nothing:
//! the boot test `events` lets thousands of timer events fire in the middle of `core::fmt`
//! work and checks every result.
//!
//! The pure part (scanning the bitmaps) is host-tested; the rest is thin hypercall glue.

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

/// A port number from Xen or from start_info, checked against the ABI.
pub fn checked(port: u32) -> Result<Port, EvtchnError> {
    if port < NR_PORTS {
        Ok(port)
    } else {
        Err(EvtchnError::BadPort(port))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtchnError {
    /// A port number outside the 2-level ABI's 4096.
    BadPort(u32),
    /// Xen refused the operation.
    Xen(&'static str, xenpv_abi::XenError),
}

impl core::fmt::Display for EvtchnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EvtchnError::BadPort(p) => write!(f, "port {p} is not below {NR_PORTS}"),
            EvtchnError::Xen(op, e) => write!(f, "{op}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
