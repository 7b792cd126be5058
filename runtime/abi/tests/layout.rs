//! Every Xen ABI struct the runtime uses, its size and field offsets checked against
//! Xen 4.17's public headers (`xen/include/public/...` at RELEASE-4.17.5), computed by
//! hand for x86-64 (LP64: `unsigned long`, `xen_pfn_t`, `xen_ulong_t` and guest handles
//! are 8 bytes, aligned to 8). Each check cites its header and struct; the numbers are
//! written out, not derived, so a wrong field order or type in a struct fails here.
//!
//! Types from `xenpv_abi` are ours (hand-written); types from `xen_sys` come from
//! xen-sys 0.0.0-pre2, generated from Xen 4.14's headers, checked against 4.17's.
#![cfg(target_arch = "x86_64")]

use core::mem::{align_of, offset_of, size_of};
use xenpv_abi::{args, blkif, grant, netif, ring};

/// Size, then `field => offset` for each field named.
macro_rules! layout {
    ($t:ty, size $size:expr, { $($field:ident $(. $sub:ident)* => $off:expr),* $(,)? }) => {{
        assert_eq!(size_of::<$t>(), $size, "size_of::<{}>()", stringify!($t));
        $(
            assert_eq!(
                offset_of!($t, $field $(. $sub)*),
                $off,
                "offset_of!({}, {})",
                stringify!($t),
                stringify!($field $(. $sub)*)
            );
        )*
    }};
}

// ---- io/netif.h -------------------------------------------------------------------

#[test]
fn netif_tx_request() {
    // io/netif.h: struct netif_tx_request { grant_ref_t gref; uint16_t offset;
    // uint16_t flags; uint16_t id; uint16_t size; };  4 + 4 * 2 = 12.
    layout!(netif::TxRequest, size 12, { gref => 0, offset => 4, flags => 6, id => 8, size => 10 });
}

#[test]
fn netif_tx_response() {
    // io/netif.h: struct netif_tx_response { uint16_t id; int16_t status; };
    layout!(netif::TxResponse, size 4, { id => 0, status => 2 });
}

#[test]
fn netif_rx_request() {
    // io/netif.h: struct netif_rx_request { uint16_t id; uint16_t pad; grant_ref_t gref; };
    layout!(netif::RxRequest, size 8, { id => 0, pad => 2, gref => 4 });
}

#[test]
fn netif_rx_response() {
    // io/netif.h: struct netif_rx_response { uint16_t id; uint16_t offset;
    // uint16_t flags; int16_t status; };
    layout!(netif::RxResponse, size 8, { id => 0, offset => 2, flags => 4, status => 6 });
}

#[test]
fn netif_extra_info() {
    // io/netif.h: struct netif_extra_info { uint8_t type; uint8_t flags; union {
    // struct { uint16_t size; uint8_t type; uint8_t pad; uint16_t features; } gso;
    // ... uint16_t pad[3]; } u; };  the union is 6 bytes, aligned to 2: 2 + 6 = 8.
    layout!(netif::ExtraInfo, size 8, {
        kind => 0, flags => 1, gso => 2,
        gso.size => 2, gso.kind => 4, gso.pad => 5, gso.features => 6,
    });
    assert_eq!(size_of::<netif::ExtraGso>(), 6);
}

