//! start_info, validated: Xen's page of boot facts turned into a typed view.
//!
//! The parser is a pure function over the raw bytes, so the host tests can feed it
//! garbage; every refusal names the field, the value and the limit. Offsets come from
//! `xen_sys::start_info` (`offset_of!`), not from hand-written numbers.

use core::mem::{offset_of, size_of};
use xen_sys::start_info as Raw;
use xenpv_abi::layout::{DIRECT_MAP_MAX_BYTES, PAGE_SIZE};
use xenpv_abi::{Pfn, VirtAddr};

/// [`xenpv_abi::layout::KERNEL_VIRT_BASE`] as the raw word start_info's fields are
/// checked against (they are untrusted `u64`s until checked).
const KERNEL_VIRT_BASE: u64 = xenpv_abi::layout::KERNEL_VIRT_BASE.as_u64();

/// Bytes of `struct start_info` on x86-64.
pub const RAW_SIZE: usize = size_of::<Raw>();
/// `MAX_GUEST_CMDLINE`.
pub const CMDLINE_MAX: usize = 1024;
/// Most pages the runtime can direct-map (one L3 page: 512 GiB).
pub const MAX_PAGES: u64 = DIRECT_MAP_MAX_BYTES / PAGE_SIZE;

/// `SIF_PRIVILEGED` (xen.h): the domain is privileged.
pub const SIF_PRIVILEGED: u32 = xen_sys::SIF_PRIVILEGED;
/// `SIF_INITDOMAIN`: this is dom0, the initial domain.
pub const SIF_INITDOMAIN: u32 = xen_sys::SIF_INITDOMAIN;
/// `SIF_MULTIBOOT_MOD`: `mod_start` is a multiboot module.
pub const SIF_MULTIBOOT_MOD: u32 = xen_sys::SIF_MULTIBOOT_MOD;
/// `SIF_MOD_START_PFN`: `mod_start` is a pseudo-physical frame, not a virtual address.
pub const SIF_MOD_START_PFN: u32 = xen_sys::SIF_MOD_START_PFN;
/// `SIF_VIRT_P2M_4TOOLS`: the tools understand a virtually mapped p2m list.
pub const SIF_VIRT_P2M_4TOOLS: u32 = xen_sys::SIF_VIRT_P2M_4TOOLS;
const SIF_KNOWN: u32 = SIF_PRIVILEGED
    | SIF_INITDOMAIN
    | SIF_MULTIBOOT_MOD
    | SIF_MOD_START_PFN
    | SIF_VIRT_P2M_4TOOLS
    | xen_sys::SIF_PM_MASK;

/// The console Xen describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleInfo {
    /// dom0: `console_io` to Xen's console; VGA info at this offset of start_info.
    Dom0 {
        /// Offset of the `dom0_vga_console_info` struct from start_info's start.
        info_off: u32,
        /// Its size in bytes.
        info_size: u32,
    },
    /// domU: the ring page and its event channel.
    DomU {
        /// Machine frame of the console ring page.
        mfn: u64,
        /// Event channel of the console.
        evtchn: u32,
    },
}

/// The initrd ("module") Xen handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Module {
    /// Mapped by Xen in the boot region at this virtual address.
    Mapped {
        /// Virtual address of its first byte.
        va: VirtAddr,
        /// Bytes.
        len: u64,
    },
    /// Not mapped (`SIF_MOD_START_PFN`): starts at this pseudo-physical frame.
    Pfn {
        /// Its first pseudo-physical frame.
        pfn: u64,
        /// Bytes.
        len: u64,
    },
}

impl Module {
    /// Bytes in the module.
    pub const fn len(&self) -> u64 {
        match *self {
            Module::Mapped { len, .. } | Module::Pfn { len, .. } => len,
        }
    }
    /// Is the module zero bytes long?
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Pages the module occupies.
    pub const fn pages(&self) -> u64 {
        self.len().div_ceil(PAGE_SIZE)
    }
}

