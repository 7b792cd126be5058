//! Xen's error returns, named.

/// A negative errno returned by a hypercall (the value in `rax`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenError(pub i64);

impl XenError {
    /// The errno's name (`"EINVAL"`), or `"E?"` for one this table does not know.
    pub const fn name(self) -> &'static str {
        match -self.0 {
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
