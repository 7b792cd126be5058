//! defmt on the console: one frame per line, `=defmt=` then the frame in base64, so it
//! survives text paths (Xen's serial console, xenconsoled, `xl console`) and mixes with
//! plain lines. `cargo xtask run` decodes it with the app's ELF.
//!
//! Frames are raw (`encoding-raw`): the line is the framing. A frame larger than the
//! buffer is not cut short silently: the line says `=defmt=!overflow` instead.

/// Marker that starts a defmt line.
pub const MARKER: &str = "=defmt=";
/// Largest frame the logger buffers.
pub const MAX_FRAME: usize = 1024;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (with padding) of `data` into `out`; returns the length written, or
/// `None` if `out` is too small (`out` is then left untouched).
///
/// ```
/// use xenpv_contract::defmt_line::base64;
///
/// let mut out = [0u8; 8];
/// let n = base64(b"defmt", &mut out).unwrap();
/// assert_eq!(&out[..n], b"ZGVmbXQ=");
/// assert_eq!(base64(b"defmt!!", &mut out), None); // needs 12 bytes
/// ```
pub fn base64(data: &[u8], out: &mut [u8]) -> Option<usize> {
    let need = data.len().div_ceil(3) * 4;
    let out = out.get_mut(..need)?;
    for (c, o) in data.chunks(3).zip(out.chunks_mut(4)) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for (k, slot) in o.iter_mut().enumerate() {
            *slot = if k <= c.len() {
                B64[(n >> (18 - 6 * k) & 63) as usize]
            } else {
                b'='
            };
        }
    }
    Some(need)
}

/// Decode standard base64 (`=` padding only at the end) into `out`: the length
/// written, or `None` for anything that is not such base64 or does not fit. The host
/// tools decode the console's defmt lines with it.
pub fn unbase64(s: &[u8], out: &mut [u8]) -> Option<usize> {
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let quads = s.len() / 4;
    let mut len = 0;
    for (q, quad) in s.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && q + 1 != quads) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = n << 6 | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = &n.to_be_bytes()[1..4 - pad];
        out.get_mut(len..len + bytes.len())?.copy_from_slice(bytes);
        len += bytes.len();
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn base64_matches_the_standard() {
        let mut out = [0u8; 16];
        for (i, o) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
        ] {
            let n = base64(i, &mut out).unwrap();
            assert_eq!(core::str::from_utf8(&out[..n]).unwrap(), o);
        }
        assert_eq!(
            base64(&[0xff; 13], &mut out),
            None,
            "too small: refused, not cut"
        );
    }

    fn decode(s: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0u8; s.len() / 4 * 3];
        let n = unbase64(s, &mut out)?;
        out.truncate(n);
        Some(out)
    }

    #[test]
    fn the_decoder_agrees_with_the_standard() {
        assert_eq!(decode(b"Zm9vYmE=").unwrap(), b"fooba");
        assert_eq!(decode(b"Zg==").unwrap(), b"f");
        assert_eq!(decode(b"Zg=a"), None);
    }

    #[test]
    fn every_length_round_trips_through_an_independent_decoder() {
        let mut out = vec![0u8; MAX_FRAME.div_ceil(3) * 4];
        let data: Vec<u8> = (0..MAX_FRAME as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in 0..=MAX_FRAME {
            let n = base64(&data[..len], &mut out).unwrap();
            assert_eq!(n, len.div_ceil(3) * 4);
            let line = &out[..n];
            assert!(line
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(c)));
            assert_eq!(decode(line).unwrap(), &data[..len], "length {len}");
        }
    }

    #[test]
    fn an_exact_fit_is_used_and_one_byte_less_is_refused_untouched() {
        let data = [0xfbu8, 0xff, 0xbf, 0x00, 0x10];
        let mut out = [b'#'; 8];
        assert_eq!(base64(&data, &mut out), Some(8));
        assert_eq!(&out, b"+/+/ABA=");
        let mut short = [b'#'; 7];
        assert_eq!(base64(&data, &mut short), None);
        assert_eq!(short, [b'#'; 7], "nothing written when refused");
    }

    proptest! {
        #[test]
        fn any_frame_round_trips(data in proptest::collection::vec(any::<u8>(), 0..=MAX_FRAME)) {
            let mut out = vec![0u8; MAX_FRAME.div_ceil(3) * 4];
            let n = base64(&data, &mut out).unwrap();
            prop_assert_eq!(decode(&out[..n]).unwrap(), data);
        }
    }
}
