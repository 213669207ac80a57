//! Host ids shaped like wasmCloud's: nkey-style public keys, 56 characters starting with `N`.
//!
//! They are not real nkeys (nothing is signed with them); only the shape matters to tools that
//! validate or abbreviate host ids.

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A fresh random host id: `N` followed by 55 base32 characters.
pub fn generate() -> String {
    // Three v4 UUIDs give 366 random bits; 55 base32 characters need 275.
    let bytes: Vec<u8> = (0..3)
        .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
        .collect();
    let mut id = String::with_capacity(56);
    id.push('N');
    for i in 0..55 {
        // Character i takes bits 5i..5i+5 of the random bytes, most significant first.
        let bit = i * 5;
        let pair = u16::from_be_bytes([bytes[bit / 8], bytes[bit / 8 + 1]]);
        let index = (pair >> (11 - bit % 8)) & 0x1f;
        id.push(BASE32[usize::from(index)] as char);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_like_a_wasmcloud_host_id() {
        let id = generate();
        assert_eq!(id.len(), 56, "{id}");
        assert!(id.starts_with('N'));
        assert!(id
            .chars()
            .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
        assert_ne!(id, generate());
    }
}