#[test]
fn netif_flag_values() {
    // io/netif.h: _NETTXF_csum_blank 0, _NETTXF_data_validated 1, _NETTXF_more_data 2,
    // _NETTXF_extra_info 3 (each NETTXF_x = 1U << _NETTXF_x).
    assert_eq!(netif::TxFlags::CSUM_BLANK.bits(), 1);
    assert_eq!(netif::TxFlags::DATA_VALIDATED.bits(), 2);
    assert_eq!(netif::TxFlags::MORE_DATA.bits(), 4);
    assert_eq!(netif::TxFlags::EXTRA_INFO.bits(), 8);
    // _NETRXF_data_validated 0, _NETRXF_csum_blank 1, _NETRXF_more_data 2,
    // _NETRXF_extra_info 3, _NETRXF_gso_prefix 4.
    assert_eq!(netif::RxFlags::DATA_VALIDATED.bits(), 1);
    assert_eq!(netif::RxFlags::CSUM_BLANK.bits(), 2);
    assert_eq!(netif::RxFlags::MORE_DATA.bits(), 4);
    assert_eq!(netif::RxFlags::EXTRA_INFO.bits(), 8);
    assert_eq!(netif::RxFlags::GSO_PREFIX.bits(), 16);
    // _XEN_NETIF_EXTRA_FLAG_MORE 0; XEN_NETIF_EXTRA_TYPE_GSO 1; XEN_NETIF_GSO_TYPE_TCPV4 1.
    assert_eq!(netif::ExtraFlags::MORE.bits(), 1);
    assert_eq!(netif::EXTRA_TYPE_GSO, 1);
    assert_eq!(netif::GSO_TYPE_TCPV4, 1);
    // NETIF_RSP_DROPPED -2, NETIF_RSP_ERROR -1, NETIF_RSP_OKAY 0, NETIF_RSP_NULL 1.
    assert_eq!(
        [
            netif::RSP_DROPPED,
            netif::RSP_ERROR,
            netif::RSP_OKAY,
            netif::RSP_NULL
        ],
        [-2, -1, 0, 1]
    );
}

// ---- io/blkif.h -------------------------------------------------------------------

#[test]
fn blkif_request_segment() {
    // io/blkif.h: struct blkif_request_segment { grant_ref_t gref;
    // uint8_t first_sect, last_sect; };  4 + 2, padded to 4: 8.
    layout!(blkif::RequestSegment, size 8, { gref => 0, first_sect => 4, last_sect => 5 });
}

#[test]
fn blkif_request() {
    // io/blkif.h: struct blkif_request { uint8_t operation; uint8_t nr_segments;
    // blkif_vdev_t handle (uint16_t); uint64_t id; blkif_sector_t sector_number
    // (uint64_t); struct blkif_request_segment seg[BLKIF_MAX_SEGMENTS_PER_REQUEST (11)]; };
    // id aligned to 8: 8; seg at 24, 11 * 8 = 88: 112.
    layout!(blkif::Request, size 112, {
        operation => 0, nr_segments => 1, handle => 2, id => 8, sector_number => 16, seg => 24,
    });
    assert_eq!(blkif::MAX_SEGMENTS_PER_REQUEST, 11);
}

#[test]
fn blkif_request_indirect() {
    // io/blkif.h: struct blkif_request_indirect { uint8_t operation; uint8_t indirect_op;
    // uint16_t nr_segments; uint64_t id; blkif_sector_t sector_number;
    // blkif_vdev_t handle; grant_ref_t indirect_grefs[8]; (i386 only: uint64_t pad;) };
    // handle at 24, grefs at 28 (aligned to 4) up to 60, padded to 8: 64.
    layout!(blkif::RequestIndirect, size 64, {
        operation => 0, indirect_op => 1, nr_segments => 2, id => 8, sector_number => 16,
        handle => 24, indirect_grefs => 28,
    });
    assert_eq!(blkif::MAX_INDIRECT_PAGES_PER_REQUEST, 8);
}

#[test]
fn blkif_response() {
    // io/blkif.h: struct blkif_response { uint64_t id; uint8_t operation;
    // int16_t status; };  status aligned to 2: 10; padded to 8: 16.
    layout!(blkif::Response, size 16, { id => 0, operation => 8, status => 10 });
}

// ---- grant_table.h ----------------------------------------------------------------

#[test]
fn grant_entry_v1() {
    // grant_table.h: struct grant_entry_v1 { uint16_t flags; domid_t domid (uint16_t);
    // uint32_t frame; };
    layout!(grant::EntryV1, size 8, { flags => 0, domid => 2, frame => 4 });
    // GTF_permit_access (1U<<0), _GTF_readonly 2, _GTF_reading 3, _GTF_writing 4.
    assert_eq!(grant::GrantFlags::PERMIT_ACCESS.bits(), 1);
    assert_eq!(grant::GrantFlags::READONLY.bits(), 1 << 2);
    assert_eq!(grant::GrantFlags::READING.bits(), 1 << 3);
    assert_eq!(grant::GrantFlags::WRITING.bits(), 1 << 4);
}