/// The validated view.
#[derive(Clone, Debug)]
pub struct StartInfo {
    magic: heapless::String<32>,
    /// Pages of memory the domain has (checked: 1..=[`MAX_PAGES`]).
    pub nr_pages: u64,
    /// Machine address of shared_info.
    pub shared_info_maddr: u64,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Machine frame of the xenstore ring page.
    pub store_mfn: u64,
    /// Event channel of the xenstore ring.
    pub store_evtchn: u32,
    /// The console Xen describes.
    pub console: ConsoleInfo,
    /// Virtual address of the boot page tables' top level (checked: page-aligned, in the
    /// kernel map).
    pub pt_base: VirtAddr,
    /// Frames of boot page tables (checked: 4..=65536).
    pub nr_pt_frames: u64,
    /// Virtual address of the p2m list (pfn to mfn) Xen mapped.
    pub mfn_list: VirtAddr,
    /// The initrd, if one was given.
    pub module: Option<Module>,
    cmdline: heapless::String<CMDLINE_MAX>,
    /// First pfn of the frames that form the initial p2m table.
    pub first_p2m_pfn: u64,
    /// Frames that form the initial p2m table.
    pub nr_p2m_frames: u64,
}

/// Why start_info was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    /// Fewer bytes than `struct start_info` has.
    ShortPage {
        /// Bytes given.
        len: usize,
    },
    /// Magic not `xen-3.0-x86_64...`, or not NUL-terminated within 32 bytes.
    BadMagic,
    /// `nr_pages` is 0, or more than the direct map can hold.
    NrPages {
        /// `nr_pages` as read.
        value: u64,
        /// [`MAX_PAGES`].
        max: u64,
    },
    /// A field that must be aligned is not.
    Misaligned {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The alignment it needs, in bytes.
        align: u64,
    },
    /// A virtual address below the kernel map.
    BelowVirtBase {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// `nr_pt_frames` outside 4..=65536.
    NrPtFrames {
        /// `nr_pt_frames` as read.
        value: u64,
    },
    /// The module does not fit: `[start, start+len)` overflows or leaves guest memory.
    BadModule {
        /// `mod_start` (a virtual address, or a pfn with `SIF_MOD_START_PFN`).
        start: u64,
        /// `mod_len`.
        len: u64,
        /// Where guest memory ends (virtual for a mapped module, pseudo-physical else).
        limit: u64,
    },
    /// The command line is not UTF-8.
    CmdlineNotUtf8 {
        /// Offset of the first bad byte.
        at: usize,
    },
    /// A ring frame named by start_info (`store_mfn`, `console.domU.mfn`) is not one of
    /// this domain's frames (no pfn maps to it in the p2m).
    RingNotOurs {
        /// The field's name.
        field: &'static str,
        /// Its value.
        mfn: u64,
    },
    /// After a restore: `nr_pages` is not the domain's (the p2m and every plan are sized
    /// by it).
    NrPagesChanged {
        /// `nr_pages` as read.
        value: u64,
        /// The domain's.
        want: u64,
    },
    /// After a restore: a frame or port field holds a value no frame or port has.
    BadField {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The largest value allowed.
        max: u64,
    },
}

impl core::fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use StartInfoError::*;
        match *self {
            ShortPage { len } => write!(f, "start_info has {len} bytes, needs {RAW_SIZE}"),
            BadMagic => write!(
                f,
                "start_info magic is not \"xen-3.0-x86_64\" (NUL-terminated)"
            ),
            NrPages { value, max } => {
                write!(
                    f,
                    "nr_pages {value} out of range 1..={max} (the direct map's limit)"
                )
            }
            Misaligned {
                field,
                value,
                align,
            } => {
                write!(f, "{field} {value:#x} is not {align}-byte aligned")
            }
            BelowVirtBase { field, value } => {
                write!(
                    f,
                    "{field} {value:#x} lies below the kernel map {KERNEL_VIRT_BASE:#x}"
                )
            }
            NrPtFrames { value } => {
                write!(
                    f,
                    "nr_pt_frames {value}: a 4-level boot table needs 4..=65536"
                )
            }
            BadModule { start, len, limit } => write!(
                f,
                "initrd at {start:#x} of {len} bytes runs past the limit {limit:#x}"
            ),
            CmdlineNotUtf8 { at } => write!(f, "command line is not UTF-8 (byte {at})"),
            RingNotOurs { field, mfn } => write!(
                f,
                "{field} {mfn:#x} is not one of this domain's frames (not in the p2m)"
            ),
            NrPagesChanged { value, want } => {
                write!(f, "nr_pages {value} after a restore, the domain has {want}")
            }
            BadField { field, value, max } => {
                write!(f, "{field} {value:#x} out of range 1..={max:#x}")
            }
        }
    }
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(w)
}

// Offsets within the console union.
const CON: usize = offset_of!(Raw, console);

