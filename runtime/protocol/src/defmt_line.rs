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
/// `None` if `out` is too small.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
