//! The network rings' slots and flags (`xen/include/public/io/netif.h`), as Xen lays them
//! out for x86-64. Plain data: the frontend's encoding, checks and bookkeeping live in
//! `xenpv_protocol::netif`, which takes its byte offsets from these structs.

use bitflags::bitflags;

/// `struct netif_tx_request`: a packet (or a part of one) to send, 12 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxRequest {
    /// `grant_ref_t gref`: the grant of the buffer page.
    pub gref: u32,
    /// `offset`: where the data starts in the page.
    pub offset: u16,
    /// `flags`: [`TxFlags`].
    pub flags: u16,
    /// `id`: echoed in the response.
    pub id: u16,
    /// `size`: the packet's bytes (in its first request), else this part's.
    pub size: u16,
}

/// `struct netif_tx_response`, 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxResponse {
    /// `id`: the request's.
    pub id: u16,
    /// `status`: `NETIF_RSP_*`.
    pub status: i16,
}

/// `struct netif_rx_request`: a buffer page offered for a packet, 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxRequest {
    /// `id`: echoed in the response.
    pub id: u16,
    /// `pad`.
    pub pad: u16,
    /// `grant_ref_t gref`: the grant of the buffer page.
    pub gref: u32,
}

/// `struct netif_rx_response`, 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxResponse {
    /// `id`: the request's.
    pub id: u16,
    /// `offset`: where the data starts in the page.
    pub offset: u16,
    /// `flags`: [`RxFlags`].
    pub flags: u16,
    /// `status`: bytes received if >= 0, else `NETIF_RSP_*`.
    pub status: i16,
}

/// `struct netif_extra_info` with its union read as `u.gso`, 8 bytes (the union is 6).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtraInfo {
    /// `type`: `XEN_NETIF_EXTRA_TYPE_*`.
    pub kind: u8,
    /// `flags`: [`ExtraFlags`].
    pub flags: u8,
    /// `u.gso`.
    pub gso: ExtraGso,
}

/// `netif_extra_info.u.gso`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtraGso {
    /// `size`: the payload bytes of each segment (the MSS).
    pub size: u16,
    /// `type`: `XEN_NETIF_GSO_TYPE_*`.
    pub kind: u8,
    /// `pad`.
    pub pad: u8,
    /// `features`: `XEN_NETIF_GSO_FEAT_*`.
    pub features: u16,
}

bitflags! {
    /// `NETTXF_*`: a TX request's `flags`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct TxFlags: u16 {
        /// `NETTXF_csum_blank`: the TCP/UDP checksum field holds the pseudo-header sum,
        /// the backend's side completes it.
        const CSUM_BLANK = 1 << 0;
        /// `NETTXF_data_validated`: the checksum is known good.
        const DATA_VALIDATED = 1 << 1;
        /// `NETTXF_more_data`: the packet continues in the next request.
        const MORE_DATA = 1 << 2;
        /// `NETTXF_extra_info`: an extra-info slot follows this request.
        const EXTRA_INFO = 1 << 3;
    }
}

bitflags! {
    /// `NETRXF_*`: an RX response's `flags`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct RxFlags: u16 {
        /// `NETRXF_data_validated`: the checksum was checked, or the packet was made in
        /// the backend's domain.
        const DATA_VALIDATED = 1 << 0;
        /// `NETRXF_csum_blank`: the checksum is blank, the packet was made locally.
        const CSUM_BLANK = 1 << 1;
        /// `NETRXF_more_data`: the packet continues in the next response.
        const MORE_DATA = 1 << 2;
        /// `NETRXF_extra_info`: an extra-info slot follows.
        const EXTRA_INFO = 1 << 3;
        /// `NETRXF_gso_prefix`: a GSO prefix slot (deprecated; never negotiated here).
        const GSO_PREFIX = 1 << 4;
    }
}

bitflags! {
    /// `XEN_NETIF_EXTRA_FLAG_*`: an extra-info slot's `flags`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct ExtraFlags: u8 {
        /// `XEN_NETIF_EXTRA_FLAG_MORE`: another extra-info slot follows.
        const MORE = 1 << 0;
    }
}

/// `XEN_NETIF_EXTRA_TYPE_GSO`: the extra slot is `u.gso`.
pub const EXTRA_TYPE_GSO: u8 = 1;
/// `XEN_NETIF_GSO_TYPE_TCPV4`.
pub const GSO_TYPE_TCPV4: u8 = 1;
/// `NETIF_RSP_DROPPED`.
pub const RSP_DROPPED: i16 = -2;
/// `NETIF_RSP_ERROR`.
pub const RSP_ERROR: i16 = -1;
/// `NETIF_RSP_OKAY`.
pub const RSP_OKAY: i16 = 0;
/// `NETIF_RSP_NULL`: the answer to an extra-info slot.
pub const RSP_NULL: i16 = 1;