/// A domU's console ring (`(mfn, evtchn)`) from raw start_info bytes, before anything
/// else is validated, so that a domU can attach its console first and say why the rest
/// of start_info is refused. `None` for dom0 (no ring) or a buffer too short to hold
/// the fields. The values are Xen's and still hostile: Xen itself refuses to map an mfn
/// the domain does not own, and the port is checked by the caller.
pub fn domu_console(b: &[u8]) -> Option<(u64, u32)> {
    if b.len() < RAW_SIZE || u32_at(b, offset_of!(Raw, flags)) & SIF_INITDOMAIN != 0 {
        return None;
    }
    Some((u64_at(b, CON), u32_at(b, CON_DOMU_EVTCHN)))
}
const CON_DOMU_EVTCHN: usize =
    CON + offset_of!(xen_sys::start_info__bindgen_ty_1__bindgen_ty_1, evtchn);
const CON_DOM0_SIZE: usize =
    CON + offset_of!(xen_sys::start_info__bindgen_ty_1__bindgen_ty_2, info_size);

impl StartInfo {
    /// A domU's xenstore and console ring frames as pfns (`[store, console]`), found by
    /// looking each mfn up in the p2m (`p2m(pfn)` for pfns below `nr_pages`): a frame the
    /// domain does not own is refused, never looked up in Xen's M2P (which may not map
    /// it). dom0 has neither ring: `[None, None]`.
    pub fn ring_pfns(
        &self,
        p2m: impl Fn(Pfn) -> Option<xenpv_abi::Mfn>,
    ) -> Result<[Option<Pfn>; 2], StartInfoError> {
        let ConsoleInfo::DomU { mfn: console, .. } = self.console else {
            return Ok([None, None]);
        };
        let mut found = [None, None];
        let want = [(self.store_mfn, "store_mfn"), (console, "console.domU.mfn")];
        for p in (0..self.nr_pages).map(Pfn) {
            if let Some(m) = p2m(p) {
                for (slot, &(w, _)) in found.iter_mut().zip(&want) {
                    if slot.is_none() && m.0 == w {
                        *slot = Some(p);
                    }
                }
            }
            if found.iter().all(Option::is_some) {
                break;
            }
        }
        for (slot, &(mfn, field)) in found.iter().zip(&want) {
            if slot.is_none() {
                return Err(StartInfoError::RingNotOurs { field, mfn });
            }
        }
        Ok(found)
    }

    /// Parse and validate the raw page Xen passed (at least [`RAW_SIZE`] bytes).
    pub fn parse(b: &[u8]) -> Result<StartInfo, StartInfoError> {
        use StartInfoError::*;
        if b.len() < RAW_SIZE {
            return Err(ShortPage { len: b.len() });
        }
        let magic_str = parse_magic(b)?;
        let nr_pages = u64_at(b, offset_of!(Raw, nr_pages));
        if nr_pages == 0 || nr_pages > MAX_PAGES {
            return Err(NrPages {
                value: nr_pages,
                max: MAX_PAGES,
            });
        }
        let shared_info_maddr = u64_at(b, offset_of!(Raw, shared_info));
        aligned("shared_info", shared_info_maddr, PAGE_SIZE)?;
        let flags = u32_at(b, offset_of!(Raw, flags));
        let pt_base = kernel_va("pt_base", u64_at(b, offset_of!(Raw, pt_base)), PAGE_SIZE)?;
        let nr_pt_frames = u64_at(b, offset_of!(Raw, nr_pt_frames));
        if !(4..=65536).contains(&nr_pt_frames) {
            return Err(NrPtFrames {
                value: nr_pt_frames,
            });
        }
        let mfn_list = kernel_va("mfn_list", u64_at(b, offset_of!(Raw, mfn_list)), 8)?;
        let module = parse_module(b, flags, nr_pages)?;
        let cmdline = parse_cmdline(b)?;
        Ok(StartInfo {
            magic: heapless::String::try_from(magic_str).map_err(|_| BadMagic)?,
            nr_pages,
            shared_info_maddr,
            flags,
            store_mfn: u64_at(b, offset_of!(Raw, store_mfn)),
            store_evtchn: u32_at(b, offset_of!(Raw, store_evtchn)),
            console: parse_console(b, flags),
            pt_base,
            nr_pt_frames,
            mfn_list,
            module,
            // Cannot fail: at most CMDLINE_MAX bytes.
            cmdline: heapless::String::try_from(cmdline).map_err(|_| CmdlineNotUtf8 { at: 0 })?,
            first_p2m_pfn: u64_at(b, offset_of!(Raw, first_p2m_pfn)),
            nr_p2m_frames: u64_at(b, offset_of!(Raw, nr_p2m_frames)),
        })
    }

