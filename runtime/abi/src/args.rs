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
