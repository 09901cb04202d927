//! Load ids and row ids as dlt makes them.

use base64::Engine;
use sha3::digest::{ExtendableOutput, Update, XofReader};

mod shake4;

/// Bytes in a `_dlt_id`.
pub const DLT_ID_LENGTH_BYTES: usize = 10;

/// A random `_dlt_id`: 10 random bytes, base64 without padding (14 characters).
pub fn random_row_id() -> String {
    let bytes: [u8; DLT_ID_LENGTH_BYTES] = rand::random();
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// SHAKE-128 digest of `data`, `len` bytes, base64 without padding.
pub fn digest_b64(data: &[u8], len: usize) -> String {
    let mut h = sha3::Shake128::default();
    h.update(data);
    let mut r = h.finalize_xof();
    let mut buf = vec![0u8; len];
    r.read(&mut buf);
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(buf)
}

/// A nested row id: `digest(f"{parent_id}_{table}_{idx}")`.
pub fn child_row_id(parent_id: &str, table: &str, idx: usize) -> String {
    digest_b64(format!("{parent_id}_{table}_{idx}").as_bytes(), DLT_ID_LENGTH_BYTES)
}

/// Child row ids in bulk: for each `(parent_id, table, idx)`, [`child_row_id`] written as 14
/// bytes into `out` at the job's slot (`slot * 14`). Eight digests are computed at once with
/// AVX-512, four with AVX2, where the CPU has it (the hashing is a large part of normalizing nested data).
pub fn child_row_ids_into(jobs: &[(&str, &str, usize, usize)], out: &mut [u8]) {
    const N: usize = shake4::LANES;
    let mut msgs: [Vec<u8>; N] = Default::default();
    let mut slots = [0usize; N];
    let mut n = 0;
    let flush = |msgs: &[Vec<u8>; N], slots: &[usize; N], n: usize, out: &mut [u8]| {
        let digests = shake4::shake128_10x8(msgs, n);
        for k in 0..n {
            let at = slots[k] * 14;
            base64::engine::general_purpose::STANDARD_NO_PAD
                .encode_slice(digests[k], &mut out[at..at + 14])
                .expect("14 bytes hold 10 bytes in base64");
        }
    };
    for &(parent, table, idx, slot) in jobs {
        let m = &mut msgs[n];
        m.clear();
        use std::io::Write;
        let _ = write!(m, "{parent}_{table}_{idx}");
        if m.len() >= shake4::RATE {
            // more than one block: the one-at-a-time path
            out[slot * 14..slot * 14 + 14].copy_from_slice(digest_b64(m, DLT_ID_LENGTH_BYTES).as_bytes());
            continue;
        }
        slots[n] = slot;
        n += 1;
        if n == N {
            flush(&msgs, &slots, n, out);
            n = 0;
        }
    }
    if n > 0 {
        flush(&msgs, &slots, n, out);
    }
}

/// A new load id: Unix seconds as Python's float repr (e.g. `1795630746.7238905`),
/// strictly greater than `after` when given.
pub fn new_load_id(after: Option<&str>) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let mut t = now;
    if let Some(prev) = after.and_then(|p| p.parse::<f64>().ok())
        && t <= prev
    {
        t = prev + 0.000001;
    }
    format_py_float(t)
}

/// Python's `repr(float)` for ordinary magnitudes (shortest round-trip, always with a dot).
pub fn format_py_float(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") { s } else { format!("{s}.0") }
}

/// The instant a load id stands for.
pub fn load_id_time(load_id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let secs: f64 = load_id.parse().ok()?;
    let micros = (secs * 1_000_000.0).round() as i64;
    chrono::DateTime::from_timestamp_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_child_ids_match_one_at_a_time() {
        let long = "t".repeat(200);
        let tables = ["issues__labels", "a", long.as_str(), "x__y__z"];
        let parents: Vec<String> = (0..37).map(|_| random_row_id()).collect();
        let mut jobs = vec![];
        for (i, p) in parents.iter().enumerate() {
            jobs.push((p.as_str(), tables[i % 4], i * 7919, i));
        }
        let mut out = vec![b'?'; jobs.len() * 14];
        child_row_ids_into(&jobs, &mut out);
        for (p, t, idx, slot) in jobs {
            assert_eq!(std::str::from_utf8(&out[slot * 14..slot * 14 + 14]).unwrap(), child_row_id(p, t, idx));
        }
        // messages of every length up to the block size
        for len in 0..170 {
            let p = "p".repeat(len);
            let mut out = vec![0u8; 14];
            child_row_ids_into(&[(p.as_str(), "t", 3, 0)], &mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), child_row_id(&p, "t", 3), "length {len}");
        }
    }

    #[test]
    fn ids() {
        assert_eq!(random_row_id().len(), 14);
        // dlt: parent eG/JB62hf+ATbQ, table ordering__w, idx 0 -> 8LFjnf42asX5qw
        assert_eq!(child_row_id("eG/JB62hf+ATbQ", "ordering__w", 0), "8LFjnf42asX5qw");
        // dlt key hash of {"id":1} -> z5jIxXIbUnmbKw
        assert_eq!(digest_b64(br#"{"id":1}"#, 10), "z5jIxXIbUnmbKw");
        let a = new_load_id(None);
        let b = new_load_id(Some(&a));
        assert!(b.parse::<f64>().unwrap() > a.parse::<f64>().unwrap());
        assert!(load_id_time(&a).is_some());
        assert_eq!(format_py_float(1.0), "1.0");
    }
}