    /// The magic string Xen wrote (`xen-3.0-x86_64`...).
    pub fn magic(&self) -> &str {
        &self.magic
    }
    /// The command line, up to its NUL (at most [`CMDLINE_MAX`] bytes).
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }
    /// Is this dom0 (`SIF_INITDOMAIN`)?
    pub const fn is_dom0(&self) -> bool {
        self.flags & SIF_INITDOMAIN != 0
    }
    /// Flag bits this runtime does not know (reported, not refused: newer Xens add some).
    pub const fn unknown_flags(&self) -> u32 {
        self.flags & !SIF_KNOWN
    }
}

/// What a restore rewrote in the start_info page (Xen 4.17
/// `xg_sr_restore_x86_pv.c: process_start_info`): the new domain's shared_info, xenstore
/// and console rings and ports, `nr_pages` and `flags` (set to 0). Read from the same
/// page after a suspend that resumed in a new domain; everything else in the page is the
/// guest's own copy, saved and restored with its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeInfo {
    /// Machine address of the new shared_info (page-aligned, not 0).
    pub shared_info_maddr: u64,
    /// Machine frame of the xenstore ring (1..=[`MAX_MFN`]).
    pub store_mfn: u64,
    /// Port of the xenstore ring (1..=[`MAX_PORT`]).
    pub store_evtchn: u32,
    /// Machine frame of the console ring (1..=[`MAX_MFN`]).
    pub console_mfn: u64,
    /// Port of the console ring (1..=[`MAX_PORT`]).
    pub console_evtchn: u32,
    /// Pages of the domain (checked: the domain's own count).
    pub nr_pages: u64,
    /// `SIF_*` flags as written (0 after a restore): never trusted for
    /// [`SIF_INITDOMAIN`] or [`SIF_PRIVILEGED`], only reported.
    pub flags: u32,
}

/// Largest machine frame a field may name (40 address bits of frame number, the PTE
/// limit).
pub const MAX_MFN: u64 = (1 << 40) - 1;
/// Largest event-channel port of the 2-level ABI a 64-bit guest uses (64 × 64 ports).
pub const MAX_PORT: u64 = 4095;

/// The ring fields of a domU's start_info page (`store_mfn`, `console.domU.mfn`), as
/// `(store, console)`; `None` if the page is too short.
pub fn ring_fields(b: &[u8]) -> Option<(u64, u64)> {
    (b.len() >= RAW_SIZE).then(|| (u64_at(b, offset_of!(Raw, store_mfn)), u64_at(b, CON)))
}

/// Write the ring fields (before a suspend: the rings' pfns, which a restore turns into
/// the new domain's mfns; on a cancelled suspend: the mfns again). `false` if the page is
/// too short (nothing written).
pub fn set_ring_fields(b: &mut [u8], store: u64, console: u64) -> bool {
    if b.len() < RAW_SIZE {
        return false;
    }
    let store_at = offset_of!(Raw, store_mfn);
    b[store_at..store_at + 8].copy_from_slice(&store.to_le_bytes());
    b[CON..CON + 8].copy_from_slice(&console.to_le_bytes());
    true
}

impl ResumeInfo {
    /// Parse the page a restore rewrote (at least [`RAW_SIZE`] bytes) for a domain of
    /// `nr_pages` pages. Hostile input: every field is bounded, nothing panics.
    pub fn parse(b: &[u8], nr_pages: u64) -> Result<ResumeInfo, StartInfoError> {
        use StartInfoError::*;
        if b.len() < RAW_SIZE {
            return Err(ShortPage { len: b.len() });
        }
        parse_magic(b)?;
        let value = u64_at(b, offset_of!(Raw, nr_pages));
        if value != nr_pages {
            return Err(NrPagesChanged {
                value,
                want: nr_pages,
            });
        }
        let bounded = |field: &'static str, value: u64, max: u64| {
            if value == 0 || value > max {
                Err(BadField { field, value, max })
            } else {
                Ok(value)
            }
        };
        let si = u64_at(b, offset_of!(Raw, shared_info));
        bounded("shared_info", si, MAX_MFN << 12)?;
        aligned("shared_info", si, PAGE_SIZE)?;
        let port = |field, off| bounded(field, u32_at(b, off).into(), MAX_PORT).map(|p| p as u32);
        Ok(ResumeInfo {
            shared_info_maddr: si,
            store_mfn: bounded("store_mfn", u64_at(b, offset_of!(Raw, store_mfn)), MAX_MFN)?,
            store_evtchn: port("store_evtchn", offset_of!(Raw, store_evtchn))?,
            console_mfn: bounded("console.domU.mfn", u64_at(b, CON), MAX_MFN)?,
            console_evtchn: port("console.domU.evtchn", CON_DOMU_EVTCHN)?,
            nr_pages,
            flags: u32_at(b, offset_of!(Raw, flags)),
        })
    }
}

