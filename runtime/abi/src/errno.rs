//! Xen's error returns, named (the `-E*` values of Xen's public errno.h).

/// A negative errno returned by a hypercall (the value in `rax`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenError(pub i64);

impl XenError {
    /// The errno's name (`"EINVAL"`), or `"E?"` for one this table does not know (any
    /// value at all: `i64::MIN` included, which has no negation).
    ///
    /// ```
    /// use xenpv_abi::XenError;
    ///
    /// assert_eq!(XenError(-22).name(), "EINVAL");
    /// assert_eq!(XenError(-99).name(), "E?");
    /// ```
    pub const fn name(self) -> &'static str {
        match self.0.wrapping_neg() {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            22 => "EINVAL",
            28 => "ENOSPC",
            38 => "ENOSYS",
            _ => "E?",
        }
    }
}

impl core::fmt::Display for XenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}
