//! NumPy `.npy` arrays: data sets of shape (N, H, W) or (N, C, H, W), float32 or float64,
//! read with checks (dtype, order, shape, truncation, NaN/Inf) and written as float32
//! atomically, so that `numpy.load` reads them as they are.

use crate::atomic::write_atomic;
use crate::{format_err, io_err, IoError, Result};
use gud_core::{Dataset, Shape};
use npyz::{DType, NpyFile, TypeChar, WriterBuilder};
use std::path::Path;

/// A raw array: shape and values as f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The shape.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<f64>,
}

/// Reads any float32/float64 C-order array.
pub fn read_array(path: &Path) -> Result<Array> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    check_header(path, &bytes)?;
    let npy = NpyFile::new(&bytes[..]).map_err(|e| bad_header(path, &e))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&s| s as usize).collect();
    if npy.order() != npyz::Order::C {
        return Err(format_err(
            path,
            "array is in Fortran order; expected C order (numpy's default)",
        ));
    }
    let size = match npy.dtype() {
        DType::Plain(ts)
            if ts.type_char() == TypeChar::Float && matches!(ts.size_field(), 4 | 8) =>
        {
            ts.size_field()
        }
        other => {
            return Err(format_err(
                path,
                format!(
                    "dtype {} is not supported; expected float32 or float64",
                    dtype_name(&other)
                ),
            ))
        }
    };
    let count = checked_count(path, &shape, size as usize, &bytes)?;
    let truncated = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            format_err(
                path,
                format!("file is truncated: the header promises {count} values of shape {shape:?}"),
            )
        } else {
            IoError::Io {
                path: path.to_path_buf(),
                error: e,
            }
        }
    };
    let data: Vec<f64> = if size == 4 {
        npy.into_vec::<f32>()
            .map_err(truncated)?
            .into_iter()
            .map(f64::from)
            .collect()
    } else {
        npy.into_vec::<f64>().map_err(truncated)?
    };
    if data.len() != count {
        return Err(format_err(
            path,
            format!(
                "expected {count} values for shape {shape:?}, read {}",
                data.len()
            ),
        ));
    }
    Ok(Array { shape, data })
}

/// The element count of `shape`, checked (regression, issue 20: a shape whose product
/// overflows used to wrap, e.g. (2^58 + 2, 8, 8) read as 2 samples): multiplied in 128 bits and
/// compared with the bytes the file actually holds after its header.
pub(crate) fn checked_count(
    path: &Path,
    shape: &[usize],
    item: usize,
    bytes: &[u8],
) -> Result<usize> {
    let have = data_bytes(bytes);
    let count = shape
        .iter()
        .try_fold(1u128, |acc, &s| acc.checked_mul(s as u128));
    let need = count.and_then(|c| c.checked_mul(item as u128));
    match (count, need) {
        (Some(c), Some(b)) if b <= have as u128 => Ok(c as usize),
        (Some(c), Some(b)) => Err(format_err(
            path,
            format!(
                "file is truncated: the header promises {c} values of shape {shape:?} ({b} \
                 bytes), the file holds {have} bytes after the header"
            ),
        )),
        _ => Err(format_err(
            path,
            format!(
                "corrupt header: shape {shape:?} has more values than any file can hold (the \
                 file holds {have} bytes after the header)"
            ),
        )),
    }
}

/// The shape of a .npy header read without npyz (which multiplies the shape out in 64 bits and
/// overflows on a corrupt header before any check of ours could run); None when the header does
/// not have the usual `'shape': (...)` form (npyz then reports it).
fn header_shape(bytes: &[u8]) -> Option<Vec<u128>> {
    let (start, len): (usize, usize) = match bytes.get(6)? {
        1 => (
            10,
            u16::from_le_bytes(bytes.get(8..10)?.try_into().ok()?) as usize,
        ),
        _ => (
            12,
            u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize,
        ),
    };
    let text = std::str::from_utf8(bytes.get(start..start.checked_add(len)?)?).ok()?;
    let at = text.find("'shape'").or_else(|| text.find("\"shape\""))?;
    let rest = &text[at..];
    let open = rest.find('(')?;
    let close = rest[open..].find(')')? + open;
    rest[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.trim_end_matches('L').parse::<u128>().ok())
        .collect()
}

/// "not a valid .npy file" with the first line of npyz's reason (its parser's report spans
/// several lines of ASCII art).
pub(crate) fn bad_header(path: &Path, e: &std::io::Error) -> crate::IoError {
    let reason = e.to_string();
    let first = reason
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches(':');
    format_err(
        path,
        format!("not a valid .npy file (bad header: {first}); expected numpy's .npy format"),
    )
}

/// Refuses a header whose shape does not fit the bytes of the file, before npyz sees it.
pub(crate) fn check_header(path: &Path, bytes: &[u8]) -> Result<()> {
    let Some(shape) = header_shape(bytes) else {
        return Ok(());
    };
    let have = data_bytes(bytes) as u128;
    let count = shape.iter().try_fold(1u128, |a, &s| a.checked_mul(s));
    // npyz's strides multiply the non-zero dimensions even of an empty array
    let strides = shape
        .iter()
        .try_fold(1u128, |a, &s| a.checked_mul(s.max(1)));
    // at least one byte per value, whatever the dtype
    if count.is_none_or(|c| c > have) || strides.is_none_or(|p| p > u64::MAX as u128) {
        let promised = count.map_or("more values than any file holds".into(), |c| {
            format!("{c} values")
        });
        return Err(format_err(
            path,
            format!(
                "corrupt or truncated file: the header's shape {shape:?} promises {promised}, \
                 the file holds {have} bytes after the header"
            ),
        ));
    }
    Ok(())
}

