//! The xenstore wire format (io/xs_wire.h): a 16-byte header `{type, req_id, tx_id, len}`
//! then `len` bytes of payload, at most 4096; paths and tokens are NUL-terminated
//! strings, a written value is not. Everything here is pure and refuses bad input with
//! an error naming the value and the limit.

pub const HEADER_LEN: usize = 16;
/// `XENSTORE_PAYLOAD_MAX`.
pub const PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`.
pub const ABS_PATH_MAX: usize = 3072;

/// Message types used here (`enum xsd_sockmsg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MsgType {
    Directory = 1,
    Read = 2,
    Watch = 4,
    Unwatch = 5,
    GetDomainPath = 10,
    Write = 11,
    WatchEvent = 15,
    Error = 16,
}

impl MsgType {
    pub fn from_u32(v: u32) -> Option<MsgType> {
        Some(match v {
            1 => MsgType::Directory,
            2 => MsgType::Read,
            4 => MsgType::Watch,
            5 => MsgType::Unwatch,
            10 => MsgType::GetDomainPath,
            11 => MsgType::Write,
            15 => MsgType::WatchEvent,
            16 => MsgType::Error,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// A payload (or path) longer than the protocol allows.
    TooLong {
        what: &'static str,
        len: usize,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub ty: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub len: u32,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0; HEADER_LEN];
        for (i, v) in [self.ty, self.req_id, self.tx_id, self.len]
            .iter()
            .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
    /// A header from the other side: the payload length is checked here.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, WireError> {
        let w = |i: usize| u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
        let h = Header {
            ty: w(0),
            req_id: w(1),
            tx_id: w(2),
            len: w(3),
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
        tx_id: 0,
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
