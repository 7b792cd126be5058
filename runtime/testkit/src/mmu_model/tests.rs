//! The model accepts what Xen accepts and refuses what Xen refuses, with Xen's errno.
use super::*;
use proptest::prelude::*;
use xenpv_paging::{Maddr as TA, Mfn as TM};

/// Entry flags as a guest writes them (Xen adds USER etc. itself).
const T: u64 = P | RW;
const VA: u64 = KERNEL_VIRT_BASE; // L4[511] L3[510] L2[0] L1[0]

fn fresh(n: u64, io_caps: bool) -> (XenPvModel, Vec<Mfn>) {
    let mut m = XenPvModel::new(io_caps);
    let f: Vec<Mfn> = (0..n).map(|i| 0x4000 + i * 3).collect();
    m.add_frames(f.iter().copied());
    (m, f)
}
fn ptr(table: Mfn, slot: usize) -> u64 {
    (table << 12) | (slot as u64 * 8)
}
fn put(m: &mut XenPvModel, table: Mfn, slot: usize, val: u64) -> Result<(), Refusal> {
    m.apply(MmuOp::PtUpdate {
        ptr: TA(ptr(table, slot)),
        val,
    })
}
fn pin(m: &mut XenPvModel, level: Level, mfn: Mfn) -> Result<(), Refusal> {
    m.apply(MmuOp::Pin {
        level,
        mfn: TM(mfn),
    })
}
fn e(mfn: Mfn, flags: u64) -> u64 {
    (mfn << 12) | flags
}
/// L4 f[0] -> L3 f[1] -> L2 f[2] -> L1 f[3] -> data f[4] at `VA`, read-write, built
/// with plain writes in untyped frames.
fn tree(m: &mut XenPvModel, f: &[Mfn]) {
    put(m, f[3], index(VA, Level::L1), e(f[4], T)).unwrap();
    put(m, f[2], index(VA, Level::L2), e(f[3], T)).unwrap();
    put(m, f[1], index(VA, Level::L3), e(f[2], T)).unwrap();
    put(m, f[0], index(VA, Level::L4), e(f[1], T)).unwrap();
}
fn pinned_tree(io_caps: bool) -> (XenPvModel, Vec<Mfn>) {
    let (mut m, f) = fresh(12, io_caps);
    tree(&mut m, &f);
    pin(&mut m, Level::L4, f[0]).unwrap();
    (m, f)
}
fn ty(m: &XenPvModel, mfn: Mfn) -> (PageType, u32, bool) {
    let t = m.frame_type(mfn);
    (t.ty, t.count, t.pinned)
}

#[test]
fn plain_writes_to_untyped_frames_are_stored_verbatim() {
    let (mut m, f) = fresh(4, false);
    // Anything goes in an untyped frame: even flags Xen would refuse in a table.
    put(&mut m, f[0], 7, 0xdead_beef_0000_0083).unwrap();
    assert_eq!(m.read_machine(ptr(f[0], 7)), 0xdead_beef_0000_0083);
    assert_eq!(ty(&m, f[0]), (PageType::None, 0, false));
    m.check_invariants().unwrap();
}

#[test]
fn accepts_a_fresh_tree_pinned_switched_and_the_old_one_unpinned() {
    let (mut m, f) = pinned_tree(false);
    m.apply(MmuOp::NewBaseptr { mfn: TM(f[0]) }).unwrap();
    assert_eq!(ty(&m, f[0]), (PageType::L4, 2, true));
    assert_eq!(ty(&m, f[1]), (PageType::L3, 1, false));
    assert_eq!(ty(&m, f[3]), (PageType::L1, 1, false));
    assert_eq!(ty(&m, f[4]), (PageType::Writable, 1, false));
    let t = m.translate(VA).unwrap();
    assert_eq!(
        (t.mfn, t.writable, t.nx, t.user),
        (f[4], true, false, false)
    );
    // Validation stored the entries as Xen adjusts them.
    assert_eq!(
        m.read_machine(ptr(f[3], 0)),
        e(f[4], T | USER | GUEST_KERNEL)
    );
    assert_eq!(m.read_machine(ptr(f[2], 0)), e(f[3], T | USER));
    assert_eq!(m.read_machine(ptr(f[0], 511)), e(f[1], T | USER | A));
    // Xen filled its slots, including the linear self map in 258.
    assert_eq!(m.read_machine(ptr(f[0], 258)), e(f[0], P | RW | A | D));
    m.write_va(VA + 8, 42).unwrap();
    assert_eq!(m.read_va(VA + 8), Ok(42));
    m.check_invariants().unwrap();

    // A second tree in f[5..10], switched to; the first unpinned: released recursively.
    let g = &f[5..10];
    tree(&mut m, g);
    pin(&mut m, Level::L4, g[0]).unwrap();
    m.apply(MmuOp::NewBaseptr { mfn: TM(g[0]) }).unwrap();
    assert_eq!(
        ty(&m, f[0]),
        (PageType::L4, 1, true),
        "old base keeps its pin"
    );
    m.apply(MmuOp::Unpin { mfn: TM(f[0]) }).unwrap();
    for &x in &f[0..5] {
        assert_eq!(ty(&m, x), (PageType::None, 0, false), "mfn {x:#x}");
        assert_eq!(m.frame_type(x).refs, 0);
    }
    assert_eq!(m.translate(VA).unwrap().mfn, g[4]);
    m.check_invariants().unwrap();
}