/// The one-line summary the sample app prints (`start_info: ...`).
impl core::fmt::Display for StartInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "magic=\"{}\" nr_pages={} flags={:#x} [",
            self.magic, self.nr_pages, self.flags
        )?;
        let mut sep = "";
        for (bit, name) in [
            (SIF_PRIVILEGED, "privileged"),
            (SIF_INITDOMAIN, "initdomain"),
            (SIF_MULTIBOOT_MOD, "multiboot_mod"),
            (SIF_MOD_START_PFN, "mod_start_pfn"),
            (SIF_VIRT_P2M_4TOOLS, "virt_p2m"),
        ] {
            if self.flags & bit != 0 {
                write!(f, "{sep}{name}")?;
                sep = ",";
            }
        }
        write!(
            f,
            "] shared_info={:#x} pt_base={:#x} nr_pt_frames={} mfn_list={:#x}",
            self.shared_info_maddr, self.pt_base, self.nr_pt_frames, self.mfn_list
        )?;
        match self.module {
            None => write!(f, " module=none")?,
            Some(Module::Mapped { va, len }) => write!(f, " module=mapped@{va:#x}+{len}")?,
            Some(Module::Pfn { pfn, len }) => write!(f, " module=pfn{pfn:#x}+{len}")?,
        }
        match self.console {
            ConsoleInfo::Dom0 { .. } => write!(f, " console=dom0")?,
            ConsoleInfo::DomU { mfn, evtchn } => write!(f, " console=mfn{mfn:#x}/evtchn{evtchn}")?,
        }
        write!(f, " cmdline=\"{}\"", self.cmdline)
    }
}

/// The magic string up to its NUL: `xen-3.0-x86_64`... or [`StartInfoError::BadMagic`].
fn parse_magic(b: &[u8]) -> Result<&str, StartInfoError> {
    let magic_raw = &b[offset_of!(Raw, magic)..offset_of!(Raw, magic) + 32];
    let nul = magic_raw
        .iter()
        .position(|&c| c == 0)
        .ok_or(StartInfoError::BadMagic)?;
    let magic_str =
        core::str::from_utf8(&magic_raw[..nul]).map_err(|_| StartInfoError::BadMagic)?;
    if !magic_str.starts_with("xen-3.0-x86_64") {
        return Err(StartInfoError::BadMagic);
    }
    Ok(magic_str)
}

/// `value` is a multiple of `align`, or `field` is [`StartInfoError::Misaligned`].
fn aligned(field: &'static str, value: u64, align: u64) -> Result<(), StartInfoError> {
    if value.is_multiple_of(align) {
        Ok(())
    } else {
        Err(StartInfoError::Misaligned {
            field,
            value,
            align,
        })
    }
}

/// `value` is a kernel virtual address (at or above the image base), aligned to `align`.
fn kernel_va(field: &'static str, value: u64, align: u64) -> Result<VirtAddr, StartInfoError> {
    if value < KERNEL_VIRT_BASE {
        return Err(StartInfoError::BelowVirtBase { field, value });
    }
    aligned(field, value, align)?;
    Ok(canonical(value))
}

/// A word at or above [`KERNEL_VIRT_BASE`] (`0xffff_ffff_8…`) as a virtual address: it is
/// canonical (bits 47..63 all set), so truncation never changes it.
fn canonical(value: u64) -> VirtAddr {
    VirtAddr::new_truncate(value)
}

/// The console union: dom0's `console_info` place, or a domU's ring and event channel.
fn parse_console(b: &[u8], flags: u32) -> ConsoleInfo {
    if flags & SIF_INITDOMAIN != 0 {
        ConsoleInfo::Dom0 {
            info_off: u32_at(b, CON),
            info_size: u32_at(b, CON_DOM0_SIZE),
        }
    } else {
        ConsoleInfo::DomU {
            mfn: u64_at(b, CON),
            evtchn: u32_at(b, CON_DOMU_EVTCHN),
        }
    }
}

