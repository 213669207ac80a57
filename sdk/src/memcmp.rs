//! A word-at-a-time `memcmp` for the plugin build.
//!
//! The libc of `wasm32-wasip2` compares byte by byte, and a scaler compares strings all the time
//! (host ids as `BTreeMap` keys, labels, component ids): in the spreadscaler's steady-state call
//! that byte loop was the largest single item of guest time (docs/decisions/0007-plugin-call-guest-code.md).
//! Rust lowers `==` and `Ord` on strings and byte slices to calls of `memcmp`; defining the
//! symbol here, in the SDK every plugin links, means the linker takes this definition and never
//! pulls in the libc one. Only the wasm build defines the symbol; [`compare`] is the same
//! algorithm as a safe function so that native unit tests can check it.

/// `memcmp` semantics on two slices of equal length: negative, zero or positive as `a` sorts
/// before, equal to or after `b`, comparing bytes as unsigned.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn compare(a: &[u8], b: &[u8]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    // SAFETY: both slices are valid for `a.len()` bytes.
    unsafe { compare_raw(a.as_ptr(), b.as_ptr(), a.len()) }
}

/// Compares eight bytes per step; on the first differing word, the lowest differing byte (the
/// first in memory, as words are read little-endian) decides.
///
/// # Safety
///
/// `a` and `b` must be valid to read for `n` bytes.
#[inline(always)]
unsafe fn compare_raw(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n`, and the caller vouches for `n` bytes; unaligned reads are
        // allowed.
        let (x, y) = unsafe {
            (
                u64::from_le(core::ptr::read_unaligned(a.add(i).cast::<u64>())),
                u64::from_le(core::ptr::read_unaligned(b.add(i).cast::<u64>())),
            )
        };
        if x != y {
            let shift = (x ^ y).trailing_zeros() & !7;
            return ((x >> shift) & 0xff) as i32 - ((y >> shift) & 0xff) as i32;
        }
        i += 8;
    }
    while i < n {
        // SAFETY: `i < n`.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// The C `memcmp` the plugin's code calls.
///
/// # Safety
///
/// As C's `memcmp`: both pointers valid to read for `n` bytes.
#[cfg(target_arch = "wasm32")]
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { compare_raw(a, b, n) }
}

/// C's `bcmp` (equality only) is `memcmp` here.
///
/// # Safety
///
/// As C's `bcmp`: both pointers valid to read for `n` bytes.
#[cfg(target_arch = "wasm32")]
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { compare_raw(a, b, n) }
}

#[cfg(test)]
mod tests {
    use super::compare;

    fn sign(n: i32) -> i32 {
        n.signum()
    }

    #[test]
    fn agrees_with_slice_ordering() {
        let samples: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"a".to_vec(),
            b"host-00000".to_vec(),
            b"host-00001".to_vec(),
            b"host-10000".to_vec(),
            b"Host-00000".to_vec(),
            vec![0xff; 17],
            vec![0x00; 17],
            (0u8..=40).collect(),
            (1u8..=41).collect(),
        ];
        for a in &samples {
            for b in &samples {
                let n = a.len().min(b.len());
                let (a, b) = (&a[..n], &b[..n]);
                let expected = match a.cmp(b) {
                    std::cmp::Ordering::Less => -1,
                    std::cmp::Ordering::Equal => 0,
                    std::cmp::Ordering::Greater => 1,
                };
                assert_eq!(sign(compare(a, b)), expected, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn every_differing_position_and_byte_order() {
        // A difference at each offset of a 20-byte buffer (inside a word, at its edges, in
        // the byte tail), with the larger byte on either side and high bytes (unsigned).
        for len in 1..20 {
            for at in 0..len {
                for (lo, hi) in [(0x00u8, 0x01u8), (0x7f, 0x80), (0x10, 0xff)] {
                    let mut a = vec![0x61u8; len];
                    let mut b = a.clone();
                    a[at] = lo;
                    b[at] = hi;
                    // Later bytes that disagree the other way must not matter.
                    if at + 1 < len {
                        a[len - 1] = 0xff;
                        b[len - 1] = 0x00;
                    }
                    assert!(compare(&a, &b) < 0, "len {len} at {at}");
                    assert!(compare(&b, &a) > 0, "len {len} at {at}");
                }
                let same = vec![0x5au8; len];
                assert_eq!(compare(&same, &same.clone()), 0);
            }
        }
    }
}