#[test]
fn new_baseptr_needs_no_pin_and_drops_the_old_base() {
    let (mut m, f) = fresh(12, false);
    tree(&mut m, &f);
    m.apply(MmuOp::NewBaseptr { mfn: TM(f[0]) }).unwrap(); // validates, not pinned
    assert_eq!(ty(&m, f[0]), (PageType::L4, 1, false));
    assert_eq!(ty(&m, f[3]), (PageType::L1, 1, false));
    m.apply(MmuOp::NewBaseptr { mfn: TM(f[0]) }).unwrap(); // same base: no change
    assert_eq!(ty(&m, f[0]), (PageType::L4, 1, false));
    put(&mut m, f[6], 0, 0).unwrap();
    m.apply(MmuOp::NewBaseptr { mfn: TM(f[6]) }).unwrap();
    // The old base was only held by cr3: devalidated, its subtree released.
    for &x in &f[0..5] {
        assert_eq!(ty(&m, x), (PageType::None, 0, false));
    }
    assert_eq!(m.translate(VA), None);
    m.check_invariants().unwrap();
}

#[test]
fn pin_fails_ebusy_when_a_table_maps_its_own_ancestor_rw() {
    let (mut m, f) = fresh(12, false);
    tree(&mut m, &f);
    // The L1 maps the L2 frame RW: the L2 has taken its type before its L1 is validated.
    put(&mut m, f[3], 1, e(f[2], T)).unwrap();
    let x = pin(&mut m, Level::L4, f[0]).unwrap_err();
    assert_eq!(x.errno, EBUSY, "{}", x.what);
    for &y in &f[0..5] {
        assert_eq!(ty(&m, y).1, 0, "a failed pin leaves nothing typed: {y:#x}");
    }
    m.check_invariants().unwrap();
}

#[test]
fn pin_fails_einval_when_an_earlier_l1_maps_a_later_table_rw() {
    let (mut m, f) = fresh(12, false);
    tree(&mut m, &f);
    // L2[1] -> second L1 f[5]; the first L1 (validated first) maps f[5] RW.
    put(&mut m, f[3], 1, e(f[5], T)).unwrap();
    put(&mut m, f[2], 1, e(f[5], T)).unwrap();
    let x = pin(&mut m, Level::L4, f[0]).unwrap_err();
    assert_eq!(x.errno, EINVAL, "{}", x.what);
    assert_eq!(ty(&m, f[5]).1, 0);
    m.check_invariants().unwrap();
    // Read-only is fine.
    put(&mut m, f[3], 1, e(f[5], P)).unwrap();
    pin(&mut m, Level::L4, f[0]).unwrap();
    m.check_invariants().unwrap();
}

#[test]
fn rw_mapping_of_a_pinned_table_is_refused_read_only_is_fine() {
    let (mut m, f) = pinned_tree(false);
    let x = put(&mut m, f[3], 2, e(f[1], T)).unwrap_err();
    assert_eq!(x.errno, EBUSY, "{}", x.what);
    assert_eq!(m.read_machine(ptr(f[3], 2)), 0, "nothing written");
    put(&mut m, f[3], 2, e(f[1], P)).unwrap();
    assert_eq!(m.frame_type(f[1]).count, 1, "RO mappings take no type ref");
    assert_eq!(m.frame_type(f[1]).refs, 2);
    // Upgrading that RO entry to RW is refused too.
    assert_eq!(put(&mut m, f[3], 2, e(f[1], T)).unwrap_err().errno, EBUSY);
    m.check_invariants().unwrap();
}

#[test]
fn a_frame_mapped_rw_cannot_become_a_table() {
    let (mut m, f) = pinned_tree(false);
    m.apply(MmuOp::NewBaseptr { mfn: TM(f[0]) }).unwrap();
    put(&mut m, f[3], 5, e(f[6], T)).unwrap();
    assert_eq!(ty(&m, f[6]), (PageType::Writable, 1, false));
    // Writes into it are plain (it is writable-typed), but it cannot be pinned.
    put(&mut m, f[6], 0, 0x1234).unwrap();
    assert_eq!(m.read_va(VA + 5 * PAGE), Ok(0x1234));
    assert_eq!(pin(&mut m, Level::L1, f[6]).unwrap_err().errno, EINVAL);
    assert_eq!(put(&mut m, f[2], 9, e(f[6], T)).unwrap_err().errno, EINVAL);
    m.check_invariants().unwrap();
}