#[test]
fn gnttab_op_numbers() {
    // grant_table.h: GNTTABOP_map_grant_ref 0, unmap_grant_ref 1, setup_table 2, copy 5,
    // query_size 6; _GNTMAP_host_map 1, _GNTMAP_readonly 2, _GNTMAP_contains_pte 4;
    // _GNTCOPY_source_gref 0, _GNTCOPY_dest_gref 1.
    assert_eq!(
        [
            grant::GNTTABOP_MAP_GRANT_REF,
            grant::GNTTABOP_UNMAP_GRANT_REF,
            grant::GNTTABOP_SETUP_TABLE,
            grant::GNTTABOP_COPY,
            grant::GNTTABOP_QUERY_SIZE
        ],
        [0, 1, 2, 5, 6]
    );
    assert_eq!(
        [
            grant::GNTMAP_HOST_MAP,
            grant::GNTMAP_READONLY,
            grant::GNTMAP_CONTAINS_PTE
        ],
        [2, 4, 16]
    );
    assert_eq!(
        [grant::GNTCOPY_SOURCE_GREF, grant::GNTCOPY_DEST_GREF],
        [1, 2]
    );
}

#[test]
fn gnttab_query_size() {
    // grant_table.h: struct gnttab_query_size { domid_t dom; uint32_t nr_frames;
    // uint32_t max_nr_frames; int16_t status; };  2, pad to 4, 4, 4, 2, pad to 4: 16.
    layout!(grant::QuerySize, size 16, { dom => 0, nr_frames => 4, max_nr_frames => 8, status => 12 });
}

#[test]
fn gnttab_setup_table() {
    // grant_table.h: struct gnttab_setup_table { domid_t dom; uint32_t nr_frames;
    // int16_t status; XEN_GUEST_HANDLE(xen_pfn_t) frame_list; };  handle (8) at 16: 24.
    layout!(grant::SetupTable, size 24, { dom => 0, nr_frames => 4, status => 8, frame_list => 16 });
}

#[test]
fn gnttab_copy() {
    // grant_table.h: struct gnttab_copy { struct gnttab_copy_ptr { union { grant_ref_t
    // ref; xen_pfn_t gmfn; } u; domid_t domid; uint16_t offset; } source, dest;
    // uint16_t len; uint16_t flags; int16_t status; };
    // copy_ptr: 8 + 2 + 2, padded to 8: 16; copy: 16 + 16 + 3 * 2 = 38, padded to 8: 40.
    layout!(grant::CopyPtr, size 16, { u => 0, domid => 8, offset => 10 });
    layout!(grant::Copy, size 40, { source => 0, dest => 16, len => 32, flags => 34, status => 36 });
}

#[test]
fn gnttab_map_grant_ref() {
    // grant_table.h: struct gnttab_map_grant_ref { uint64_t host_addr; uint32_t flags;
    // grant_ref_t ref; domid_t dom; int16_t status; grant_handle_t handle (uint32_t);
    // uint64_t dev_bus_addr; };
    layout!(grant::MapGrantRef, size 32, {
        host_addr => 0, flags => 8, gref => 12, dom => 16, status => 18, handle => 20,
        dev_bus_addr => 24,
    });
}

#[test]
fn gnttab_unmap_grant_ref() {
    // grant_table.h: struct gnttab_unmap_grant_ref { uint64_t host_addr;
    // uint64_t dev_bus_addr; grant_handle_t handle; int16_t status; };  22, padded: 24.
    layout!(grant::UnmapGrantRef, size 24, { host_addr => 0, dev_bus_addr => 8, handle => 16, status => 20 });
}

// ---- io/ring.h, io/console.h, io/xs_wire.h ----------------------------------------

#[test]
fn sring_header() {
    // io/ring.h: struct __name##_sring { RING_IDX req_prod, req_event; RING_IDX rsp_prod,
    // rsp_event; union { ...; uint8_t pvt_pad[4]; } pvt; uint8_t __pad[44];
    // union __name##_sring_entry ring[1]; };  the slots start at 64.
    layout!(ring::SringHeader, size 64, {
        req_prod => 0, req_event => 4, rsp_prod => 8, rsp_event => 12, pvt => 16, pad => 20,
    });
}

