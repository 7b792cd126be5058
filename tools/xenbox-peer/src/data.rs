//! Deterministic test data shared with the guest appliance and the tests: seeded
//! pseudo-random byte streams (splitmix64), the `/bytes/N` pattern, and FNV-1a 64.

/// FNV-1a 64 offset basis: the hash of no bytes.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// Continue the FNV-1a 64 hash `h` over `bytes` (start from [`FNV_OFFSET`]).
pub fn fnv1a64(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// Byte `i` of the appliance's `GET /bytes/N` body.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// Fill `buf` with the pattern from offset `at` on.
#[cfg(test)]
pub fn pattern_fill(at: u64, buf: &mut [u8]) {
    for (i, b) in (at..).zip(buf.iter_mut()) {
        *b = pattern_byte(i);
    }
}

/// The offset of the first byte of `buf` (which starts at offset `at` of the body) that
/// differs from the pattern.
pub fn pattern_mismatch(at: u64, buf: &[u8]) -> Option<u64> {
    (at..)
        .zip(buf)
        .find(|&(i, &b)| b != pattern_byte(i))
        .map(|(i, _)| i)
}

/// splitmix64: small, fast, and good enough to make every byte count.
#[derive(Clone, Debug)]
pub struct Prng(u64);

impl Prng {
    /// Stream number `stream` of seed `seed` (e.g. one per connection or datagram).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut p = Prng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        p.next_u64();
        p
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// An endless pseudo-random byte stream read in pieces of any size: the same seed and
/// stream give the same bytes however the reads are cut.
#[derive(Clone, Debug)]
pub struct ByteStream {
    prng: Prng,
    spare: [u8; 8],
    used: usize,
}

impl ByteStream {
    /// See [`Prng::new`].
    pub fn new(seed: u64, stream: u64) -> Self {
        Self {
            prng: Prng::new(seed, stream),
            spare: [0; 8],
            used: 8,
        }
    }

    /// The next `out.len()` bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8]) {
        let mut i = 0;
        while i < out.len() && self.used < 8 {
            out[i] = self.spare[self.used];
            self.used += 1;
            i += 1;
        }
        let mut words = out[i..].chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.prng.next_u64().to_le_bytes());
        }
        let rest = words.into_remainder();
        if !rest.is_empty() {
            self.spare = self.prng.next_u64().to_le_bytes();
            rest.copy_from_slice(&self.spare[..rest.len()]);
            self.used = rest.len();
        }
    }
}

/// Datagram `seq` of `size` bytes for seed `seed`: pseudo-random bytes, the first 8 of
/// them replaced by `seq` (little-endian) when `size >= 8`, so replies can be matched.
pub fn datagram(seed: u64, seq: u64, size: usize) -> Vec<u8> {
    let mut v = vec![0; size];
    ByteStream::new(seed, seq).fill(&mut v);
    if size >= 8 {
        v[..8].copy_from_slice(&seq.to_le_bytes());
    }
    v
}

/// The sequence number in the first 8 bytes of a datagram, if it is that long.
pub fn datagram_seq(d: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(
            fnv1a64(fnv1a64(FNV_OFFSET, b"foo"), b"bar"),
            fnv1a64(FNV_OFFSET, b"foobar")
        );
    }

    #[test]
    fn pattern() {
        let mut b = [0u8; 4];
        pattern_fill(0, &mut b);
        assert_eq!(b, [0x00, 0x9e, 0x3c, 0xda]);
        assert_eq!(pattern_mismatch(0, &b), None);
        b[2] ^= 1;
        assert_eq!(pattern_mismatch(0, &b), Some(2));
        let off = [pattern_byte(7), !pattern_byte(8)];
        assert_eq!(pattern_mismatch(7, &off), Some(8));
    }

    #[test]
    fn byte_stream_independent_of_read_sizes() {
        let mut whole = vec![0; 1000];
        ByteStream::new(5, 1).fill(&mut whole);
        let mut s = ByteStream::new(5, 1);
        let mut pieces = Vec::new();
        for n in [1usize, 3, 8, 13, 0, 7, 64, 904] {
            let mut p = vec![0; n];
            s.fill(&mut p);
            pieces.extend(p);
        }
        assert_eq!(pieces, whole);
        let mut other = vec![0; 1000];
        ByteStream::new(5, 2).fill(&mut other);
        assert_ne!(other, whole);
    }

    #[test]
    fn datagrams_carry_their_sequence_number() {
        let d = datagram(1, 77, 20);
        assert_eq!(datagram_seq(&d), Some(77));
        assert_eq!(d, datagram(1, 77, 20));
        assert_ne!(d, datagram(2, 77, 20));
        assert_eq!(datagram(1, 3, 5).len(), 5);
        assert_eq!(datagram_seq(&[1, 2, 3]), None);
    }
}
