//! Small hypercall arguments xen-sys does not have, as Xen lays them out for x86-64.

/// `struct sched_shutdown` (`sched.h`): the argument of `SCHEDOP_shutdown`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedShutdown {
    /// `reason`: `SHUTDOWN_*`.
    pub reason: u32,
}

/// `PHYSDEVOP_set_iopl` (`physdev.h`).
pub const PHYSDEVOP_SET_IOPL: u64 = 6;

/// `struct physdev_set_iopl` (`physdev.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhysdevSetIopl {
    /// `iopl`: the virtual I/O privilege level.
    pub iopl: u32,
}

/// `CALLBACKOP_register` (`callback.h`).
pub const CALLBACKOP_REGISTER: u64 = 0;
/// `CALLBACKTYPE_failsafe` (`callback.h`).
pub const CALLBACKTYPE_FAILSAFE: u16 = 1;

/// `struct callback_register` (`callback.h`), 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallbackRegister {
    /// `type`: `CALLBACKTYPE_*`.
    pub kind: u16,
    /// `flags`: `CALLBACKF_*`.
    pub flags: u16,
    /// Padding before the 8-byte-aligned address.
    pub pad: u32,
    /// `xen_callback_t address` (an `unsigned long` on x86-64).
    pub address: u64,
}

/// `XENMEM_increase_reservation` (`memory.h`): allocate extents to the domain (a PV guest
/// gets their mfns written back; it then chooses their pfns).
pub const XENMEM_INCREASE_RESERVATION: u64 = 0;
/// `XENMEM_decrease_reservation` (`memory.h`): give the extents named by mfn (for a PV
/// guest) back to Xen.
pub const XENMEM_DECREASE_RESERVATION: u64 = 1;
/// `XENMEM_current_reservation` (`memory.h`): the domain's pages now (`tot_pages`); the
/// argument is a `domid_t`.
pub const XENMEM_CURRENT_RESERVATION: u64 = 3;
/// `XENMEM_maximum_reservation` (`memory.h`): the most pages the domain may have; the
/// argument is a `domid_t`.
pub const XENMEM_MAXIMUM_RESERVATION: u64 = 4;
/// `XENMEM_populate_physmap` (`memory.h`): allocate extents for the pfns the array names;
/// for a PV guest Xen writes each extent's mfn back over its pfn (and sets the M2P).
pub const XENMEM_POPULATE_PHYSMAP: u64 = 6;
/// `DOMID_SELF` (`xen.h`): the calling domain.
pub const DOMID_SELF: u16 = 0x7ff0;

/// `struct xen_memory_reservation` (`memory.h`), 32 bytes on x86-64: the argument of
/// `XENMEM_increase_reservation`, `decrease_reservation` and `populate_physmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryReservation {
    /// `XEN_GUEST_HANDLE(xen_pfn_t) extent_start`: the address of an array of
    /// `nr_extents` `xen_pfn_t` (mfns to give back, pfns to populate; Xen writes mfns
    /// into it for increase and populate).
    pub extent_start: u64,
    /// `xen_ulong_t nr_extents`.
    pub nr_extents: u64,
    /// `unsigned int extent_order`: 0 for 4 KiB frames.
    pub extent_order: u32,
    /// `unsigned int mem_flags` (`XENMEMF_*`): 0.
    pub mem_flags: u32,
    /// `domid_t domid`: [`DOMID_SELF`].
    pub domid: u16,
    /// Padding to the struct's 8-byte alignment.
    pub pad: [u16; 3],
}