#[test]
fn flag_masks_per_level() {
    let (mut m, f) = pinned_tree(false);
    // PSE, GLOBAL, PWT, PCD refused in L2..L4.
    for bad in [pte::PSE, pte::GLOBAL, pte::PWT, pte::PCD] {
        assert_eq!(
            put(&mut m, f[2], 1, e(f[5], T | bad)).unwrap_err().errno,
            EINVAL
        );
        assert_eq!(
            put(&mut m, f[1], 1, e(f[5], T | bad)).unwrap_err().errno,
            EINVAL
        );
        assert_eq!(
            put(&mut m, f[0], 1, e(f[5], T | bad)).unwrap_err().errno,
            EINVAL
        );
    }
    // NX, USER, A, D and the AVAIL bits are fine in L2.
    put(
        &mut m,
        f[2],
        1,
        e(f[5], T | pte::NX | USER | A | D | AVAIL | (1 << 55)),
    )
    .unwrap();
    // L1: GLOBAL, NX fine; PAT/PWT/PCD refused without I/O caps; bit 62 always refused.
    put(&mut m, f[3], 1, e(f[6], T | pte::GLOBAL | pte::NX)).unwrap();
    for bad in [PAT, pte::PWT, pte::PCD, GNTTAB] {
        assert_eq!(
            put(&mut m, f[3], 2, e(f[7], T | bad)).unwrap_err().errno,
            EINVAL
        );
    }
    m.check_invariants().unwrap();
    let (mut d, g) = pinned_tree(true); // dom0: cache attributes allowed
    put(&mut d, g[3], 2, e(g[7], T | pte::PWT | pte::PCD | PAT)).unwrap();
    assert_eq!(
        put(&mut d, g[3], 3, e(g[7], T | GNTTAB)).unwrap_err().errno,
        EINVAL
    );
    d.check_invariants().unwrap();
}

#[test]
fn pse_in_a_plain_written_l2_fails_at_pin() {
    let (mut m, f) = fresh(12, false);
    tree(&mut m, &f);
    put(&mut m, f[2], 3, e(f[8], T | pte::PSE)).unwrap(); // plain write: accepted
    let x = pin(&mut m, Level::L4, f[0]).unwrap_err();
    assert_eq!(x.errno, EINVAL, "{}", x.what);
    m.check_invariants().unwrap();
}

#[test]
fn user_mappings_get_global_and_read_back_differs() {
    let (mut m, f) = pinned_tree(false);
    m.apply(MmuOp::NewBaseptr { mfn: TM(f[0]) }).unwrap();
    put(&mut m, f[3], 1, e(f[6], T | USER)).unwrap();
    assert_eq!(
        m.read_machine(ptr(f[3], 1)),
        e(f[6], T | USER | pte::GLOBAL)
    );
    assert!(m.translate(VA + PAGE).unwrap().user);
    assert!(!m.translate(VA).unwrap().user);
    m.check_invariants().unwrap();
}

#[test]
fn writes_into_xen_l4_slots_are_refused_and_plain_ones_are_clobbered() {
    let (mut m, f) = pinned_tree(false);
    for slot in [256, 258, 271] {
        let x = put(&mut m, f[0], slot, e(f[6], T)).unwrap_err();
        assert_eq!(x.errno, EINVAL, "{}", x.what);
    }
    put(&mut m, f[0], 272, e(f[6], T)).unwrap(); // first guest slot above Xen's
    assert_eq!(ty(&m, f[6]), (PageType::L3, 1, false));
    // Before validation anything may be written there; Xen overwrites it.
    put(&mut m, f[7], 260, e(f[8], T)).unwrap();
    pin(&mut m, Level::L4, f[7]).unwrap();
    assert_ne!(frame(m.read_machine(ptr(f[7], 260))), f[8]);
    assert_eq!(ty(&m, f[8]).1, 0, "no reference taken for a Xen slot");
    m.check_invariants().unwrap();
}

#[test]
fn unpinning_an_unpinned_frame_and_pinning_twice_fail() {
    let (mut m, f) = pinned_tree(false);
    assert_eq!(
        m.apply(MmuOp::Unpin { mfn: TM(f[1]) }).unwrap_err().errno,
        EINVAL
    );
    assert_eq!(
        m.apply(MmuOp::Unpin { mfn: TM(f[9]) }).unwrap_err().errno,
        EINVAL
    );
    assert_eq!(
        m.apply(MmuOp::Unpin { mfn: TM(0x99) }).unwrap_err().errno,
        EINVAL
    );
    assert_eq!(pin(&mut m, Level::L4, f[0]).unwrap_err().errno, EINVAL);
    assert_eq!(ty(&m, f[0]), (PageType::L4, 1, true), "count unchanged");
    // Pinning a referenced table of the right type just adds a reference.
    pin(&mut m, Level::L3, f[1]).unwrap();
    assert_eq!(ty(&m, f[1]), (PageType::L3, 2, true));
    assert_eq!(pin(&mut m, Level::L2, f[1]).unwrap_err().errno, EINVAL);
    m.check_invariants().unwrap();
}

#[test]
fn new_baseptr_to_a_non_l4_or_foreign_frame_fails() {
    let (mut m, f) = pinned_tree(false);
    for x in [f[1], f[3], f[4]] {
        assert_eq!(
            m.apply(MmuOp::NewBaseptr { mfn: TM(x) }).unwrap_err().errno,
            EINVAL
        );
    }
    assert_eq!(
        m.apply(MmuOp::NewBaseptr { mfn: TM(0x77) })
            .unwrap_err()
            .errno,
        EINVAL
    );
    assert_eq!(m.base(), None);
    m.check_invariants().unwrap();
}