#[test]
fn xencons_interface() {
    // io/console.h: struct xencons_interface { char in[1024]; char out[2048];
    // XENCONS_RING_IDX in_cons, in_prod; XENCONS_RING_IDX out_cons, out_prod; };
    layout!(ring::ConsInterface, size 3088, {
        input => 0, out => 1024, in_cons => 3072, in_prod => 3076, out_cons => 3080,
        out_prod => 3084,
    });
}

#[test]
fn xenstore_domain_interface() {
    // io/xs_wire.h: struct xenstore_domain_interface { char req[XENSTORE_RING_SIZE (1024)];
    // char rsp[1024]; XENSTORE_RING_IDX req_cons, req_prod; XENSTORE_RING_IDX rsp_cons,
    // rsp_prod; uint32_t server_features; uint32_t connection; uint32_t error; };
    layout!(ring::XenstoreInterface, size 2076, {
        req => 0, rsp => 1024, req_cons => 2048, req_prod => 2052, rsp_cons => 2056,
        rsp_prod => 2060, server_features => 2064, connection => 2068, error => 2072,
    });
}

#[test]
fn xsd_sockmsg() {
    // io/xs_wire.h: struct xsd_sockmsg { uint32_t type; uint32_t req_id; uint32_t tx_id;
    // uint32_t len; };
    layout!(ring::XsdSockmsg, size 16, { kind => 0, req_id => 4, tx_id => 8, len => 12 });
}

// ---- sched.h, physdev.h, callback.h (ours) ----------------------------------------

#[test]
fn small_hypercall_args() {
    // sched.h: struct sched_shutdown { unsigned int reason; };
    layout!(args::SchedShutdown, size 4, { reason => 0 });
    // physdev.h: struct physdev_set_iopl { uint32_t iopl; }; PHYSDEVOP_set_iopl 6.
    layout!(args::PhysdevSetIopl, size 4, { iopl => 0 });
    assert_eq!(args::PHYSDEVOP_SET_IOPL, 6);
    // callback.h: struct callback_register { uint16_t type; uint16_t flags;
    // xen_callback_t address; };  xen_callback_t is unsigned long on x86-64
    // (arch-x86/xen-x86_64.h): at 8, size 16. CALLBACKOP_register 0,
    // CALLBACKTYPE_failsafe 1.
    layout!(args::CallbackRegister, size 16, { kind => 0, flags => 2, address => 8 });
    assert_eq!(
        (args::CALLBACKOP_REGISTER, args::CALLBACKTYPE_FAILSAFE),
        (0, 1)
    );
}

// ---- memory.h (ours) ---------------------------------------------------------------

#[test]
fn memory_reservation() {
    // memory.h: struct xen_memory_reservation { XEN_GUEST_HANDLE(xen_pfn_t) extent_start;
    // xen_ulong_t nr_extents; unsigned int extent_order; unsigned int mem_flags;
    // domid_t domid; };  a guest handle is a pointer (8) on x86-64: 8 + 8 + 4 + 4 + 2 =
    // 26 bytes, padded to the 8-byte alignment: 32.
    layout!(args::MemoryReservation, size 32, {
        extent_start => 0, nr_extents => 8, extent_order => 16, mem_flags => 20, domid => 24,
    });
    // XENMEM_increase_reservation 0, decrease 1, current 3, maximum 4, populate_physmap 6;
    // DOMID_SELF 0x7ff0 (xen.h).
    assert_eq!(
        (
            args::XENMEM_INCREASE_RESERVATION,
            args::XENMEM_DECREASE_RESERVATION,
            args::XENMEM_CURRENT_RESERVATION,
            args::XENMEM_MAXIMUM_RESERVATION,
            args::XENMEM_POPULATE_PHYSMAP,
            args::DOMID_SELF,
        ),
        (0, 1, 3, 4, 6, 0x7ff0)
    );
}

// ---- xen.h, arch-x86/xen.h, arch-x86/xen-x86_64.h, event_channel.h, sched.h (xen-sys) --

