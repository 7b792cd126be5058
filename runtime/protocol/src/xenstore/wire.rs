//! The xenstore wire format (io/xs_wire.h): a 16-byte header `{type, req_id, tx_id, len}`
//! then `len` bytes of payload, at most 4096; paths and tokens are NUL-terminated
//! strings, a written value is not. Everything here is pure and refuses bad input with
//! an error naming the value and the limit.
//!
//! ```
//! use xenpv_protocol::xenstore::wire::{request, strings, Header, MsgType};
//!
//! let m = request(MsgType::Watch, 7, &["device/vif", "tok"], b"").unwrap();
//! let h = Header::decode(m[..16].try_into().unwrap()).unwrap();
//! assert_eq!((h.ty, h.req_id, h.len), (MsgType::Watch as u32, 7, 15));
//! let parts: Vec<&str> = strings(&m[16..], "watch").unwrap().collect();
//! assert_eq!(parts, ["device/vif", "tok"]);
//! ```

use core::mem::{offset_of, size_of};
use xenpv_abi::ring::XsdSockmsg;

/// Bytes in a message header (`struct xsd_sockmsg`).
pub const HEADER_LEN: usize = size_of::<XsdSockmsg>();
/// `XENSTORE_PAYLOAD_MAX`.
pub const PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`.
pub const ABS_PATH_MAX: usize = 3072;

/// Message types used here (`enum xsd_sockmsg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MsgType {
    /// `XS_DIRECTORY`: the children of a path.
    Directory = 1,
    /// `XS_READ`: the value at a path.
    Read = 2,
    /// `XS_WATCH`: watch a path with a token.
    Watch = 4,
    /// `XS_UNWATCH`: drop a watch.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`: a new transaction; the reply is its id, in decimal.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`: commit (`T`) or abort (`F`) a transaction; `EAGAIN` when
    /// another writer got in first (start again).
    TransactionEnd = 7,
    /// `XS_GET_DOMAIN_PATH`: a domain's home path.
    GetDomainPath = 10,
    /// `XS_WRITE`: set the value at a path.
    Write = 11,
    /// `XS_RM`: remove a path and everything under it.
    Rm = 13,
    /// `XS_WATCH_EVENT`: a fired watch (path and token), unrequested.
    WatchEvent = 15,
    /// `XS_ERROR`: the reply to a failed request, its errno name.
    Error = 16,
}

impl MsgType {
    /// The type with this wire value, if it is one of the above.
    pub fn from_u32(v: u32) -> Option<MsgType> {
        Some(match v {
            1 => MsgType::Directory,
            2 => MsgType::Read,
            4 => MsgType::Watch,
            5 => MsgType::Unwatch,
            6 => MsgType::TransactionStart,
            7 => MsgType::TransactionEnd,
            10 => MsgType::GetDomainPath,
            11 => MsgType::Write,
            13 => MsgType::Rm,
            15 => MsgType::WatchEvent,
            16 => MsgType::Error,
            _ => return None,
        })
    }
}

/// A message or string the wire format does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// A payload (or path) longer than the protocol allows.
    TooLong {
        /// What was too long ("path", "reply payload"...).
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A path that is empty or holds a NUL.
    BadPath(&'static str),
    /// A message type this client does not know.
    UnknownType(u32),
    /// A string in a reply that is not NUL-terminated or not UTF-8.
    BadString(&'static str),
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            WireError::TooLong { what, len, max } => {
                write!(f, "{what} of {len} bytes, the limit is {max}")
            }
            WireError::BadPath(why) => write!(f, "bad path: {why}"),
            WireError::UnknownType(t) => write!(f, "unknown message type {t}"),
            WireError::BadString(what) => write!(f, "{what} is not a NUL-terminated UTF-8 string"),
        }
    }
}

/// A message header (`struct xsd_sockmsg`), all fields little-endian on the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The message type ([`MsgType`] as `u32`; a reply may hold any value).
    pub ty: u32,
    /// Chosen by the requester, echoed in the reply (0 in watch events).
    pub req_id: u32,
    /// Transaction id (0: none; this client uses no transactions).
    pub tx_id: u32,
    /// Payload bytes that follow the header.
    pub len: u32,
}

impl Header {
    /// The header's 16 bytes, as they go on the ring.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0; HEADER_LEN];
        for (at, v) in [
            (offset_of!(XsdSockmsg, kind), self.ty),
            (offset_of!(XsdSockmsg, req_id), self.req_id),
            (offset_of!(XsdSockmsg, tx_id), self.tx_id),
            (offset_of!(XsdSockmsg, len), self.len),
        ] {
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
    /// A header from the other side: the payload length is checked here.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, WireError> {
        let w = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let h = Header {
            ty: w(offset_of!(XsdSockmsg, kind)),
            req_id: w(offset_of!(XsdSockmsg, req_id)),
            tx_id: w(offset_of!(XsdSockmsg, tx_id)),
            len: w(offset_of!(XsdSockmsg, len)),
        };
        if h.len as usize > PAYLOAD_MAX {
            return Err(WireError::TooLong {
                what: "reply payload",
                len: h.len as usize,
                max: PAYLOAD_MAX,
            });
        }
        Ok(h)
    }
}