#[test]
fn clear_page_refuses_page_tables() {
    let (mut m, f) = pinned_tree(false);
    for x in [f[0], f[1], f[2], f[3]] {
        assert_eq!(
            m.apply(MmuOp::ClearPage { mfn: TM(x) }).unwrap_err().errno,
            EINVAL
        );
    }
    assert_eq!(
        m.apply(MmuOp::ClearPage { mfn: TM(0x55) })
            .unwrap_err()
            .errno,
        EINVAL
    );
    // Writable (mapped) and untyped frames are fine.
    put(&mut m, f[4], 3, 9).unwrap();
    m.apply(MmuOp::ClearPage { mfn: TM(f[4]) }).unwrap();
    assert_eq!(m.read_machine(ptr(f[4], 3)), 0);
    assert_eq!(ty(&m, f[4]), (PageType::Writable, 1, false));
    m.apply(MmuOp::ClearPage { mfn: TM(f[9]) }).unwrap();
    // A former table (type count back to 0) is fine too.
    m.apply(MmuOp::Unpin { mfn: TM(f[0]) }).unwrap();
    m.apply(MmuOp::ClearPage { mfn: TM(f[2]) }).unwrap();
    m.check_invariants().unwrap();
}

#[test]
fn entries_referencing_foreign_or_mmio_frames() {
    let (mut m, f) = pinned_tree(false);
    m.add_io(0xfee00);
    assert_eq!(put(&mut m, f[3], 1, e(0x123, P)).unwrap_err().errno, EBUSY);
    assert_eq!(
        put(&mut m, f[3], 1, e(0xfee00, T)).unwrap_err().errno,
        EPERM
    );
    assert_eq!(put(&mut m, f[2], 1, e(0x123, T)).unwrap_err().errno, EINVAL);
    assert_eq!(put(&mut m, f[1], 1, e(0x123, T)).unwrap_err().errno, EINVAL);
    assert_eq!(put(&mut m, f[0], 1, e(0x123, T)).unwrap_err().errno, EINVAL);
    // mmu_update into a frame not the domain's.
    assert_eq!(put(&mut m, 0x123, 0, 0).unwrap_err().errno, EINVAL);
    let (mut d, g) = pinned_tree(true);
    d.add_io(0xfee00);
    put(&mut d, g[3], 1, e(0xfee00, T | pte::PCD)).unwrap(); // dom0 maps MMIO
    d.check_invariants().unwrap();
    m.check_invariants().unwrap();
}

#[test]
fn shared_info_is_mappable_never_a_table() {
    let (mut m, f) = pinned_tree(false);
    m.add_xen_shared(0xabcde);
    put(&mut m, f[3], 1, e(0xabcde, T)).unwrap();
    assert_eq!(ty(&m, 0xabcde), (PageType::Writable, 2, false));
    assert_eq!(pin(&mut m, Level::L1, 0xabcde).unwrap_err().errno, EINVAL);
    let (mut d, g) = pinned_tree(true);
    d.add_xen_shared(0xabcde);
    assert_eq!(
        put(&mut d, g[3], 1, e(0xabcde, T | pte::PCD))
            .unwrap_err()
            .errno,
        EACCES
    );
    put(&mut m, f[3], 1, 0).unwrap();
    assert_eq!(ty(&m, 0xabcde), (PageType::Writable, 1, false));
    m.check_invariants().unwrap();
    d.check_invariants().unwrap();
}

#[test]
fn ptr_low_bits_are_the_command() {
    let (mut m, f) = pinned_tree(false);
    for low in 4..8 {
        let x = m
            .apply(MmuOp::PtUpdate {
                ptr: TA(ptr(f[4], 1) | low),
                val: 5,
            })
            .unwrap_err();
        assert_eq!(x.errno, ENOSYS);
    }
    // ptr | 1 is MMU_MACHPHYS_UPDATE: accepted, but no entry is written.
    m.apply(MmuOp::PtUpdate {
        ptr: TA(ptr(f[4], 1) | 1),
        val: 77,
    })
    .unwrap();
    assert_eq!(m.read_machine(ptr(f[4], 1)), 0);
    assert_eq!(m.m2p(f[4]), Some(77));
    // | 2 (PRESERVE_AD) and | 3 (NO_TRANSLATE) are PT updates.
    m.apply(MmuOp::PtUpdate {
        ptr: TA(ptr(f[3], 1) | 2),
        val: e(f[6], T),
    })
    .unwrap();
    m.apply(MmuOp::PtUpdate {
        ptr: TA(ptr(f[3], 2) | 3),
        val: e(f[7], T),
    })
    .unwrap();
    assert_eq!(ty(&m, f[7]), (PageType::Writable, 1, false));
    m.check_invariants().unwrap();
}

