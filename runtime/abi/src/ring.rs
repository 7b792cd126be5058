//! Shared pages of the PV protocols, as Xen lays them out for x86-64: the front/back
//! ring header (`io/ring.h`), the console page (`io/console.h`) and the xenstore page
//! and message header (`io/xs_wire.h`). Plain data: the ring arithmetic lives in
//! `xenpv_protocol::{shared_ring, ring, xenstore}`, which take their offsets from here.

/// The header of `struct __name##_sring` (`DEFINE_RING_TYPES`), 64 bytes; the slots
/// (`ring[]`) follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SringHeader {
    /// `RING_IDX req_prod`.
    pub req_prod: u32,
    /// `req_event`.
    pub req_event: u32,
    /// `rsp_prod`.
    pub rsp_prod: u32,
    /// `rsp_event`.
    pub rsp_event: u32,
    /// `pvt` (a 4-byte union).
    pub pvt: [u8; 4],
    /// `__pad[44]`.
    pub pad: [u8; 44],
}

/// `struct xencons_interface`: the console page, 3088 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsInterface {
    /// `in[1024]`: what the backend writes.
    pub input: [u8; 1024],
    /// `out[2048]`: what the guest writes.
    pub out: [u8; 2048],
    /// `XENCONS_RING_IDX in_cons`.
    pub in_cons: u32,
    /// `in_prod`.
    pub in_prod: u32,
    /// `out_cons`.
    pub out_cons: u32,
    /// `out_prod`.
    pub out_prod: u32,
}

/// `struct xenstore_domain_interface`: the xenstore page, 2076 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenstoreInterface {
    /// `req[XENSTORE_RING_SIZE]`: requests to the daemon.
    pub req: [u8; 1024],
    /// `rsp[XENSTORE_RING_SIZE]`: replies and watch events.
    pub rsp: [u8; 1024],
    /// `XENSTORE_RING_IDX req_cons`.
    pub req_cons: u32,
    /// `req_prod`.
    pub req_prod: u32,
    /// `rsp_cons`.
    pub rsp_cons: u32,
    /// `rsp_prod`.
    pub rsp_prod: u32,
    /// `server_features`.
    pub server_features: u32,
    /// `connection`.
    pub connection: u32,
    /// `error`.
    pub error: u32,
}

/// `struct xsd_sockmsg`: a xenstore message header, 16 bytes; `len` payload bytes follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XsdSockmsg {
    /// `type`: `XS_*`.
    pub kind: u32,
    /// `req_id`: echoed in the reply.
    pub req_id: u32,
    /// `tx_id`: the transaction (0: none).
    pub tx_id: u32,
    /// `len`: payload bytes.
    pub len: u32,
}
