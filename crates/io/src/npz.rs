//! `.npz` archives (numpy's `savez`: a zip of `.npy` files, stored uncompressed): float64
//! arrays and byte strings (uint8 arrays, e.g. UTF-8 JSON). `numpy.load(path)` reads them.

use crate::{format_err, io_err, Result};
use npyz::WriterBuilder;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

/// The arrays of an archive: float64 arrays with their shapes, and byte strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Npz {
    /// `name -> (shape, values)`.
    pub floats: BTreeMap<String, (Vec<usize>, Vec<f64>)>,
    /// `name -> bytes` (uint8 arrays of one dimension).
    pub bytes: BTreeMap<String, Vec<u8>>,
}

fn zip_err(path: &Path) -> impl FnOnce(zip::result::ZipError) -> crate::IoError + '_ {
    move |e| format_err(path, format!("not a valid .npz archive ({e})"))
}

/// Writes `npz` to `path` (the caller's temporary: see [`crate::atomic::Outputs`]).
pub fn write(path: &Path, npz: &Npz) -> Result<()> {
    let file = std::fs::File::create(path).map_err(io_err(path))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = zip::write::FileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for (name, (shape, values)) in &npz.floats {
        zip.start_file(format!("{name}.npy"), opts)
            .map_err(zip_err(path))?;
        let shape: Vec<u64> = shape.iter().map(|&s| s as u64).collect();
        let mut w = npyz::WriteOptions::<f64>::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut zip)
            .begin_nd()
            .map_err(io_err(path))?;
        w.extend(values.iter().copied()).map_err(io_err(path))?;
        w.finish().map_err(io_err(path))?;
    }
    for (name, bytes) in &npz.bytes {
        zip.start_file(format!("{name}.npy"), opts)
            .map_err(zip_err(path))?;
        let mut w = npyz::WriteOptions::<u8>::new()
            .default_dtype()
            .shape(&[bytes.len() as u64])
            .writer(&mut zip)
            .begin_nd()
            .map_err(io_err(path))?;
        w.extend(bytes.iter().copied()).map_err(io_err(path))?;
        w.finish().map_err(io_err(path))?;
    }
    let mut inner = zip.finish().map_err(zip_err(path))?;
    inner.flush().map_err(io_err(path))?;
    inner
        .into_inner()
        .map_err(|e| io_err(path)(e.into_error()))?
        .sync_all()
        .map_err(io_err(path))
}

/// Reads an archive of float64 and uint8 arrays; every error names the file and the array.
/// Sizes are checked against the archive entry before anything is allocated.
pub fn read(path: &Path) -> Result<Npz> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(zip_err(path))?;
    let mut out = Npz::default();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(zip_err(path))?;
        let Some(name) = entry.name().strip_suffix(".npy").map(str::to_string) else {
            continue;
        };
        let size = entry.size();
        let mut raw = Vec::new();
        raw.try_reserve_exact(size as usize)
            .map_err(|_| format_err(path, format!("array `{name}` is too large to read")))?;
        entry.read_to_end(&mut raw).map_err(io_err(path))?;
        let npy = npyz::NpyFile::new(&raw[..])
            .map_err(|e| format_err(path, format!("array `{name}`: not a valid .npy ({e})")))?;
        let shape: Vec<usize> = npy.shape().iter().map(|&s| s as usize).collect();
        let count = shape
            .iter()
            .try_fold(1usize, |a, &s| a.checked_mul(s))
            .filter(|&c| c <= raw.len())
            .ok_or_else(|| {
                format_err(path, format!("array `{name}`: shape {shape:?} is corrupt"))
            })?;
        let descr = npy.dtype().descr();
        match descr.trim_matches('\'') {
            "<f8" => {
                let v: Vec<f64> = npy.into_vec().map_err(|e| {
                    format_err(path, format!("array `{name}`: truncated or corrupt ({e})"))
                })?;
                if v.len() != count {
                    return Err(format_err(path, format!("array `{name}`: truncated")));
                }
                out.floats.insert(name, (shape, v));
            }
            "|u1" | "<u1" => {
                let v: Vec<u8> = npy.into_vec().map_err(|e| {
                    format_err(path, format!("array `{name}`: truncated or corrupt ({e})"))
                })?;
                out.bytes.insert(name, v);
            }
            other => {
                return Err(format_err(
                    path,
                    format!("array `{name}` has dtype {other}; expected <f8 or |u1"),
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_round_trips_bit_for_bit_and_garbage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npz");
        let mut npz = Npz::default();
        npz.floats.insert(
            "fields".into(),
            (
                vec![2, 3],
                vec![0.1, -2.5, f64::MIN_POSITIVE, 1e300, -0.0, 7.0],
            ),
        );
        npz.floats
            .insert("log_q".into(), (vec![2], vec![-1.25, f64::NEG_INFINITY]));
        npz.bytes
            .insert("provenance".into(), b"{\"seed\": 3}".to_vec());
        write(&p, &npz).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back.bytes, npz.bytes);
        for (k, (s, v)) in &npz.floats {
            let (s2, v2) = &back.floats[k];
            assert_eq!(s, s2);
            assert!(v.iter().zip(v2).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        std::fs::write(&p, b"not a zip").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("a.npz") && e.contains("npz"), "{e}");
    }
}
