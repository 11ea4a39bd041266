//! The memory functions every binary of this crate calls: on musl they are cnet's own
//! (`mnl/musl.c`, linked by build.rs), elsewhere the C library's. Each is compared with a
//! byte-by-byte model over sizes 0..=300 (every branch of the small-size code and the
//! `rep` paths), all alignments of both buffers, and overlaps in both directions.

use cnet_testsupport::XorShift as Rng;
use std::hint::black_box;

const LEN: usize = 1024;

/// The model: one byte at a time through `black_box`, so it cannot become a call to the
/// function under test. Copies as memmove does (as if through a temporary).
fn model_move(buf: &mut [u8], to: usize, from: usize, n: usize) {
    let tmp: Vec<u8> = (0..n).map(|i| black_box(buf[from + i])).collect();
    for (i, b) in tmp.into_iter().enumerate() {
        buf[to + i] = black_box(b);
    }
}

fn filled(rng: &mut Rng) -> Vec<u8> {
    (0..LEN).map(|_| rng.next() as u8).collect()
}

#[test]
fn memmove_matches_a_byte_model() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..40_000 {
        let n = rng.below(301);
        let from = rng.below(LEN - n);
        let to = rng.below(LEN - n);
        let mut want = filled(&mut rng);
        let mut got = want.clone();
        model_move(&mut want, to, from, n);
        let p = got.as_mut_ptr();
        // SAFETY: both ranges lie inside `got` (from + n and to + n are at most LEN).
        unsafe { std::ptr::copy(black_box(p.add(from)), black_box(p.add(to)), black_box(n)) };
        assert_eq!(got, want, "memmove n {n}, from {from}, to {to}");
    }
}

#[test]
fn memcpy_matches_a_byte_model() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..40_000 {
        let n = rng.below(301);
        let from = rng.below(LEN - n);
        let to = rng.below(LEN - n);
        let src = filled(&mut rng);
        let mut got = filled(&mut rng);
        let mut want = got.clone();
        for i in 0..n {
            want[to + i] = black_box(src[from + i]);
        }
        // SAFETY: distinct buffers; both ranges lie inside them.
        unsafe {
            std::ptr::copy_nonoverlapping(
                black_box(src.as_ptr().add(from)),
                black_box(got.as_mut_ptr().add(to)),
                black_box(n),
            );
        }
        assert_eq!(got, want, "memcpy n {n}, from {from}, to {to}");
    }
}

#[test]
fn memset_matches_a_byte_model() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for _ in 0..40_000 {
        let n = rng.below(301);
        let to = rng.below(LEN - n);
        let byte = rng.next() as u8;
        let mut got = filled(&mut rng);
        let mut want = got.clone();
        for b in &mut want[to..to + n] {
            *b = black_box(byte);
        }
        // SAFETY: the range lies inside `got`.
        unsafe { std::ptr::write_bytes(black_box(got.as_mut_ptr().add(to)), byte, black_box(n)) };
        assert_eq!(got, want, "memset n {n}, to {to}, byte {byte}");
    }
}

#[test]
fn memcmp_orders_as_a_byte_model() {
    let mut rng = Rng(0x0bad_cafe_dead_beef);
    for _ in 0..40_000 {
        let n = rng.below(301);
        let at = rng.below(LEN - n);
        let a = filled(&mut rng);
        let mut b = a.clone();
        if n > 0 && rng.below(4) != 0 {
            let k = at + rng.below(n);
            b[k] = b[k].wrapping_add(1 + rng.below(255) as u8);
        }
        let (x, y) = (black_box(&a[at..at + n]), black_box(&b[at..at + n]));
        let want = x
            .iter()
            .zip(y)
            .map(|(p, q)| black_box(*p).cmp(&black_box(*q)))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal);
        assert_eq!(x.cmp(y), want, "memcmp n {n}, at {at}");
        assert_eq!(x == y, want.is_eq(), "bcmp n {n}, at {at}");
    }
}