#[test]
fn xen_sys_start_info() {
    // xen.h: struct start_info { char magic[32]; unsigned long nr_pages;
    // unsigned long shared_info; uint32_t flags; xen_pfn_t store_mfn;
    // uint32_t store_evtchn; union { struct { xen_pfn_t mfn; uint32_t evtchn; } domU;
    // struct { uint32_t info_off; uint32_t info_size; } dom0; } console;
    // unsigned long pt_base, nr_pt_frames, mfn_list, mod_start, mod_len;
    // int8_t cmd_line[MAX_GUEST_CMDLINE (1024)]; unsigned long first_p2m_pfn, nr_p2m_frames; };
    layout!(xen_sys::start_info, size 1168, {
        magic => 0, nr_pages => 32, shared_info => 40, flags => 48, store_mfn => 56,
        store_evtchn => 64, console => 72, pt_base => 88, nr_pt_frames => 96,
        mfn_list => 104, mod_start => 112, mod_len => 120, cmd_line => 128,
        first_p2m_pfn => 1152, nr_p2m_frames => 1160,
    });
    // console.domU { mfn @0, evtchn @8 } (16); console.dom0 { info_off @0, info_size @4 }.
    layout!(xen_sys::start_info__bindgen_ty_1__bindgen_ty_1, size 16, { mfn => 0, evtchn => 8 });
    layout!(xen_sys::start_info__bindgen_ty_1__bindgen_ty_2, size 8, { info_off => 0, info_size => 4 });
    // SIF_PRIVILEGED (1<<0), SIF_INITDOMAIN (1<<1), SIF_MULTIBOOT_MOD (1<<2),
    // SIF_MOD_START_PFN (1<<3), SIF_VIRT_P2M_4TOOLS (1<<4), SIF_PM_MASK (0xFF<<8).
    assert_eq!(
        [
            xen_sys::SIF_PRIVILEGED,
            xen_sys::SIF_INITDOMAIN,
            xen_sys::SIF_MULTIBOOT_MOD,
            xen_sys::SIF_MOD_START_PFN,
            xen_sys::SIF_VIRT_P2M_4TOOLS,
            xen_sys::SIF_PM_MASK
        ],
        [1, 2, 4, 8, 16, 0xff00]
    );
}

#[test]
fn xen_sys_shared_info() {
    // xen.h: struct vcpu_time_info { uint32_t version; uint32_t pad0;
    // uint64_t tsc_timestamp; uint64_t system_time; uint32_t tsc_to_system_mul;
    // int8_t tsc_shift; uint8_t flags; uint8_t pad1[2]; };  /* 32 bytes */
    // (xen-sys, from 4.14 without __XEN_INTERFACE_VERSION__ > 0x040600, has
    // `int8_t pad1[3]` where 4.17 has `flags, pad1[2]`: the same bytes.)
    layout!(xen_sys::vcpu_time_info, size 32, {
        version => 0, tsc_timestamp => 8, system_time => 16, tsc_to_system_mul => 24,
        tsc_shift => 28,
    });
    // arch-x86/xen-x86_64.h: struct arch_vcpu_info { unsigned long cr2; unsigned long pad; };
    layout!(xen_sys::arch_vcpu_info, size 16, { cr2 => 0 });
    // xen.h: struct vcpu_info { uint8_t evtchn_upcall_pending; uint8_t evtchn_upcall_mask;
    // (uint8_t pad0;) xen_ulong_t evtchn_pending_sel; struct arch_vcpu_info arch;
    // vcpu_time_info_t time; };  /* 64 bytes (x86) */
    layout!(xen_sys::vcpu_info, size 64, {
        evtchn_upcall_pending => 0, evtchn_upcall_mask => 1, evtchn_pending_sel => 8,
        arch => 16, time => 32,
    });
    // xen.h: struct shared_info { struct vcpu_info vcpu_info[XEN_LEGACY_MAX_VCPUS (32)];
    // xen_ulong_t evtchn_pending[64]; xen_ulong_t evtchn_mask[64]; uint32_t wc_version;
    // uint32_t wc_sec; uint32_t wc_nsec; uint32_t wc_sec_hi (not i386);
    // struct arch_shared_info arch; };  arch-x86/xen.h: struct arch_shared_info {
    // unsigned long max_pfn; xen_pfn_t pfn_to_mfn_frame_list_list;
    // unsigned long nmi_reason, p2m_cr3, p2m_vaddr, p2m_generation; } (48 bytes).
    layout!(xen_sys::shared_info, size 3136, {
        vcpu_info => 0, evtchn_pending => 2048, evtchn_mask => 2560, wc_version => 3072,
        wc_sec => 3076, wc_nsec => 3080, wc_sec_hi => 3084, arch => 3088,
    });
    assert_eq!(size_of::<xen_sys::arch_shared_info>(), 48);
}