#[test]
fn an_l2_referenced_from_two_l3_slots_holds_two_type_refs() {
    let (mut m, f) = pinned_tree(false);
    put(&mut m, f[1], 0, e(f[2], T)).unwrap();
    assert_eq!(ty(&m, f[2]), (PageType::L2, 2, false));
    // Both aliases translate the same.
    assert_eq!(m.frame_type(f[2]).refs, 2);
    put(&mut m, f[1], index(VA, Level::L3), 0).unwrap();
    assert_eq!(ty(&m, f[2]), (PageType::L2, 1, false));
    put(&mut m, f[1], 0, 0).unwrap();
    assert_eq!(ty(&m, f[2]), (PageType::None, 0, false));
    assert_eq!(
        ty(&m, f[3]),
        (PageType::None, 0, false),
        "released recursively"
    );
    assert_eq!(ty(&m, f[4]), (PageType::None, 0, false));
    m.check_invariants().unwrap();
}

#[test]
fn fast_path_updates_take_no_new_references() {
    let (mut m, f) = pinned_tree(false);
    let before = m.frame_type(f[4]);
    put(&mut m, f[3], 0, e(f[4], T | A | D | pte::NX)).unwrap();
    assert_eq!(m.frame_type(f[4]), before);
    // Dropping RW is a slow-path update: the writable ref goes.
    put(&mut m, f[3], 0, e(f[4], P)).unwrap();
    assert_eq!(ty(&m, f[4]), (PageType::None, 0, false));
    assert_eq!(m.frame_type(f[4]).refs, 1);
    m.check_invariants().unwrap();
}

#[test]
fn linear_page_tables_must_be_read_only() {
    let (mut m, f) = pinned_tree(false);
    assert_eq!(
        put(&mut m, f[0], 300, e(f[0], T)).unwrap_err().errno,
        EINVAL
    );
    put(&mut m, f[0], 300, e(f[0], P)).unwrap(); // RO self map: no reference
    assert_eq!(ty(&m, f[0]), (PageType::L4, 1, true));
    // An L2 entry pointing at another validated L2, read-only.
    put(&mut m, f[1], 7, e(f[6], T)).unwrap(); // f[6]: new empty L2
    put(&mut m, f[2], 9, e(f[6], P)).unwrap();
    assert_eq!(ty(&m, f[6]).1, 2);
    assert_eq!(m.frame_type(f[2]).linear, 1);
    assert_eq!(m.frame_type(f[6]).linear, -1);
    // f[6] is used as linear: it may not hold linear entries itself.
    assert_eq!(put(&mut m, f[6], 0, e(f[2], P)).unwrap_err().errno, EINVAL);
    m.check_invariants().unwrap();
    put(&mut m, f[2], 9, 0).unwrap();
    assert_eq!(m.frame_type(f[6]).linear, 0);
    m.apply(MmuOp::Unpin { mfn: TM(f[0]) }).unwrap();
    m.check_invariants().unwrap();
}

#[test]
fn update_va_mapping_walks_the_current_tables() {
    let (mut m, f) = pinned_tree(false);
    assert_eq!(
        m.update_va_mapping(VA, e(f[5], T), UVMF_INVLPG)
            .unwrap_err()
            .errno,
        EINVAL,
        "no base yet"
    );
    m.apply(MmuOp::NewBaseptr { mfn: TM(f[0]) }).unwrap();
    m.update_va_mapping(VA + PAGE, e(f[5], T), UVMF_INVLPG | UVMF_LOCAL)
        .unwrap();
    assert_eq!(m.translate(VA + PAGE).unwrap().mfn, f[5]);
    // No L2 entry for VA + 2 MiB.
    assert_eq!(
        m.update_va_mapping(VA + (2 << 20), e(f[5], T), UVMF_NONE)
            .unwrap_err()
            .errno,
        EINVAL
    );
    // Xen's range is not __addr_ok.
    assert_eq!(
        m.update_va_mapping(0xffff_8000_0000_0000, 0, UVMF_NONE)
            .unwrap_err()
            .errno,
        EINVAL
    );
    // Same rules as mmu_update.
    assert_eq!(
        m.update_va_mapping(VA + PAGE, e(f[3], T), UVMF_TLB_FLUSH)
            .unwrap_err()
            .errno,
        EBUSY
    );
    m.update_va_mapping(VA + PAGE, 0, UVMF_ALL | UVMF_INVLPG)
        .unwrap();
    assert_eq!(ty(&m, f[5]), (PageType::None, 0, false));
    m.check_invariants().unwrap();
}

#[test]
fn guest_writes_fault_on_read_only_and_unmapped() {
    let (mut m, f) = pinned_tree(false);
    m.apply(MmuOp::NewBaseptr { mfn: TM(f[0]) }).unwrap();
    put(&mut m, f[3], 1, e(f[1], P)).unwrap();
    assert!(m.write_va(VA + PAGE, 1).is_err());
    assert!(m.read_va(VA + PAGE).is_ok());
    assert!(m.write_va(VA + 2 * PAGE, 1).is_err());
    assert!(m.read_va(VA + 2 * PAGE).is_err());
}

// ---- dom0 builder

fn cfg(nr_pages: u64, kernel: u64, initrd: Option<u64>, pfn: bool) -> Dom0Config {
    Dom0Config {
        nr_pages,
        kernel_bytes: kernel,
        initrd_bytes: initrd,
        mod_start_pfn: pfn,
        p2m_seed: 7,
    }
}

