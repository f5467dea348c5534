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
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// Reads any float32/float64 C-order array.
pub fn read_array(path: &Path) -> Result<Array> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let npy = NpyFile::new(&bytes[..])
        .map_err(|e| format_err(path, format!("not a valid .npy file (bad header: {e})")))?;
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
    let count: usize = shape.iter().product();
    let truncated = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            format_err(
                path,
                format!("file is truncated: the header promises {count} values of shape {shape:?}"),
            )
        } else {
            IoError::Io {
                path: path.to_path_buf(),
                source: e,
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
    Dataset::new(shape, arr.data).map_err(|source| IoError::Core {
        path: path.to_path_buf(),
        source,
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
