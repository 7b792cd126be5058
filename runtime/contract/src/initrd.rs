//! Checked initrd images: a small header, a deterministic body and a checksum, so that a
//! guest can prove that the initrd it was handed arrived intact through every mapping the
//! runtime built (or tore down) on the way. `cargo xtask` makes these images; the sample
//! app verifies them. Any other initrd is simply "not a checked image".
//!
//! ```text
//! offset  size  field
//!      0     8  magic "XPVRTIMG"
//!      8     4  version (1)
//!     12     4  header length (64)
//!     16     8  total length in bytes (header included; a multiple of 8)
//!     24     8  seed of the body pattern
//!     32     8  checksum of the body (bytes 64..total)
//!     40    24  zero
//! ```
//!
//! All numbers are little-endian.
//!
//! ```
//! use xenpv_contract::initrd::{header_for, pattern_word, verify, ImageError, HEADER_LEN};
//!
//! let h = header_for(128, 42).unwrap();
//! let mut img = h.to_bytes().to_vec();
//! for i in 0..(128 - HEADER_LEN as u64) / 8 {
//!     img.extend_from_slice(&pattern_word(42, i).to_le_bytes());
//! }
//! assert_eq!(verify(&img).unwrap().header, h);
//! img[100] ^= 1; // one flipped bit, named by its word
//! assert!(matches!(verify(&img), Err(ImageError::FirstBadWord { offset: 96, .. })));
//! ```

/// The first 8 bytes of a checked image.
pub const MAGIC: [u8; 8] = *b"XPVRTIMG";
/// The format version this crate writes and reads.
pub const VERSION: u32 = 1;
/// Bytes in the header; the body starts here.
pub const HEADER_LEN: usize = 64;

/// Word `i` of the body (little-endian u64 at byte offset 64 + 8*i): splitmix64.
pub fn pattern_word(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Order-sensitive checksum over little-endian u64 words; cheap enough to run over a
/// gigabyte under software emulation.
#[derive(Clone, Copy, Debug)]
pub struct Checksum(u64);

impl Default for Checksum {
    fn default() -> Self {
        Self::new()
    }
}

impl Checksum {
    /// The checksum of nothing.
    pub const fn new() -> Self {
        Checksum(0xcbf2_9ce4_8422_2325)
    }
    /// Feed one word.
    #[inline]
    pub fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }
    /// Feed bytes whose length is a multiple of 8.
    pub fn bytes(&mut self, b: &[u8]) {
        debug_assert!(b.len().is_multiple_of(8));
        for c in b.chunks_exact(8) {
            self.word(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
    }
    /// The checksum of what was fed so far.
    pub const fn value(&self) -> u64 {
        self.0
    }
}

/// The variable fields of a checked image's header (magic, version and header length
/// are constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Image length in bytes, header included (a multiple of 8).
    pub total_len: u64,
    /// Seed of the body pattern ([`pattern_word`]).
    pub seed: u64,
    /// [`Checksum`] of the body.
    pub checksum: u64,
}

impl Header {
    /// The 64 header bytes, laid out as in the module docs.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        h[16..24].copy_from_slice(&self.total_len.to_le_bytes());
        h[24..32].copy_from_slice(&self.seed.to_le_bytes());
        h[32..40].copy_from_slice(&self.checksum.to_le_bytes());
        h
    }
}

/// Header and checksum of the image of `total_len` bytes made from `seed`, computed
/// without materialising the body.
pub fn header_for(total_len: u64, seed: u64) -> Result<Header, ImageError> {
    check_len(total_len)?;
    let mut sum = Checksum::new();
    for i in 0..(total_len - HEADER_LEN as u64) / 8 {
        sum.word(pattern_word(seed, i));
    }
    Ok(Header {
        total_len,
        seed,
        checksum: sum.value(),
    })
}

fn check_len(total_len: u64) -> Result<(), ImageError> {
    if total_len < HEADER_LEN as u64 || !total_len.is_multiple_of(8) {
        return Err(ImageError::BadLength { total_len });
    }
    Ok(())
}