/// Facts every boot satisfies.
fn check_boot(m: &XenPvModel, b: &Dom0Boot) {
    m.check_invariants().unwrap();
    assert_eq!(m.base(), Some(b.l4_mfn));
    assert_eq!(
        m.frame_type(b.l4_mfn),
        FrameType {
            ty: PageType::L4,
            count: 2,
            pinned: true,
            validated: true,
            refs: 3,
            linear: 0
        }
    );
    assert_eq!(b.pt_frames[0], ((b.pt_base - b.v_start) / PAGE, Level::L4));
    assert_eq!(b.pt_frames.len() as u64, b.nr_pt_frames);
    assert_eq!(b.v_end % (4 << 20), 0);
    assert!(b.v_end - b.rsp >= 512 << 10);
    assert_eq!(b.rsp, b.pt_base + b.nr_pt_frames * PAGE + PAGE);
    let p2m = m.p2m();
    assert_eq!(p2m.len() as u64, b.nr_pages);
    let pts: HashMap<Pfn, Level> = b.pt_frames.iter().copied().collect();
    // 1:1, page tables read-only, everything else read-write.
    for pfn in (0..(b.v_end - b.v_start) / PAGE)
        .step_by(97)
        .chain([(b.v_end - b.v_start) / PAGE - 1])
    {
        let t = m.translate(b.va_of_pfn(pfn)).unwrap();
        assert_eq!(t.mfn, p2m[pfn as usize], "pfn {pfn:#x}");
        assert_eq!(t.writable, !pts.contains_key(&pfn), "pfn {pfn:#x}");
        assert_eq!(t.leaf & !pte::ADDR_MASK & !RW, BOOT_L1_PROT & !RW);
        assert!(!t.user && !t.nx);
    }
    for &(pfn, level) in &b.pt_frames {
        let t = m.translate(b.va_of_pfn(pfn)).unwrap();
        assert!(!t.writable);
        assert_eq!(m.frame_type(t.mfn).ty, PageType::table(level));
    }
    assert_eq!(m.translate(b.v_end), None, "nothing mapped past v_end");
    // The p2m list, start_info.
    for pfn in [0, 1, b.nr_pages / 2, b.nr_pages - 1] {
        assert_eq!(m.read_va(b.mfn_list + 8 * pfn), Ok(p2m[pfn as usize]));
    }
    let si = |off: u64| m.read_va(b.start_info + off).unwrap();
    assert_eq!(si(si::NR_PAGES), b.nr_pages);
    assert_eq!(si(si::PT_BASE), b.pt_base);
    assert_eq!(si(si::NR_PT_FRAMES), b.nr_pt_frames);
    assert_eq!(si(si::MFN_LIST), b.mfn_list);
    assert_eq!(si(si::MOD_START), b.mod_start);
    assert_eq!(si(si::MOD_LEN), b.mod_len);
    assert_eq!(si(si::FLAGS) as u32, b.flags);
    assert_eq!(si(si::FIRST_P2M_PFN), b.first_p2m_pfn);
    assert_eq!(si(si::SHARED_INFO), b.shared_info);
    // The initrd.
    if let (Some(ip), true) = (b.initrd_pfn, b.mod_len > 0) {
        let words = b.mod_len / 8;
        for i in [0, 1, 511, 512, words / 2, words - 1] {
            let w = m.read_machine((p2m[(ip + i / 512) as usize] << 12) + (i % 512) * 8);
            assert_eq!(w, initrd_word(i));
            if let Some((s, _)) = b.initrd_va {
                assert_eq!(m.read_va(s + 8 * i), Ok(initrd_word(i)));
            }
        }
    }
}

#[test]
fn dom0_worked_example_1m_kernel_64m_initrd_256m() {
    let (m, b) = build_dom0(&cfg(65536, 1 << 20, Some(64 << 20), false));
    check_boot(&m, &b);
    assert_eq!(b.kernel_end, 0xffff_ffff_8010_0000);
    assert_eq!(
        b.initrd_va,
        Some((0xffff_ffff_8010_0000, 0xffff_ffff_8410_0000))
    );
    assert_eq!(b.mod_start, 0xffff_ffff_8010_0000);
    assert_eq!(b.initrd_pfn, Some(256));
    assert_eq!(b.mfn_list, 0xffff_ffff_8410_0000);
    assert_eq!(b.start_info, 0xffff_ffff_8418_0000);
    assert_eq!(b.pt_base, 0xffff_ffff_8418_1000);
    assert_eq!(b.nr_pt_frames, 37);
    assert_eq!(b.stack, 0xffff_ffff_841a_6000);
    assert_eq!(b.rsp, 0xffff_ffff_841a_7000);
    assert_eq!(b.v_end, 0xffff_ffff_8440_0000);
    assert_eq!(b.alloc_order, 10);
    assert_eq!(b.first_p2m_pfn, 1024 + 16384);
    assert_eq!(b.nr_p2m_frames, 0);
    assert_eq!(b.flags & 0xff, SIF_PRIVILEGED | SIF_INITDOMAIN);
    let levels: Vec<Level> = b.pt_frames.iter().map(|p| p.1).collect();
    assert_eq!(
        &levels[..5],
        &[Level::L4, Level::L1, Level::L2, Level::L3, Level::L1]
    );
    assert_eq!(levels.iter().filter(|&&l| l == Level::L1).count(), 34);
    // Frames beyond the boot region are untyped.
    assert_eq!(
        m.frame_type(m.p2m()[(b.v_end - b.v_start) as usize / 4096])
            .count,
        0
    );
}

