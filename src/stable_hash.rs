//! A hash that never changes: FNV-1a, 64 bit.
//!
//! tracktable derives durable names from it (the hash suffix of a cut column name, the
//! id of a message that arrived without `messageId`), so its output is part of the
//! warehouse's contents and must be identical on every process, platform and release.
//! `std`'s hashers are randomly seeded and differential's `Hashable` is documented as
//! "not a persistent format", so neither may be used for this.

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over the given byte slices, as if they were concatenated.
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut hash = OFFSET_BASIS;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

/// The low 32 bits of [`fnv1a64`] as eight lowercase hex digits: short enough for a
/// name suffix, wide enough that two names colliding by accident is negligible.
pub fn short_hex(parts: &[&[u8]]) -> String {
    format!("{:08x}", fnv1a64(parts) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(&[b"foobar"]), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn parts_hash_like_their_concatenation() {
        assert_eq!(fnv1a64(&[b"foo", b"bar"]), fnv1a64(&[b"foobar"]));
        assert_eq!(short_hex(&[b"foobar"]), "f73967e8");
    }
}