/// A request being built: header and payload, within the protocol's limits.
pub type Message = heapless::Vec<u8, { HEADER_LEN + PAYLOAD_MAX }>;

/// A path we may send: not empty, no NUL, at most [`ABS_PATH_MAX`] bytes.
pub fn check_path(path: &str) -> Result<(), WireError> {
    if path.is_empty() {
        return Err(WireError::BadPath("empty"));
    }
    if path.contains('\0') {
        return Err(WireError::BadPath("contains a NUL"));
    }
    if path.len() > ABS_PATH_MAX {
        return Err(WireError::TooLong {
            what: "path",
            len: path.len(),
            max: ABS_PATH_MAX,
        });
    }
    Ok(())
}

/// Encode a request: `strings` each followed by a NUL, then `raw` (a value) as is.
pub fn request(
    ty: MsgType,
    req_id: u32,
    strings: &[&str],
    raw: &[u8],
) -> Result<Message, WireError> {
    request_in(ty, req_id, 0, strings, raw)
}

/// [`request`] inside transaction `tx_id` (0: none).
pub fn request_in(
    ty: MsgType,
    req_id: u32,
    tx_id: u32,
    strings: &[&str],
    raw: &[u8],
) -> Result<Message, WireError> {
    let len = strings.iter().map(|s| s.len() + 1).sum::<usize>() + raw.len();
    if len > PAYLOAD_MAX {
        return Err(WireError::TooLong {
            what: "request payload",
            len,
            max: PAYLOAD_MAX,
        });
    }
    let h = Header {
        ty: ty as u32,
        req_id,
        tx_id,
        len: len as u32,
    };
    let mut m = Message::new();
    // Fits: HEADER_LEN + len <= capacity, checked above.
    let _ = m.extend_from_slice(&h.encode());
    for s in strings {
        let _ = m.extend_from_slice(s.as_bytes());
        let _ = m.push(0);
    }
    let _ = m.extend_from_slice(raw);
    Ok(m)
}