#[test]
fn dom0_mod_start_pfn_leaves_the_initrd_unmapped() {
    let (m, b) = build_dom0(&cfg(65536, 1 << 20, Some(64 << 20), true));
    check_boot(&m, &b);
    assert_eq!(b.initrd_va, None);
    assert_eq!(b.mfn_list, 0xffff_ffff_8010_0000);
    assert_eq!(b.start_info, 0xffff_ffff_8018_0000);
    assert_eq!(b.pt_base, 0xffff_ffff_8018_1000);
    assert_eq!(b.nr_pt_frames, 5);
    assert_eq!(b.v_end, 0xffff_ffff_8040_0000);
    assert_eq!(b.alloc_order, 10);
    assert_eq!(
        b.mod_start, 1024,
        "a pfn: right after the first 2^order allocation"
    );
    assert_eq!(b.flags & SIF_MOD_START_PFN, SIF_MOD_START_PFN);
    let ip = b.initrd_pfn.unwrap();
    assert_eq!(
        m.frame_type(m.p2m()[ip as usize]).count,
        0,
        "initrd frames untyped"
    );
    // A 12 MiB boot region rounds the first allocation up to 16 MiB: the initrd pfn is
    // 4096, not the end of the boot region.
    let (m2, b2) = build_dom0(&cfg(65536, 10 << 20, Some(1 << 20), true));
    check_boot(&m2, &b2);
    assert_eq!(b2.v_end - b2.v_start, 12 << 20);
    assert_eq!(b2.mod_start, 4096);
}

#[test]
fn dom0_600m_initrd_1024m_crosses_512m() {
    let (m, b) = build_dom0(&cfg(262144, 1 << 20, Some(600 << 20), false));
    check_boot(&m, &b);
    assert_eq!(b.v_end, 0xffff_ffff_a600_0000);
    assert_eq!(b.nr_pt_frames, 1 + 1 + 1 + 304);
}

#[test]
fn dom0_1100m_initrd_2048m_runs_under_l3_511() {
    let (m, b) = build_dom0(&cfg(524288, 1 << 20, Some(1100 << 20), false));
    check_boot(&m, &b);
    assert_eq!(b.v_end, 0xffff_ffff_c540_0000);
    assert!(b.mfn_list >= 0xffff_ffff_c000_0000);
    assert_eq!(index(b.rsp - 8, Level::L3), 511);
    assert_eq!(b.nr_pt_frames, 1 + 1 + 2 + 554);
    // The second L2 comes right after the 513th L1 in allocation order.
    let pos = b.pt_frames.iter().rposition(|p| p.1 == Level::L2).unwrap();
    assert_eq!(
        b.pt_frames[..pos]
            .iter()
            .filter(|p| p.1 == Level::L1)
            .count(),
        513
    );
}

/// The takeover shape: a new L4 sharing the boot L3, pinned and loaded; the boot L4
/// unpinned and released (the shared L3 survives).
#[test]
fn dom0_switch_to_a_new_l4_and_release_the_boot_l4() {
    let (mut m, b) = build_dom0(&cfg(65536, 1 << 20, Some(4 << 20), false));
    let free = (b.v_end - b.v_start) / PAGE; // first pfn past the boot region
    let new_l4 = m.p2m()[free as usize];
    let boot_l3 = frame(m.read_machine((b.l4_mfn << 12) + 511 * 8));
    m.apply(MmuOp::ClearPage { mfn: TM(new_l4) }).unwrap();
    put(&mut m, new_l4, 511, e(boot_l3, T)).unwrap();
    pin(&mut m, Level::L4, new_l4).unwrap();
    m.apply(MmuOp::NewBaseptr { mfn: TM(new_l4) }).unwrap();
    m.apply(MmuOp::Unpin { mfn: TM(b.l4_mfn) }).unwrap();
    assert_eq!(m.frame_type(b.l4_mfn).count, 0);
    assert_eq!(m.frame_type(boot_l3).count, 1);
    // The boot L4 is still mapped read-only by the boot region.
    assert!(!m.translate(b.pt_base).unwrap().writable);
    assert_eq!(m.read_va(b.mfn_list), Ok(m.p2m()[0]));
    m.check_invariants().unwrap();
}

