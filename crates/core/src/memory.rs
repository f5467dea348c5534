//! Sizes checked before allocation: a request is multiplied out in 128 bits (no wrapped
//! integer) and compared with the machine's memory, so that an absurd size is an error that
//! says how much memory it needs, never an abort inside the allocator.

use crate::error::{Error, Result};

/// The machine's physical memory in bytes (`MemTotal` of /proc/meminfo; 1 TiB where that
/// cannot be read).
pub fn physical_memory() -> u128 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(1 << 40)
}

/// `bytes` as a short human-readable size ("1.5 GiB").
pub fn human_bytes(bytes: u128) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Checks that `prod(dims) * bytes_each` bytes (e.g. `[samples, sites]`, 8) fit in this
/// machine's memory; returns the element count `prod(dims)`. `what` names the request as the
/// user made it (e.g. "samples = 1000000 of 64 values", naming the parameter).
pub fn check_alloc(what: &str, dims: &[usize], bytes_each: usize) -> Result<usize> {
    let limit = physical_memory();
    let bytes = dims
        .iter()
        .try_fold(bytes_each as u128, |acc, &d| acc.checked_mul(d as u128));
    match bytes {
        Some(b) if b <= limit => Ok(dims.iter().product()),
        _ => Err(Error::TooLarge {
            what: what.to_string(),
            needs: bytes.map_or("more than 2^128 bytes".into(), human_bytes),
            has: human_bytes(limit),
        }),
    }
}

/// `vec![0.0; n]` after [`check_alloc`], with an allocation failure returned as an error.
pub fn zeros(what: &str, dims: &[usize]) -> Result<Vec<f64>> {
    let n = check_alloc(what, dims, std::mem::size_of::<f64>())?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::TooLarge {
        what: what.to_string(),
        needs: human_bytes(8 * n as u128),
        has: "less free memory than that".into(),
    })?;
    v.resize(n, 0.0);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absurd_request_names_its_size_and_the_machines() {
        let e = check_alloc(
            "samples = 1000000000000 of 64 values",
            &[1_000_000_000_000, 64],
            8,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("samples = 1000000000000"), "{e}");
        assert!(e.contains("465.7 TiB"), "{e}");
        assert!(e.contains("memory"), "{e}");
    }

    #[test]
    fn a_product_that_overflows_64_bits_is_an_error_not_a_wrap() {
        let e = check_alloc("x", &[1 << 40, 1 << 40, 1 << 40], 8).unwrap_err();
        assert!(
            e.to_string().contains("PiB") || e.to_string().contains("2^128"),
            "{e}"
        );
        assert_eq!(check_alloc("x", &[3, 4], 8).unwrap(), 12);
        assert_eq!(zeros("x", &[2, 3]).unwrap(), vec![0.0; 6]);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
