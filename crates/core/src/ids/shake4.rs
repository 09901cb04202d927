//! SHAKE-128 of up to eight one-block messages at once (10 bytes of output each): the digest
//! behind nested row ids. With AVX-512 eight Keccak states run side by side in 512-bit
//! registers, with AVX2 four in 256-bit ones; otherwise each message goes through the `sha3`
//! crate.

/// SHAKE-128's rate in bytes: messages shorter than this fit one block with their padding.
pub const RATE: usize = 168;

/// Messages hashed per call.
pub const LANES: usize = 8;

/// The first 10 bytes of SHAKE-128 of `msgs[..n]` (each shorter than [`RATE`]).
pub fn shake128_10x8(msgs: &[Vec<u8>; LANES], n: usize) -> [[u8; 10]; LANES] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { x86::shake128_10x8_avx512(msgs, n) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            let mut out = [[0u8; 10]; LANES];
            for half in 0..2 {
                let m = n.saturating_sub(half * 4).min(4);
                if m == 0 {
                    break;
                }
                let msgs4: &[Vec<u8>; 4] = msgs[half * 4..half * 4 + 4].try_into().expect("4 messages");
                // SAFETY: the CPU supports AVX2 (checked just above).
                let d = unsafe { x86::shake128_10x4_avx2(msgs4, m) };
                out[half * 4..half * 4 + 4].copy_from_slice(&d);
            }
            return out;
        }
    }
    scalar(msgs, n)
}

fn scalar<const N: usize>(msgs: &[Vec<u8>; N], n: usize) -> [[u8; 10]; N] {
    use sha3::digest::{ExtendableOutput, Update, XofReader};
    let mut out = [[0u8; 10]; N];
    for k in 0..n {
        let mut h = sha3::Shake128::default();
        h.update(&msgs[k]);
        h.finalize_xof().read(&mut out[k]);
    }
    out
}