/// Bytes after the .npy header (magic, version, header length, header).
fn data_bytes(bytes: &[u8]) -> usize {
    let header_end = match bytes.get(6) {
        Some(1) => bytes
            .get(8..10)
            .map(|b| 10 + u16::from_le_bytes([b[0], b[1]]) as usize),
        Some(_) => bytes
            .get(8..12)
            .map(|b| 12 + u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
        None => None,
    };
    bytes
        .len()
        .saturating_sub(header_end.unwrap_or(bytes.len()))
}

fn dtype_name(d: &DType) -> String {
    match d {
        DType::Plain(ts) => ts.to_string(),
        DType::Array(..) => "a sub-array type".into(),
        DType::Record(_) => "a structured (record) type".into(),
    }
}

/// Reads a data set: shape (N, H, W) (one channel) or (N, C, H, W), finite values only.
pub fn read_dataset(path: &Path) -> Result<Dataset> {
    let arr = read_array(path)?;
    let shape = match arr.shape[..] {
        [_, h, w] => Shape::new(1, h, w),
        [_, c, h, w] => Shape::new(c, h, w),
        _ => {
            return Err(format_err(
                path,
                format!(
                    "array has shape {:?}; expected (N, H, W) or (N, C, H, W)",
                    arr.shape
                ),
            ))
        }
    };
    Dataset::new(shape, arr.data).map_err(|error| IoError::Core {
        path: path.to_path_buf(),
        error,
    })
}

/// Writes `data` (row-major, shape `shape`) as a float32 .npy atomically.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f64]) -> Result<()> {
    let count: usize = shape.iter().product();
    if count != data.len() {
        return Err(format_err(
            path,
            format!("{} values do not fill shape {shape:?}", data.len()),
        ));
    }
    let mut buf = Vec::with_capacity(128 + 4 * data.len());
    {
        let shape64: Vec<u64> = shape.iter().map(|&s| s as u64).collect();
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&shape64)
            .writer(&mut buf)
            .begin_nd()
            .map_err(io_err(path))?;
        w.extend(data.iter().map(|&v| v as f32))
            .map_err(io_err(path))?;
        w.finish().map_err(io_err(path))?;
    }
    write_atomic(path, &buf)
}

/// Writes a data set as float32 (N, H, W) when it has one channel, else (N, C, H, W).
pub fn write_dataset(path: &Path, data: &Dataset) -> Result<()> {
    let s = data.shape();
    let shape = if s.c == 1 {
        vec![data.len(), s.h, s.w]
    } else {
        vec![data.len(), s.c, s.h, s.w]
    };
    write_f32(path, &shape, data.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let data: Vec<f64> = (0..2 * 3 * 4).map(|i| i as f64 * 0.5).collect();
        write_f32(&p, &[2, 3, 4], &data).unwrap();
        let ds = read_dataset(&p).unwrap();
        assert_eq!(ds.shape(), Shape::new(1, 3, 4));
        assert_eq!(ds.len(), 2);
        assert_eq!(ds.as_slice(), &data[..]);
        write_f32(&p, &[1, 2, 3, 4], &data).unwrap();
        assert_eq!(read_dataset(&p).unwrap().shape(), Shape::new(2, 3, 4));
    }

    #[test]
    fn bad_files_give_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.npy");
        write_f32(&p, &[4, 3, 3], &[1.0; 36]).unwrap();
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() - 10]).unwrap();
        let e = read_dataset(&p).unwrap_err().to_string();
        assert!(e.contains("bad.npy") && e.contains("truncated"), "{e}");
        std::fs::write(&p, b"not numpy at all").unwrap();
        let e = read_dataset(&p).unwrap_err().to_string();
        assert!(e.contains("bad.npy"), "{e}");
        write_f32(&p, &[36], &[1.0; 36]).unwrap();
        let e = read_dataset(&p).unwrap_err().to_string();
        assert!(e.contains("(N, H, W)"), "{e}");
        let mut v = vec![1.0; 36];
        v[20] = f64::NAN;
        write_f32(&p, &[4, 3, 3], &v).unwrap();
        let e = read_dataset(&p).unwrap_err().to_string();
        assert!(e.contains("non-finite") && e.contains("sample 2"), "{e}");
        // an int64 array
        let mut buf = Vec::new();
        {
            let mut w = npyz::WriteOptions::<i64>::new()
                .default_dtype()
                .shape(&[2, 2, 2])
                .writer(&mut buf)
                .begin_nd()
                .unwrap();
            w.extend(0..8i64).unwrap();
            w.finish().unwrap();
        }
        std::fs::write(&p, &buf).unwrap();
        let e = read_dataset(&p).unwrap_err().to_string();
        assert!(e.contains("float32"), "{e}");
    }
}