/// 2 GiB domain and a ~527k-operation plan: a direct map of every pfn at L4[273]
/// (page tables read-only), hooked into the running L4 in one validated update.
#[test]
fn a_2g_direct_map_plan_runs_quickly() {
    let start = std::time::Instant::now();
    let (mut m, b) = build_dom0(&cfg(524288, 1 << 20, Some(1100 << 20), false));
    let built = start.elapsed();
    let p2m = m.p2m().to_vec();
    let n = p2m.len() as u64;
    let mut next = (b.v_end - b.v_start) / PAGE;
    let mut take = || {
        next += 1;
        p2m[(next - 1) as usize]
    };
    let l3 = take();
    let l2: Vec<Mfn> = (0..n.div_ceil(512 * 512)).map(|_| take()).collect();
    let l1: Vec<Mfn> = (0..n.div_ceil(512)).map(|_| take()).collect();
    let mut ro: HashSet<Mfn> = b.pt_frames.iter().map(|p| p2m[p.0 as usize]).collect();
    ro.insert(l3);
    ro.extend(l2.iter().copied());
    ro.extend(l1.iter().copied());
    let mut plan = Vec::with_capacity(n as usize + 2000);
    for &t in std::iter::once(&l3).chain(&l2).chain(&l1) {
        plan.push(MmuOp::ClearPage { mfn: TM(t) });
    }
    for (pfn, &mf) in p2m.iter().enumerate() {
        let flags = if ro.contains(&mf) {
            P | pte::NX
        } else {
            T | pte::NX
        };
        plan.push(MmuOp::PtUpdate {
            ptr: TA(ptr(l1[pfn / 512], pfn % 512)),
            val: e(mf, flags),
        });
    }
    for (i, &t) in l1.iter().enumerate() {
        plan.push(MmuOp::PtUpdate {
            ptr: TA(ptr(l2[i / 512], i % 512)),
            val: e(t, T),
        });
    }
    for (i, &t) in l2.iter().enumerate() {
        plan.push(MmuOp::PtUpdate {
            ptr: TA(ptr(l3, i)),
            val: e(t, T),
        });
    }
    plan.push(MmuOp::PtUpdate {
        ptr: TA(ptr(b.l4_mfn, 273)),
        val: e(l3, T),
    });
    plan.push(MmuOp::TlbFlushLocal);
    let ops = plan.len();
    m.apply_all(plan)
        .map_err(|(i, op, x)| format!("op {i} {op:?}: {x}"))
        .unwrap();
    let dm = 0xffff_8880_0000_0000u64;
    assert_eq!(
        m.read_va(dm + b.initrd_pfn.unwrap() * PAGE),
        Ok(initrd_word(0))
    );
    assert_eq!(
        m.read_va(dm + ((b.mfn_list - b.v_start) / PAGE) * PAGE + 8),
        Ok(p2m[1])
    );
    assert!(!m.translate(dm + (b.pt_base - b.v_start)).unwrap().writable);
    m.write_va(dm + (n - 1) * PAGE, 5).unwrap();
    m.check_invariants().unwrap();
    let total = start.elapsed();
    eprintln!("2 GiB: build {built:?}, {ops} ops + checks, total {total:?}");
    assert!(ops > 520_000);
}

#[derive(Clone, Debug)]
enum Step {
    Put(usize, usize, usize, u64),
    Pin(u8, usize),
    Unpin(usize),
    Base(usize),
    Clear(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let flags = prop::sample::select(vec![
        0,
        P,
        T,
        T | USER,
        P | pte::PSE,
        T | pte::GLOBAL,
        T | pte::NX,
    ]);
    prop_oneof![
        4 => (0..6usize, 0..3usize, 0..7usize, flags).prop_map(|(a, s, b, f)| Step::Put(a, s, b, f)),
        2 => (1..5u8, 0..6usize).prop_map(|(l, a)| Step::Pin(l, a)),
        1 => (0..6usize).prop_map(Step::Unpin),
        1 => (0..6usize).prop_map(Step::Base),
        1 => (0..6usize).prop_map(Step::Clear),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    /// Whatever the sequence, the kept counts match a recount and failed operations
    /// leave every count unchanged.
    #[test]
    fn random_sequences_keep_the_invariants(steps in prop::collection::vec(step(), 1..40)) {
        let (mut m, f) = fresh(6, false);
        let levels = [Level::L1, Level::L2, Level::L3, Level::L4];
        for s in steps {
            let before: Vec<FrameType> = f.iter().map(|&x| m.frame_type(x)).collect();
            let op = match s {
                // slot 0..3, with the target frame index 6 meaning "foreign"
                Step::Put(a, slot, b, fl) => {
                    let target = if b == 6 { 0x999 } else { f[b] };
                    MmuOp::PtUpdate { ptr: TA(ptr(f[a], slot)), val: if fl == 0 { 0 } else { e(target, fl) } }
                }
                Step::Pin(l, a) => MmuOp::Pin { level: levels[l as usize - 1], mfn: TM(f[a]) },
                Step::Unpin(a) => MmuOp::Unpin { mfn: TM(f[a]) },
                Step::Base(a) => MmuOp::NewBaseptr { mfn: TM(f[a]) },
                Step::Clear(a) => MmuOp::ClearPage { mfn: TM(f[a]) },
            };
            let r = m.apply(op);
            prop_assert!(m.check_invariants().is_ok(), "{op:?} -> {r:?}: {:?}", m.check_invariants());
            if r.is_err() {
                let after: Vec<FrameType> = f.iter().map(|&x| m.frame_type(x)).collect();
                prop_assert_eq!(before, after, "{:?} failed but changed counts", op);
            }
        }
    }
}