/// The padded block of a message as little-endian lanes (SHAKE padding: 0x1F ... 0x80).
fn block_lanes(msg: &[u8]) -> [u64; 21] {
    let mut block = [0u8; RATE];
    block[..msg.len()].copy_from_slice(msg);
    block[msg.len()] ^= 0x1F;
    block[RATE - 1] ^= 0x80;
    let mut lanes = [0u64; 21];
    for (i, l) in lanes.iter_mut().enumerate() {
        *l = u64::from_le_bytes(block[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    }
    lanes
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::block_lanes;

    const RC: [u64; 24] = [
        0x0000000000000001,
        0x0000000000008082,
        0x800000000000808A,
        0x8000000080008000,
        0x000000000000808B,
        0x0000000080000001,
        0x8000000080008081,
        0x8000000000008009,
        0x000000000000008A,
        0x0000000000000088,
        0x0000000080008009,
        0x000000008000000A,
        0x000000008000808B,
        0x800000000000008B,
        0x8000000000008089,
        0x8000000000008003,
        0x8000000000008002,
        0x8000000000000080,
        0x000000000000800A,
        0x800000008000000A,
        0x8000000080008081,
        0x8000000000008080,
        0x0000000080000001,
        0x8000000080008008,
    ];

    /// Rotation offsets by lane index x + 5y.
    const RHO: [i64; 25] =
        [0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14];

    #[inline(always)]
    unsafe fn rol(x: __m256i, n: i64) -> __m256i {
        unsafe {
            _mm256_or_si256(
                _mm256_sllv_epi64(x, _mm256_set1_epi64x(n)),
                _mm256_srlv_epi64(x, _mm256_set1_epi64x(64 - n)),
            )
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn shake128_10x4_avx2(msgs: &[Vec<u8>; 4], n: usize) -> [[u8; 10]; 4] {
        let lanes: [[u64; 21]; 4] = std::array::from_fn(|k| if k < n { block_lanes(&msgs[k]) } else { [0; 21] });
        let mut a = [_mm256_setzero_si256(); 25];
        for (i, v) in a.iter_mut().enumerate().take(21) {
            *v = _mm256_set_epi64x(lanes[3][i] as i64, lanes[2][i] as i64, lanes[1][i] as i64, lanes[0][i] as i64);
        }
        unsafe { keccak_f(&mut a) };
        let mut l0 = [0u64; 4];
        let mut l1 = [0u64; 4];
        // SAFETY: unaligned stores of 256 bits into 4 u64s.
        unsafe {
            _mm256_storeu_si256(l0.as_mut_ptr().cast(), a[0]);
            _mm256_storeu_si256(l1.as_mut_ptr().cast(), a[1]);
        }
        let mut out = [[0u8; 10]; 4];
        for k in 0..4 {
            out[k][..8].copy_from_slice(&l0[k].to_le_bytes());
            out[k][8..].copy_from_slice(&l1[k].to_le_bytes()[..2]);
        }
        out
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn shake128_10x8_avx512(msgs: &[Vec<u8>; 8], n: usize) -> [[u8; 10]; 8] {
        let lanes: [[u64; 21]; 8] = std::array::from_fn(|k| if k < n { block_lanes(&msgs[k]) } else { [0; 21] });
        let mut a = [_mm512_setzero_si512(); 25];
        for (i, v) in a.iter_mut().enumerate().take(21) {
            let l: [i64; 8] = std::array::from_fn(|k| lanes[k][i] as i64);
            *v = _mm512_set_epi64(l[7], l[6], l[5], l[4], l[3], l[2], l[1], l[0]);
        }
        for rc in RC {
            // theta (three-way xors in one instruction each)
            let mut c = [_mm512_setzero_si512(); 5];
            for x in 0..5 {
                let t = _mm512_ternarylogic_epi64::<0x96>(a[x], a[x + 5], a[x + 10]);
                c[x] = _mm512_ternarylogic_epi64::<0x96>(t, a[x + 15], a[x + 20]);
            }
            for x in 0..5 {
                let d = _mm512_xor_si512(c[(x + 4) % 5], _mm512_rolv_epi64(c[(x + 1) % 5], _mm512_set1_epi64(1)));
                for y in 0..5 {
                    a[x + 5 * y] = _mm512_xor_si512(a[x + 5 * y], d);
                }
            }
            // rho and pi
            let mut b = [_mm512_setzero_si512(); 25];
            for x in 0..5 {
                for y in 0..5 {
                    b[y + 5 * ((2 * x + 3 * y) % 5)] =
                        _mm512_rolv_epi64(a[x + 5 * y], _mm512_set1_epi64(RHO[x + 5 * y]));
                }
            }
            // chi: a ^ (!b & c) in one instruction
            for y in 0..5 {
                for x in 0..5 {
                    a[x + 5 * y] =
                        _mm512_ternarylogic_epi64::<0xD2>(b[x + 5 * y], b[(x + 1) % 5 + 5 * y], b[(x + 2) % 5 + 5 * y]);
                }
            }
            // iota
            a[0] = _mm512_xor_si512(a[0], _mm512_set1_epi64(rc as i64));
        }
        let mut l0 = [0u64; 8];
        let mut l1 = [0u64; 8];
        // SAFETY: unaligned stores of 512 bits into 8 u64s.
        unsafe {
            _mm512_storeu_si512(l0.as_mut_ptr().cast(), a[0]);
            _mm512_storeu_si512(l1.as_mut_ptr().cast(), a[1]);
        }
        let mut out = [[0u8; 10]; 8];
        for k in 0..8 {
            out[k][..8].copy_from_slice(&l0[k].to_le_bytes());
            out[k][8..].copy_from_slice(&l1[k].to_le_bytes()[..2]);
        }
        out
    }

    #[target_feature(enable = "avx2")]
    unsafe fn keccak_f(a: &mut [__m256i; 25]) {
        for rc in RC {
            // theta
            let mut c = [_mm256_setzero_si256(); 5];
            for x in 0..5 {
                c[x] = _mm256_xor_si256(
                    _mm256_xor_si256(_mm256_xor_si256(a[x], a[x + 5]), _mm256_xor_si256(a[x + 10], a[x + 15])),
                    a[x + 20],
                );
            }
            for x in 0..5 {
                let d = _mm256_xor_si256(c[(x + 4) % 5], unsafe { rol(c[(x + 1) % 5], 1) });
                for y in 0..5 {
                    a[x + 5 * y] = _mm256_xor_si256(a[x + 5 * y], d);
                }
            }
            // rho and pi
            let mut b = [_mm256_setzero_si256(); 25];
            for x in 0..5 {
                for y in 0..5 {
                    b[y + 5 * ((2 * x + 3 * y) % 5)] = unsafe { rol(a[x + 5 * y], RHO[x + 5 * y]) };
                }
            }
            // chi
            for y in 0..5 {
                for x in 0..5 {
                    a[x + 5 * y] = _mm256_xor_si256(
                        b[x + 5 * y],
                        _mm256_andnot_si256(b[(x + 1) % 5 + 5 * y], b[(x + 2) % 5 + 5 * y]),
                    );
                }
            }
            // iota
            a[0] = _mm256_xor_si256(a[0], _mm256_set1_epi64x(rc as i64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_match_sha3() {
        let msgs: [Vec<u8>; LANES] = std::array::from_fn(|k| (0..k * 23 % RATE).map(|i| (i * 31 + k) as u8).collect());
        for n in 1..=LANES {
            assert_eq!(shake128_10x8(&msgs, n)[..n], scalar(&msgs, n)[..n]);
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let four: &[Vec<u8>; 4] = msgs[..4].try_into().unwrap();
            // SAFETY: AVX2 checked above.
            assert_eq!(unsafe { x86::shake128_10x4_avx2(four, 4) }, scalar(four, 4));
        }
        let last = vec![b'x'; RATE - 1];
        let msgs: [Vec<u8>; LANES] = std::array::from_fn(|_| last.clone());
        assert_eq!(shake128_10x8(&msgs, LANES), scalar(&msgs, LANES));
    }
}