/// Why an image did not verify. Every variant names the values involved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than a header: not a checked image at all.
    TooShort {
        /// The module's length.
        len: usize,
    },
    /// The first 8 bytes are not [`MAGIC`]: not a checked image.
    BadMagic,
    /// A version (or header length) this crate does not read.
    BadVersion {
        /// The version in the header.
        found: u32,
    },
    /// A total length below [`HEADER_LEN`] or not a multiple of 8.
    BadLength {
        /// The length in the header (or asked of [`header_for`]).
        total_len: u64,
    },
    /// The header's length and the module's length disagree (truncated or padded module).
    LengthMismatch {
        /// The length the header states.
        header: u64,
        /// The module's actual length.
        module: u64,
    },
    /// Content changed: the checksum over what the guest sees is not the header's.
    ChecksumMismatch {
        /// The header's checksum.
        expected: u64,
        /// The checksum of the body as read.
        found: u64,
    },
    /// The first word that differs from the pattern (only computed after a checksum mismatch).
    FirstBadWord {
        /// Byte offset of the word in the image.
        offset: u64,
        /// The pattern's word.
        expected: u64,
        /// The word as read.
        found: u64,
    },
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ImageError::TooShort { len } => {
                write!(
                    f,
                    "module of {len} bytes is shorter than the {HEADER_LEN}-byte header"
                )
            }
            ImageError::BadMagic => write!(f, "no XPVRTIMG magic: not a checked image"),
            ImageError::BadVersion { found } => {
                write!(
                    f,
                    "image version {found}, this runtime reads version {VERSION}"
                )
            }
            ImageError::BadLength { total_len } => write!(
                f,
                "image length {total_len} is not a multiple of 8 of at least {HEADER_LEN}"
            ),
            ImageError::LengthMismatch { header, module } => write!(
                f,
                "header says {header} bytes but the module has {module} bytes"
            ),
            ImageError::ChecksumMismatch { expected, found } => {
                write!(f, "checksum {found:#018x}, header says {expected:#018x}")
            }
            ImageError::FirstBadWord {
                offset,
                expected,
                found,
            } => write!(
                f,
                "first bad word at offset {offset:#x}: {found:#018x}, pattern says {expected:#018x}"
            ),
        }
    }
}

/// What a successful verification saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The image's header.
    pub header: Header,
}

/// Parse the header of `image` (the whole module as the guest sees it).
pub fn parse_header(image: &[u8]) -> Result<Header, ImageError> {
    if image.len() < HEADER_LEN {
        return Err(ImageError::TooShort { len: image.len() });
    }
    let u32_at =
        |o: usize| u32::from_le_bytes([image[o], image[o + 1], image[o + 2], image[o + 3]]);
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&image[o..o + 8]);
        u64::from_le_bytes(b)
    };
    if image[0..8] != MAGIC {
        return Err(ImageError::BadMagic);
    }
    let version = u32_at(8);
    if version != VERSION || u32_at(12) as usize != HEADER_LEN {
        return Err(ImageError::BadVersion { found: version });
    }
    let header = Header {
        total_len: u64_at(16),
        seed: u64_at(24),
        checksum: u64_at(32),
    };
    check_len(header.total_len)?;
    if header.total_len != image.len() as u64 {
        return Err(ImageError::LengthMismatch {
            header: header.total_len,
            module: image.len() as u64,
        });
    }
    Ok(header)
}

/// Verify a whole image: header, checksum, and on a mismatch the first word that differs.
pub fn verify(image: &[u8]) -> Result<Verified, ImageError> {
    let header = parse_header(image)?;
    let body = &image[HEADER_LEN..];
    let mut sum = Checksum::new();
    sum.bytes(body);
    if sum.value() != header.checksum {
        for (i, c) in body.chunks_exact(8).enumerate() {
            let found = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            let expected = pattern_word(header.seed, i as u64);
            if found != expected {
                return Err(ImageError::FirstBadWord {
                    offset: (HEADER_LEN + 8 * i) as u64,
                    expected,
                    found,
                });
            }
        }
        return Err(ImageError::ChecksumMismatch {
            expected: header.checksum,
            found: sum.value(),
        });
    }
    Ok(Verified { header })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(total: u64, seed: u64) -> Vec<u8> {
        let h = header_for(total, seed).unwrap();
        let mut v = h.to_bytes().to_vec();
        for i in 0..(total - HEADER_LEN as u64) / 8 {
            v.extend_from_slice(&pattern_word(seed, i).to_le_bytes());
        }
        v
    }

    #[test]
    fn round_trip() {
        let img = image(4096 * 3, 7);
        let v = verify(&img).unwrap();
        assert_eq!(v.header.seed, 7);
        assert_eq!(v.header.total_len, 4096 * 3);
    }

    #[test]
    fn detects_a_flipped_bit_and_names_the_word() {
        let mut img = image(4096 * 3, 7);
        img[5000] ^= 0x10;
        match verify(&img) {
            Err(ImageError::FirstBadWord { offset, .. }) => assert_eq!(offset, 5000 & !7),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn detects_swapped_pages() {
        let mut img = image(4096 * 4, 9);
        let (a, b) = img.split_at_mut(8192);
        a[4096..8192].swap_with_slice(&mut b[0..4096]);
        assert!(verify(&img).is_err());
    }

    #[test]
    fn truncation_and_garbage_are_errors_not_panics() {
        let img = image(4096, 1);
        assert_eq!(
            verify(&img[..100]),
            Err(ImageError::LengthMismatch {
                header: 4096,
                module: 100
            })
        );
        assert_eq!(verify(&img[..10]), Err(ImageError::TooShort { len: 10 }));
        assert_eq!(verify(&[0u8; 128]), Err(ImageError::BadMagic));
        let mut bad = img.clone();
        bad[16..24].copy_from_slice(&13u64.to_le_bytes());
        assert_eq!(verify(&bad), Err(ImageError::BadLength { total_len: 13 }));
    }
}
