//! What the planners refuse, each refusal with its own test: Xen's boot tables read into
//! a snapshot (a foreign table, a superpage, a hole, no kernel map, the kernel not
//! mapped), and holes in the p2m (skipped in the direct map, refused where the plan needs
//! the frame, before anything is written).
use std::collections::HashMap;
use xenpv_paging::layout::*;
use xenpv_paging::ops::pte;
use xenpv_paging::snapshot::{self, SnapshotError, TableReader};
use xenpv_paging::takeover::TakeoverError;
use xenpv_paging::{Mfn, Pfn};
use xenpv_testkit::takeover_run::{take_over_with_holes, tr, Case};

/// Boot tables in plain memory: mfn -> table.
#[derive(Clone, Default)]
struct Tables(HashMap<u64, [u64; 512]>);

impl TableReader for Tables {
    fn table(&self, mfn: Mfn) -> Option<[u64; 512]> {
        self.0.get(&mfn.0).copied()
    }
}

const T: pte::PageTableFlags = pte::PRESENT.union(pte::RW).union(pte::ACCESSED);
const L4: u64 = 1;
const L3: u64 = 2;
const L2: u64 = 3;
const L1: u64 = 10;

/// A boot mapping of `pages` pages from KERNEL_VIRT_BASE: L4 -> L3 -> L2 -> L1s.
fn boot_tables(pages: u64) -> Tables {
    let mut t = Tables::default();
    let mut l4 = [0; 512];
    l4[L4_KERNEL] = pte::entry(Mfn(L3), T);
    let mut l3 = [0; 512];
    l3[L3_KERNEL] = pte::entry(Mfn(L2), T);
    let mut l2 = [0; 512];
    for (i, chunk) in (0..pages).collect::<Vec<_>>().chunks(512).enumerate() {
        l2[i] = pte::entry(Mfn(L1 + i as u64), T);
        let mut l1 = [0; 512];
        for &p in chunk {
            l1[(p % 512) as usize] = pte::entry(Mfn(0x1000 + p), T);
        }
        t.0.insert(L1 + i as u64, l1);
    }
    t.0.insert(L4, l4);
    t.0.insert(L3, l3);
    t.0.insert(L2, l2);
    t
}

const KERNEL_END: VirtAddr = VirtAddr::new(KERNEL_VIRT_BASE.as_u64() + 0x59 * PAGE_SIZE);

#[test]
fn an_honest_boot_mapping_is_read() {
    let s = snapshot::read(&boot_tables(1024), Mfn(L4), KERNEL_END).unwrap();
    assert_eq!(s.boot_end, KERNEL_VIRT_BASE + 1024 * PAGE_SIZE);
    assert!(s.l2_fixmap.is_none());
}

#[test]
fn a_root_that_is_not_a_boot_table_is_refused() {
    assert_eq!(
        snapshot::read(&boot_tables(1024), Mfn(99), KERNEL_END).unwrap_err(),
        SnapshotError::ForeignTable {
            level: 5,
            slot: 0,
            mfn: Mfn(99)
        }
    );
}

#[test]
fn an_entry_pointing_at_a_foreign_table_is_refused() {
    let mut t = boot_tables(1024);
    t.0.get_mut(&L2).unwrap()[1] = pte::entry(Mfn(0xbad), T);
    let e = snapshot::read(&t, Mfn(L4), KERNEL_END).unwrap_err();
    assert_eq!(
        e,
        SnapshotError::ForeignTable {
            level: 2,
            slot: 1,
            mfn: Mfn(0xbad)
        }
    );
    assert!(e.to_string().contains("0xbad"), "{e}");
}

#[test]
fn a_superpage_is_refused() {
    let mut t = boot_tables(1024);
    t.0.get_mut(&L2).unwrap()[1] = pte::entry(Mfn(0x200), T | pte::PSE);
    assert_eq!(
        snapshot::read(&t, Mfn(L4), KERNEL_END).unwrap_err(),
        SnapshotError::Superpage { level: 2, slot: 1 }
    );
}

#[test]
fn no_kernel_map_is_refused() {
    let mut t = boot_tables(1024);
    t.0.get_mut(&L4).unwrap()[L4_KERNEL] = 0;
    assert_eq!(
        snapshot::read(&t, Mfn(L4), KERNEL_END).unwrap_err(),
        SnapshotError::NoKernelMap
    );
    let mut t = boot_tables(1024);
    t.0.get_mut(&L3).unwrap()[L3_KERNEL] = 0;
    assert_eq!(
        snapshot::read(&t, Mfn(L4), KERNEL_END).unwrap_err(),
        SnapshotError::NoKernelMap
    );
}

#[test]
fn a_hole_in_the_boot_mapping_is_refused() {
    // Slots 0 and 2 mapped, slot 1 not.
    let mut t = boot_tables(3 * 512);
    t.0.get_mut(&L2).unwrap()[1] = 0;
    assert_eq!(
        snapshot::read(&t, Mfn(L4), KERNEL_END).unwrap_err(),
        SnapshotError::Hole {
            va: KERNEL_VIRT_BASE + L2_SPAN
        }
    );
}

#[test]
fn a_kernel_that_is_not_mapped_to_its_end_is_refused() {
    // The mapping ends before the image does.
    let t = boot_tables(0x40);
    let e = snapshot::read(&t, Mfn(L4), KERNEL_END).unwrap_err();
    assert_eq!(
        e,
        SnapshotError::KernelNotMapped {
            va: KERNEL_END - PAGE_SIZE
        }
    );
}

fn case() -> Case {
    Case {
        nr_pages: 65536,
        kernel_pages: 0x59,
        initrd: 0,
        mod_start_pfn: false,
        split: Split::Half,
    }
}

#[test]
fn p2m_holes_in_free_memory_are_left_out_of_the_direct_map() {
    let holes = [Pfn(40000), Pfn(40001), Pfn(65535)];
    let done = take_over_with_holes(&case(), 0, &holes);
    let out = done
        .out
        .as_ref()
        .expect("holes in free memory are no reason to refuse");
    // Counted where they were met: in the start chunks or when their chunk was mapped.
    let grown = done.grown.expect("the rest of the direct map was mapped");
    assert_eq!(out.direct_map_holes + grown.holes, holes.len() as u64);
    for h in holes {
        assert_eq!(tr(&done.m, direct_map_va(h)), None, "hole {h:?} unmapped");
    }
    // Its neighbours are mapped.
    assert!(tr(&done.m, direct_map_va(Pfn(39999))).is_some());
    done.m.check_invariants().unwrap();
}

#[test]
fn a_p2m_hole_where_the_plan_needs_a_frame_is_refused_before_anything_is_written() {
    // Find where the tables go (an honest run), then punch a hole there.
    let honest = take_over_with_holes(&case(), 0, &[]);
    let l4 = honest.out.as_ref().unwrap().tables.l4;
    let done = take_over_with_holes(&case(), 0, &[l4 + 3]);
    match &done.out {
        Err(TakeoverError::BadP2m { pfn, mfn }) => {
            assert_eq!(*pfn, l4 + 3);
            assert_eq!(*mfn, Mfn(!0));
        }
        other => panic!("expected BadP2m, got {other:?}"),
    }
    assert_eq!(done.m.ops_applied, 0, "nothing was written");
}