#[test]
fn xen_sys_mmu() {
    // xen.h: struct mmu_update { uint64_t ptr; uint64_t val; };
    layout!(xen_sys::mmu_update, size 16, { ptr => 0, val => 8 });
    // xen.h: struct mmuext_op { unsigned int cmd; union { xen_pfn_t mfn;
    // unsigned long linear_addr; } arg1; union { unsigned int nr_ents;
    // const void *vcpumask; xen_pfn_t src_mfn; } arg2; };  4, pad to 8, 8, 8: 24.
    layout!(xen_sys::mmuext_op, size 24, { cmd => 0, arg1 => 8, arg2 => 16 });
    // xen.h: MMU_NORMAL_PT_UPDATE 0; MMUEXT_PIN_L1_TABLE 0, MMUEXT_UNPIN_TABLE 4,
    // MMUEXT_NEW_BASEPTR 5, MMUEXT_TLB_FLUSH_LOCAL 6, MMUEXT_INVLPG_LOCAL 7,
    // MMUEXT_CLEAR_PAGE 16.
    assert_eq!(xen_sys::MMU_NORMAL_PT_UPDATE, 0);
    assert_eq!(
        [
            xen_sys::MMUEXT_PIN_L1_TABLE,
            xen_sys::MMUEXT_UNPIN_TABLE,
            xen_sys::MMUEXT_NEW_BASEPTR,
            xen_sys::MMUEXT_TLB_FLUSH_LOCAL,
            xen_sys::MMUEXT_INVLPG_LOCAL,
            xen_sys::MMUEXT_CLEAR_PAGE
        ],
        [0, 4, 5, 6, 7, 16]
    );
    // xen.h: struct multicall_entry { xen_ulong_t op, result; xen_ulong_t args[6]; };
    layout!(xen_sys::multicall_entry, size 64, { op => 0, result => 8, args => 16 });
    // arch-x86/xen.h: struct trap_info { uint8_t vector; uint8_t flags; uint16_t cs;
    // unsigned long address; };
    layout!(xen_sys::trap_info, size 16, { vector => 0, flags => 1, cs => 2, address => 8 });
}

#[test]
fn xen_sys_event_channel_and_sched() {
    // event_channel.h: struct evtchn_alloc_unbound { domid_t dom, remote_dom;
    // evtchn_port_t port; };
    layout!(xen_sys::evtchn_alloc_unbound, size 8, { dom => 0, remote_dom => 2, port => 4 });
    // struct evtchn_bind_interdomain { domid_t remote_dom; evtchn_port_t remote_port;
    // evtchn_port_t local_port; };
    layout!(xen_sys::evtchn_bind_interdomain, size 12, { remote_dom => 0, remote_port => 4, local_port => 8 });
    // struct evtchn_bind_virq { uint32_t virq; uint32_t vcpu; evtchn_port_t port; };
    layout!(xen_sys::evtchn_bind_virq, size 12, { virq => 0, vcpu => 4, port => 8 });
    // struct evtchn_close / evtchn_send / evtchn_unmask { evtchn_port_t port; };
    layout!(xen_sys::evtchn_close, size 4, { port => 0 });
    layout!(xen_sys::evtchn_send, size 4, { port => 0 });
    layout!(xen_sys::evtchn_unmask, size 4, { port => 0 });
    // EVTCHNOP_bind_interdomain 0, bind_virq 1, close 3, send 4, alloc_unbound 6, unmask 9.
    assert_eq!(
        [
            xen_sys::EVTCHNOP_bind_interdomain,
            xen_sys::EVTCHNOP_bind_virq,
            xen_sys::EVTCHNOP_close,
            xen_sys::EVTCHNOP_send,
            xen_sys::EVTCHNOP_alloc_unbound,
            xen_sys::EVTCHNOP_unmask
        ],
        [0, 1, 3, 4, 6, 9]
    );
    // sched.h: struct sched_poll { XEN_GUEST_HANDLE(evtchn_port_t) ports;
    // unsigned int nr_ports; uint64_t timeout; };
    layout!(xen_sys::sched_poll, size 24, { ports => 0, nr_ports => 8, timeout => 16 });
    // sched.h: SCHEDOP_yield 0, SCHEDOP_shutdown 2, SCHEDOP_poll 3;
    // SHUTDOWN_poweroff 0, SHUTDOWN_crash 3.
    assert_eq!(
        [
            xen_sys::SCHEDOP_yield,
            xen_sys::SCHEDOP_shutdown,
            xen_sys::SCHEDOP_poll
        ],
        [0, 2, 3]
    );
    assert_eq!(
        [xen_sys::SHUTDOWN_poweroff, xen_sys::SHUTDOWN_crash],
        [0, 3]
    );
}

