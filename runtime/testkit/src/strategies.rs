//! Proptest strategies shared by the host tests: what a hostile peer may put on a ring.

use proptest::prelude::*;
use xenpv_protocol::xenstore::wire::{Header, MsgType, HEADER_LEN, PAYLOAD_MAX};

/// One xenstore message as a hostile xenstored might send it: a reply type, a watch
/// event, an error or any other type; a `req_id` among the client's first few; a payload
/// of any bytes; and a length field that usually tells the truth but sometimes claims
/// any length up to past [`PAYLOAD_MAX`].
pub fn xs_message() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just(MsgType::Read as u32),
            Just(MsgType::WatchEvent as u32),
            Just(MsgType::Error as u32),
            any::<u32>(),
        ],
        0u32..4,
        proptest::collection::vec(any::<u8>(), 0..48),
        prop_oneof![
            3 => Just(None),
            1 => (0..=PAYLOAD_MAX as u32 + 64).prop_map(Some),
        ],
    )
        .prop_map(|(ty, req_id, payload, claimed)| {
            let h = Header {
                ty,
                req_id,
                tx_id: 0,
                len: claimed.unwrap_or(payload.len() as u32),
            };
            let mut m = Vec::with_capacity(HEADER_LEN + payload.len());
            m.extend_from_slice(&h.encode());
            m.extend_from_slice(&payload);
            m
        })
}

/// Up to six [`xs_message`]s back to back, as they would arrive on the response ring.
pub fn xs_reply_stream() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(xs_message(), 0..6).prop_map(|ms| ms.concat())
}