/// The boot module (initrd), if any: by pfn (`SIF_MOD_START_PFN`) inside the domain's
/// memory, or mapped inside the boot region, which is a 1:1 view of the first pfns.
fn parse_module(b: &[u8], flags: u32, nr_pages: u64) -> Result<Option<Module>, StartInfoError> {
    let mod_start = u64_at(b, offset_of!(Raw, mod_start));
    let mod_len = u64_at(b, offset_of!(Raw, mod_len));
    let bad = |limit| StartInfoError::BadModule {
        start: mod_start,
        len: mod_len,
        limit,
    };
    if mod_len == 0 {
        return Ok(None);
    }
    if flags & SIF_MOD_START_PFN != 0 {
        let limit = nr_pages * PAGE_SIZE;
        let start = mod_start.checked_mul(PAGE_SIZE);
        return match start.and_then(|s| s.checked_add(mod_len)) {
            Some(end) if end <= limit => Ok(Some(Module::Pfn {
                pfn: mod_start,
                len: mod_len,
            })),
            _ => Err(bad(limit)),
        };
    }
    if mod_start < KERNEL_VIRT_BASE {
        return Err(StartInfoError::BelowVirtBase {
            field: "mod_start",
            value: mod_start,
        });
    }
    match mod_start.checked_add(mod_len) {
        // The boot region is a 1:1 view of the first pfns: it cannot exceed memory.
        Some(end) if end - KERNEL_VIRT_BASE <= nr_pages * PAGE_SIZE => Ok(Some(Module::Mapped {
            va: canonical(mod_start),
            len: mod_len,
        })),
        _ => Err(bad(KERNEL_VIRT_BASE.wrapping_add(nr_pages * PAGE_SIZE))),
    }
}