#[test]
fn alignment_of_slots_fits_the_ring() {
    // The slots are read and written as bytes at 64 + i * size; no slot needs more
    // alignment than the 64-byte header gives.
    assert!(align_of::<blkif::Request>() <= 8);
    assert!(align_of::<netif::TxRequest>() <= 4);
    assert_eq!(
        size_of::<ring::SringHeader>() % align_of::<blkif::Request>(),
        0
    );
}

#[test]
fn xen_sys_hypercall_numbers() {
    // xen.h: __HYPERVISOR_set_trap_table 0, mmu_update 1, memory_op 12, multicall 13,
    // update_va_mapping 14, set_timer_op 15, xen_version 17, console_io 18,
    // grant_table_op 20, vcpu_op 24, mmuext_op 26, sched_op 29, callback_op 30,
    // event_channel_op 32, physdev_op 33 (the non-compat numbers, interface >= 0x00030202).
    assert_eq!(
        [
            xen_sys::__HYPERVISOR_set_trap_table,
            xen_sys::__HYPERVISOR_mmu_update,
            xen_sys::__HYPERVISOR_memory_op,
            xen_sys::__HYPERVISOR_multicall,
            xen_sys::__HYPERVISOR_update_va_mapping,
            xen_sys::__HYPERVISOR_set_timer_op,
            xen_sys::__HYPERVISOR_xen_version,
            xen_sys::__HYPERVISOR_console_io,
            xen_sys::__HYPERVISOR_grant_table_op,
            xen_sys::__HYPERVISOR_vcpu_op,
            xen_sys::__HYPERVISOR_mmuext_op,
            xen_sys::__HYPERVISOR_sched_op,
            xen_sys::__HYPERVISOR_callback_op,
            xen_sys::__HYPERVISOR_event_channel_op,
            xen_sys::__HYPERVISOR_physdev_op,
        ],
        [0, 1, 12, 13, 14, 15, 17, 18, 20, 24, 26, 29, 30, 32, 33]
    );
    // xen.h: VIRQ_TIMER 0, CONSOLEIO_write 0, CONSOLEIO_read 1.
    assert_eq!(xen_sys::VIRQ_TIMER, 0);
    assert_eq!([xen_sys::CONSOLEIO_write, xen_sys::CONSOLEIO_read], [0, 1]);
    // arch-x86/xen-x86_64.h: FLAT_KERNEL_CS = FLAT_KERNEL_CS64 = FLAT_RING3_CS64 = 0xe033.
    assert_eq!(xen_sys::FLAT_KERNEL_CS, 0xe033);
}

#[test]
fn vdisk_info_bits() {
    // io/blkif.h: #define VDISK_CDROM 0x1, VDISK_REMOVABLE 0x2, VDISK_READONLY 0x4 (the
    // backend's `info` node).
    use xenpv_abi::blkif::VdiskInfo;
    assert_eq!(VdiskInfo::CDROM.bits(), 0x1);
    assert_eq!(VdiskInfo::REMOVABLE.bits(), 0x2);
    assert_eq!(VdiskInfo::READONLY.bits(), 0x4);
}
