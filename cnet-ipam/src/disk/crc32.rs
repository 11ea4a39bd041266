//! CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320: the checksum of zlib, PNG and
//! Ethernet) of journal lines, slicing by 8 bytes with tables built at compile time.
//!
//! Written here rather than taken from a crate with run-time CPU dispatch: the first use of
//! such a dispatch asks the CPU for its features (`cpuid`), which traps to the hypervisor on
//! a virtual machine. On this project's machines that was ~70 µs of every plugin process,
//! while a journal is a few tens of kilobytes (this table walk: ~1–2 GB/s).

const POLY: u32 = 0xEDB8_8320;

const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut s = 1;
        while s < 8 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            s += 1;
        }
        i += 1;
    }
    t
}

static TABLES: [[u32; 256]; 8] = tables();

/// The CRC-32 of `bytes`.
pub(crate) fn hash(bytes: &[u8]) -> u32 {
    let t = &TABLES;
    let mut crc = !0u32;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][c[4] as usize]
            ^ t[2][c[5] as usize]
            ^ t[1][c[6] as usize]
            ^ t[0][c[7] as usize];
    }
    for b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(*b)) & 0xff) as usize];
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::hash;
    use proptest::prelude::*;

    #[test]
    fn standard_check_values() {
        assert_eq!(hash(b""), 0);
        assert_eq!(hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            hash(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    proptest! {
        /// Every length and alignment agrees with an independent implementation.
        #[test]
        fn equals_crc32fast(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(hash(&bytes), crc32fast::hash(&bytes));
        }
    }
}
