//! Frame numbers and machine addresses as distinct types.

use core::fmt;

/// Bytes in a page (x86-64 PV guests use 4 KiB pages only).
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// A machine frame number: what Xen, the page tables and the hardware see.
#[repr(transparent)]
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mfn(pub u64);

/// A pseudo-physical frame number: the guest's contiguous view, an index into the p2m.
#[repr(transparent)]
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pfn(pub u64);

/// A machine address (an `Mfn` and an offset into its frame), as `mmu_update` takes it.
#[repr(transparent)]
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Maddr(pub u64);

impl Mfn {
    /// Largest machine frame number a page-table entry can hold (bits 12..51 of an entry:
    /// 52-bit physical addresses).
    ///
    /// ```
    /// use xenpv_abi::Mfn;
    /// assert_eq!(Mfn::MAX.maddr().0 + 4095, (1 << 52) - 1);
    /// ```
    pub const MAX: Mfn = Mfn((1 << 40) - 1);
    /// The machine address of the frame's first byte.
    pub const fn maddr(self) -> Maddr {
        Maddr(self.0 << PAGE_SHIFT)
    }
}

impl Pfn {
    /// The frames `self..end`, in order (`Range<Pfn>` cannot iterate on stable Rust).
    pub fn up_to(self, end: Pfn) -> impl DoubleEndedIterator<Item = Pfn> + Clone {
        (self.0..end.0).map(Pfn)
    }
}

impl Maddr {
    /// The frame this address lies in.
    pub const fn mfn(self) -> Mfn {
        Mfn(self.0 >> PAGE_SHIFT)
    }
    /// The offset into that frame.
    pub const fn offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }
}

macro_rules! frame_arith {
    ($t:ident, $name:literal) => {
        impl core::ops::Add<u64> for $t {
            type Output = $t;
            fn add(self, n: u64) -> $t {
                $t(self.0 + n)
            }
        }
        impl core::ops::Sub<u64> for $t {
            type Output = $t;
            fn sub(self, n: u64) -> $t {
                $t(self.0 - n)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($name, "({:#x})"), self.0)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($name, " {:#x}"), self.0)
            }
        }
        impl fmt::LowerHex for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}
frame_arith!(Mfn, "mfn");
frame_arith!(Pfn, "pfn");
frame_arith!(Maddr, "maddr");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_frames_convert_both_ways() {
        let m = Mfn(0xabc);
        assert_eq!(m.maddr(), Maddr(0xabc000));
        assert_eq!(Maddr(0xabc123).mfn(), m);
        assert_eq!(Maddr(0xabc123).offset(), 0x123);
    }
}