/// The command line up to its NUL (all 1024 bytes if Xen did not terminate it), UTF-8.
fn parse_cmdline(b: &[u8]) -> Result<&str, StartInfoError> {
    let cl = &b[offset_of!(Raw, cmd_line)..offset_of!(Raw, cmd_line) + CMDLINE_MAX];
    let cl = &cl[..cl.iter().position(|&c| c == 0).unwrap_or(CMDLINE_MAX)];
    core::str::from_utf8(cl).map_err(|e| StartInfoError::CmdlineNotUtf8 {
        at: e.valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn put64(b: &mut [u8], off: usize, v: u64) {
        b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// A plausible dom0 start_info, as Xen 4.17 builds one.
    fn good() -> Vec<u8> {
        let mut b = vec![0u8; RAW_SIZE];
        b[..15].copy_from_slice(b"xen-3.0-x86_64\0");
        put64(&mut b, offset_of!(Raw, nr_pages), 65536);
        put64(&mut b, offset_of!(Raw, shared_info), 0x1234_5000);
        b[offset_of!(Raw, flags)] = (SIF_PRIVILEGED | SIF_INITDOMAIN) as u8;
        put64(&mut b, offset_of!(Raw, pt_base), 0xffff_ffff_8040_0000);
        put64(&mut b, offset_of!(Raw, nr_pt_frames), 6);
        put64(&mut b, offset_of!(Raw, mfn_list), 0xffff_ffff_8030_0000);
        put64(&mut b, offset_of!(Raw, mod_start), 0xffff_ffff_8020_0000);
        put64(&mut b, offset_of!(Raw, mod_len), 4096);
        let cl = b"split=1G panic";
        b[offset_of!(Raw, cmd_line)..][..cl.len()].copy_from_slice(cl);
        b
    }

    /// A domU's start_info: store ring mfn 0x500, console ring mfn 0x501, port 2.
    fn domu() -> Vec<u8> {
        let mut b = good();
        b[offset_of!(Raw, flags)] = 0;
        put64(&mut b, offset_of!(Raw, store_mfn), 0x500);
        put64(&mut b, CON, 0x501);
        b[CON_DOMU_EVTCHN] = 2;
        b
    }

    /// The domU page after a restore: new shared_info, rings, ports; flags 0.
    fn restored() -> Vec<u8> {
        let mut b = domu();
        put64(&mut b, offset_of!(Raw, shared_info), 0x9876_5000);
        put64(&mut b, offset_of!(Raw, store_mfn), 0x7700);
        b[offset_of!(Raw, store_evtchn)] = 1;
        put64(&mut b, CON, 0x7701);
        b[CON_DOMU_EVTCHN] = 3;
        b
    }

    #[test]
    fn resume_info_reads_what_a_restore_rewrote() {
        let r = ResumeInfo::parse(&restored(), 65536).unwrap();
        assert_eq!(
            r,
            ResumeInfo {
                shared_info_maddr: 0x9876_5000,
                store_mfn: 0x7700,
                store_evtchn: 1,
                console_mfn: 0x7701,
                console_evtchn: 3,
                nr_pages: 65536,
                flags: 0,
            }
        );
        // Flags are reported, never trusted: a restored page claiming dom0 parses the same.
        let mut b = restored();
        b[offset_of!(Raw, flags)] = (SIF_PRIVILEGED | SIF_INITDOMAIN) as u8;
        assert_eq!(ResumeInfo::parse(&b, 65536).unwrap().flags, 3);
    }

    #[test]
    fn ring_fields_round_trip() {
        let mut b = domu();
        assert_eq!(ring_fields(&b), Some((0x500, 0x501)));
        assert!(set_ring_fields(&mut b, 0x10, 0x11));
        assert_eq!(ring_fields(&b), Some((0x10, 0x11)));
        // Only the two fields changed: the rest parses as before.
        let si = StartInfo::parse(&b).unwrap();
        assert_eq!((si.store_mfn, si.nr_pages), (0x10, 65536));
        assert!(!set_ring_fields(&mut b[..64], 1, 2));
        assert_eq!(ring_fields(&b[..64]), None);
    }

    #[test]
    fn resume_info_refuses_each_bad_field_by_name() {
        use StartInfoError::*;
        let p = |b: &[u8]| ResumeInfo::parse(b, 65536);
        assert_eq!(p(&restored()[..100]), Err(ShortPage { len: 100 }));
        assert_eq!(
            ResumeInfo::parse(&restored(), 4096),
            Err(NrPagesChanged {
                value: 65536,
                want: 4096
            })
        );
        let cases: [(usize, u64, &str); 6] = [
            (offset_of!(Raw, shared_info), 0, "shared_info"),
            (offset_of!(Raw, store_mfn), 0, "store_mfn"),
            (offset_of!(Raw, store_mfn), 1 << 40, "store_mfn"),
            (CON, u64::MAX, "console.domU.mfn"),
            (offset_of!(Raw, store_evtchn), 4096, "store_evtchn"),
            (CON_DOMU_EVTCHN, 0, "console.domU.evtchn"),
        ];
        for (off, v, field) in cases {
            let mut b = restored();
            if off == offset_of!(Raw, store_evtchn) || off == CON_DOMU_EVTCHN {
                b[off..off + 4].copy_from_slice(&(v as u32).to_le_bytes());
            } else {
                put64(&mut b, off, v);
            }
            match p(&b) {
                Err(BadField {
                    field: f, value, ..
                }) => assert_eq!((f, value), (field, v)),
                other => panic!("{field}={v:#x}: {other:?}"),
            }
        }
        let mut b = restored();
        put64(&mut b, offset_of!(Raw, shared_info), 0x9876_5008);
        assert!(matches!(
            p(&b),
            Err(Misaligned {
                field: "shared_info",
                ..
            })
        ));
        let mut b = restored();
        b[0] = b'X';
        assert_eq!(p(&b), Err(BadMagic));
    }

    proptest! {
        #[test]
        fn resume_info_never_panics_and_bounds_what_it_accepts(
            bytes in proptest::collection::vec(any::<u8>(), 0..RAW_SIZE + 64),
            nr in 1u64..=MAX_PAGES,
        ) {
            if let Ok(r) = ResumeInfo::parse(&bytes, nr) {
                prop_assert_eq!(r.nr_pages, nr);
                prop_assert!(r.store_mfn >= 1 && r.store_mfn <= MAX_MFN);
                prop_assert!(r.console_mfn >= 1 && r.console_mfn <= MAX_MFN);
                prop_assert!(r.store_evtchn >= 1 && u64::from(r.store_evtchn) <= MAX_PORT);
                prop_assert!(r.console_evtchn >= 1 && u64::from(r.console_evtchn) <= MAX_PORT);
                prop_assert!(r.shared_info_maddr != 0 && r.shared_info_maddr % PAGE_SIZE == 0);
            }
        }
    }

    #[test]
    fn ring_frames_are_found_in_the_p2m_or_refused() {
        let si = StartInfo::parse(&domu()).unwrap();
        // pfn p maps mfn 0x400 + p: the rings are pfns 0x100 and 0x101.
        let p2m = |p: Pfn| Some(xenpv_abi::Mfn(0x400 + p.0));
        assert_eq!(si.ring_pfns(p2m), Ok([Some(Pfn(0x100)), Some(Pfn(0x101))]));
        // A console mfn no pfn maps to: refused, naming the field.
        let mut b = domu();
        put64(&mut b, CON, 0xdead_beef);
        let si = StartInfo::parse(&b).unwrap();
        let e = si.ring_pfns(p2m).unwrap_err();
        assert_eq!(
            e,
            StartInfoError::RingNotOurs {
                field: "console.domU.mfn",
                mfn: 0xdead_beef
            }
        );
        assert!(e.to_string().contains("0xdeadbeef"), "{e}");
        // dom0 has no rings to find.
        let si = StartInfo::parse(&good()).unwrap();
        assert_eq!(si.ring_pfns(|_| None), Ok([None, None]));
        // The early console fields, for a domU only.
        assert_eq!(domu_console(&domu()), Some((0x501, 2)));
        assert_eq!(domu_console(&good()), None);
        assert_eq!(domu_console(&domu()[..100]), None);
    }

    #[test]
    fn layout_matches_xen_headers() {
        // xen/include/public/xen.h, x86-64.
        assert_eq!(RAW_SIZE, 1168);
        assert_eq!(offset_of!(Raw, nr_pages), 32);
        assert_eq!(offset_of!(Raw, flags), 48);
        assert_eq!(offset_of!(Raw, console), 72);
        assert_eq!(offset_of!(Raw, pt_base), 88);
        assert_eq!(offset_of!(Raw, mod_len), 120);
        assert_eq!(offset_of!(Raw, cmd_line), 128);
        assert_eq!(offset_of!(Raw, nr_p2m_frames), 1160);
        assert_eq!(CON_DOMU_EVTCHN, 80);
        assert_eq!(CON_DOM0_SIZE, 76);
    }

    #[test]
    fn parses_a_dom0_start_info() {
        let si = StartInfo::parse(&good()).unwrap();
        assert!(si.is_dom0());
        assert_eq!(si.nr_pages, 65536);
        assert_eq!(si.cmdline(), "split=1G panic");
        assert_eq!(
            si.module,
            Some(Module::Mapped {
                va: VirtAddr::new(0xffff_ffff_8020_0000),
                len: 4096
            })
        );
        let s = format!("{si}");
        assert!(
            s.starts_with(
                "magic=\"xen-3.0-x86_64\" nr_pages=65536 flags=0x3 [privileged,initdomain]"
            ),
            "{s}"
        );
    }

    #[test]
    fn refusals_name_field_value_and_limit() {
        let mut b = good();
        put64(&mut b, offset_of!(Raw, nr_pages), MAX_PAGES + 1);
        let e = StartInfo::parse(&b).unwrap_err();
        assert_eq!(
            e,
            StartInfoError::NrPages {
                value: MAX_PAGES + 1,
                max: MAX_PAGES
            }
        );
        assert!(format!("{e}").contains(&format!("{}", MAX_PAGES + 1)));

        let mut b = good();
        put64(&mut b, offset_of!(Raw, mod_len), u64::MAX - 5);
        assert!(matches!(
            StartInfo::parse(&b),
            Err(StartInfoError::BadModule { .. })
        ));

        let mut b = good();
        b[offset_of!(Raw, flags)] |= SIF_MOD_START_PFN as u8;
        put64(&mut b, offset_of!(Raw, mod_start), 65535);
        put64(&mut b, offset_of!(Raw, mod_len), 8192);
        assert_eq!(
            StartInfo::parse(&b).unwrap_err(),
            StartInfoError::BadModule {
                start: 65535,
                len: 8192,
                limit: 65536 * 4096
            }
        );

        let mut b = good();
        b[0] = b'X';
        assert_eq!(StartInfo::parse(&b).unwrap_err(), StartInfoError::BadMagic);
        assert_eq!(
            StartInfo::parse(&b[..100]).unwrap_err(),
            StartInfoError::ShortPage { len: 100 }
        );

        let mut b = good();
        b[offset_of!(Raw, cmd_line) + 3] = 0xff;
        assert_eq!(
            StartInfo::parse(&b).unwrap_err(),
            StartInfoError::CmdlineNotUtf8 { at: 3 }
        );
    }

    #[test]
    fn an_unterminated_command_line_is_read_whole() {
        let mut b = good();
        b[offset_of!(Raw, cmd_line)..][..CMDLINE_MAX].fill(b'a');
        assert_eq!(StartInfo::parse(&b).unwrap().cmdline().len(), CMDLINE_MAX);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
            let _ = StartInfo::parse(&bytes);
        }

        #[test]
        fn mutated_good_pages_never_panic(idx in 0usize..RAW_SIZE, val in any::<u8>()) {
            let mut b = good();
            b[idx] = val;
            if let Ok(si) = StartInfo::parse(&b) {
                let _ = format!("{si}");
            }
        }
    }
}