/// The NUL-terminated strings of a payload (directory entries, a watch event's path and
/// token, an error's errno name).
pub fn strings<'a>(
    payload: &'a [u8],
    what: &'static str,
) -> Result<impl Iterator<Item = &'a str>, WireError> {
    if payload.last().is_some_and(|&b| b != 0) {
        return Err(WireError::BadString(what));
    }
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    let s = core::str::from_utf8(body).map_err(|_| WireError::BadString(what))?;
    Ok(s.split('\0').filter(|p| !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_are_laid_out_as_xs_wire_says() {
        let m = request(MsgType::Write, 7, &["/local/domain/1/data/x"], b"42").unwrap();
        let h = Header::decode(m[..16].try_into().unwrap()).unwrap();
        assert_eq!(
            h,
            Header {
                ty: 11,
                req_id: 7,
                tx_id: 0,
                len: 22 + 1 + 2
            }
        );
        assert_eq!(&m[16..], b"/local/domain/1/data/x\x0042");
        let w = request(MsgType::Watch, 1, &["a/b", "tok"], b"").unwrap();
        assert_eq!(&w[16..], b"a/b\0tok\0");
    }

    #[test]
    fn limits_are_enforced_with_the_numbers() {
        let long = "a".repeat(3073);
        assert_eq!(
            check_path(&long),
            Err(WireError::TooLong {
                what: "path",
                len: 3073,
                max: 3072
            })
        );
        assert_eq!(check_path(""), Err(WireError::BadPath("empty")));
        assert_eq!(
            check_path("a\0b"),
            Err(WireError::BadPath("contains a NUL"))
        );
        let e = request(MsgType::Write, 1, &["p"], &[0; 4095]).unwrap_err();
        assert_eq!(
            e,
            WireError::TooLong {
                what: "request payload",
                len: 4097,
                max: 4096
            }
        );
        assert!(e.to_string().contains("4097") && e.to_string().contains("4096"));
        let mut h = Header {
            ty: 2,
            req_id: 1,
            tx_id: 0,
            len: 4097,
        }
        .encode();
        assert!(Header::decode(&h).is_err());
        h[12..16].copy_from_slice(&4096u32.to_le_bytes());
        assert!(Header::decode(&h).is_ok());
    }

    #[test]
    fn reply_strings_must_be_terminated_utf8() {
        let v: Vec<&str> = strings(b"backend\0device\0", "directory")
            .unwrap()
            .collect();
        assert_eq!(v, ["backend", "device"]);
        assert_eq!(strings(b"", "d").unwrap().count(), 0);
        assert!(strings(b"abc", "errno").is_err());
        assert!(strings(b"\xff\xfe\0", "errno").is_err());
        assert_eq!(MsgType::from_u32(99), None);
    }

    fn header(ty: u32, len: u32) -> [u8; HEADER_LEN] {
        Header {
            ty,
            req_id: 3,
            tx_id: 0,
            len,
        }
        .encode()
    }

    #[test]
    fn an_unknown_type_decodes_and_is_left_to_the_client() {
        // decode checks only the length; the type is the client's to judge.
        let h = Header::decode(&header(99, 0)).unwrap();
        assert_eq!(h.ty, 99);
        assert_eq!(MsgType::from_u32(h.ty), None);
        for bad in [0, 3, 8, 12, 14, 17, u32::MAX] {
            assert_eq!(MsgType::from_u32(bad), None, "{bad}");
        }
        assert_eq!(
            WireError::UnknownType(99).to_string(),
            "unknown message type 99"
        );
    }

    #[test]
    fn every_known_type_round_trips_through_its_wire_value() {
        for t in [
            MsgType::Directory,
            MsgType::Read,
            MsgType::Watch,
            MsgType::Unwatch,
            MsgType::TransactionStart,
            MsgType::TransactionEnd,
            MsgType::GetDomainPath,
            MsgType::Write,
            MsgType::WatchEvent,
            MsgType::Error,
        ] {
            assert_eq!(MsgType::from_u32(t as u32), Some(t));
        }
        // xs_wire.h's numbering.
        assert_eq!(
            (
                MsgType::Read as u32,
                MsgType::Write as u32,
                MsgType::Error as u32
            ),
            (2, 11, 16)
        );
    }

    #[test]
    fn a_length_over_the_max_is_refused_with_its_value() {
        for len in [PAYLOAD_MAX as u32 + 1, 0x8000_0000, u32::MAX] {
            assert_eq!(
                Header::decode(&header(2, len)),
                Err(WireError::TooLong {
                    what: "reply payload",
                    len: len as usize,
                    max: PAYLOAD_MAX
                })
            );
        }
        assert_eq!(Header::decode(&header(2, 0)).unwrap().len, 0);
        assert_eq!(
            Header::decode(&header(2, PAYLOAD_MAX as u32)).unwrap().len,
            4096
        );
    }

    #[test]
    fn a_path_at_the_limit_goes_out_and_one_byte_more_does_not() {
        let at = "p".repeat(ABS_PATH_MAX);
        assert_eq!(check_path(&at), Ok(()));
        let m = request(MsgType::Read, 1, &[&at], b"").unwrap();
        assert_eq!(m.len(), HEADER_LEN + ABS_PATH_MAX + 1);
        assert_eq!(m[HEADER_LEN + ABS_PATH_MAX], 0, "NUL-terminated");
        let over = "p".repeat(ABS_PATH_MAX + 1);
        assert!(matches!(
            check_path(&over),
            Err(WireError::TooLong { len: 3073, .. })
        ));
        assert_eq!(check_path("/"), Ok(()));
        assert_eq!(check_path("a\0"), Err(WireError::BadPath("contains a NUL")));
    }

    #[test]
    fn a_request_of_exactly_the_max_payload_is_sent_whole() {
        let value = vec![0xa5; PAYLOAD_MAX - 2];
        let m = request(MsgType::Write, 9, &["p"], &value).unwrap();
        assert_eq!(m.len(), HEADER_LEN + PAYLOAD_MAX);
        let h = Header::decode(m[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!((h.ty, h.req_id, h.tx_id, h.len), (11, 9, 0, 4096));
        // A value is raw bytes: NULs inside it are kept, not terminators.
        let m = request(MsgType::Write, 1, &["p"], b"a\0b").unwrap();
        assert_eq!(&m[HEADER_LEN..], b"p\0a\0b");
    }

    #[test]
    fn unterminated_or_broken_reply_strings_are_refused() {
        for bad in [
            &b"a"[..],
            b"a\0b",
            b"\0\0x",
            b"ok\0\xc3",
            b"\xc3\0",
            b"\xed\xa0\x80\0",
        ] {
            assert_eq!(
                strings(bad, "directory").err(),
                Some(WireError::BadString("directory")),
                "{bad:?}"
            );
        }
        assert!(WireError::BadString("errno")
            .to_string()
            .contains("not a NUL-terminated UTF-8 string"));
    }

    #[test]
    fn empty_strings_are_skipped_and_utf8_is_kept() {
        let v: Vec<&str> = strings(b"\0a\0\0b\0", "d").unwrap().collect();
        assert_eq!(v, ["a", "b"]);
        assert_eq!(strings(b"\0", "d").unwrap().count(), 0);
        let v: Vec<&str> = strings("d\u{e9}j\u{e0}\0vu\0".as_bytes(), "d")
            .unwrap()
            .collect();
        assert_eq!(v, ["d\u{e9}j\u{e0}", "vu"]);
    }

    proptest! {
        #[test]
        fn any_header_bytes_decode_or_refuse_without_panicking(b in any::<[u8; 16]>()) {
            if let Ok(h) = Header::decode(&b) {
                prop_assert!(h.len as usize <= PAYLOAD_MAX);
                prop_assert_eq!(h.encode(), b);
            }
        }
        #[test]
        fn any_payload_splits_or_refuses(p in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(it) = strings(&p, "x") {
                for s in it { prop_assert!(!s.contains('\0')); }
            }
        }
    }
}
