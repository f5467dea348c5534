//! Fields and the three spaces they live in (SPEC section 1).
//!
//! A sample is a field `phi` in R^d, d = C*H*W, stored channel-major (c, y, x). The same
//! numbers mean different things in phi-space ([`Field`]), in the basis (`chi_tilde = U phi`,
//! [`Comp`]) and in whitened coordinates (`chi = S^-1 U phi`, [`Whitened`]); the newtypes make
//! mixing them a compile error.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The shape of one sample: C channels of H rows and W columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Channels C.
    pub c: usize,
    /// Rows H.
    pub h: usize,
    /// Columns W.
    pub w: usize,
}

impl Shape {
    /// C channels of H x W.
    pub fn new(c: usize, h: usize, w: usize) -> Self {
        Shape { c, h, w }
    }
    /// A single-channel L x L lattice.
    pub fn lattice(l: usize) -> Self {
        Shape { c: 1, h: l, w: l }
    }
    /// d = C * H * W.
    pub fn dim(&self) -> usize {
        self.c * self.h * self.w
    }
    /// H * W, the size of one channel.
    pub fn plane(&self) -> usize {
        self.h * self.w
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}, {})", self.c, self.h, self.w)
    }
}

macro_rules! space_vector {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name(
            /// The d values.
            pub Vec<f64>,
        );

        impl $name {
            /// d zeros.
            pub fn zeros(d: usize) -> Self {
                $name(vec![0.0; d])
            }
            /// d.
            pub fn len(&self) -> usize {
                self.0.len()
            }
            /// True for d = 0.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
            /// The values.
            pub fn as_slice(&self) -> &[f64] {
                &self.0
            }
        }
    };
}

space_vector!(
    /// A sample in phi-space (pixels / lattice sites), channel-major.
    Field
);
space_vector!(
    /// Components in the basis: `chi_tilde = U (phi - mu)`.
    Comp
);
space_vector!(
    /// Whitened components: `chi = S^-1 U (phi - mu)`, the space of the forward process.
    Whitened
);

/// How values of quantised data (8-bit images) were mapped to reals: level k in
/// `0..levels` is the bin `[origin + k w, origin + (k + 1) w)` of width w = `bin_width`, stored
/// at its centre. Uniform dequantisation draws a point of the bin (SPEC section 6).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Quantization {
    /// Number of levels k.
    pub levels: u32,
    /// Width w of a bin.
    pub bin_width: f64,
    /// Lower edge of level 0.
    pub origin: f64,
}

impl Quantization {
    /// 8-bit levels scaled to [-1, 1]: x = (k + 1/2) / 128 - 1.
    pub fn eight_bit_symmetric() -> Self {
        Quantization {
            levels: 256,
            bin_width: 2.0 / 256.0,
            origin: -1.0,
        }
    }
    /// The bin centre of level k.
    pub fn value(&self, k: u32) -> f64 {
        self.origin + self.bin_width * (k as f64 + 0.5)
    }
    /// Uniform dequantisation: the bin centre x moved to x + w (u - 1/2), u in [0, 1).
    pub fn dequantize(&self, x: f64, u: f64) -> f64 {
        x + self.bin_width * (u - 0.5)
    }
}

/// N samples of one shape, row-major (N, C, H, W), all values finite; optionally with class
/// labels and the quantisation of the values.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    shape: Shape,
    data: Vec<f64>,
    labels: Option<Vec<u32>>,
    quantization: Option<Quantization>,
}

impl Dataset {
    /// Wraps `data` of length N*d; rejects a length that is not a multiple of d, an empty set
    /// and any NaN/Inf (naming the sample and site).
    pub fn new(shape: Shape, data: Vec<f64>) -> Result<Self> {
        let d = shape.dim();
        if d == 0 {
            return Err(Error::EmptyData(format!(
                "sample shape {shape} has no sites"
            )));
        }
        if data.is_empty() {
            return Err(Error::EmptyData(format!("no samples of shape {shape}")));
        }
        if !data.len().is_multiple_of(d) {
            return Err(Error::ShapeMismatch {
                what: "data set".into(),
                expected: format!("a multiple of d = {d} values for samples of shape {shape}"),
                got: format!("{} values", data.len()),
            });
        }
        if let Some(index) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: format!("data set (sample {}, site {})", index / d, index % d),
                index,
                value: data[index],
            });
        }
        Ok(Dataset {
            shape,
            data,
            labels: None,
            quantization: None,
        })
    }

    /// Attaches one class label per sample.
    pub fn with_labels(mut self, labels: Vec<u32>) -> Result<Self> {
        if labels.len() != self.len() {
            return Err(Error::ShapeMismatch {
                what: "labels".into(),
                expected: format!("{} labels (one per sample)", self.len()),
                got: format!("{}", labels.len()),
            });
        }
        self.labels = Some(labels);
        Ok(self)
    }
    /// Marks the values as quantised levels (bin centres).
    pub fn with_quantization(mut self, q: Quantization) -> Self {
        self.quantization = Some(q);
        self
    }
    /// The class labels, one per sample, when known.
    pub fn labels(&self) -> Option<&[u32]> {
        self.labels.as_deref()
    }
    /// The quantisation of the values, when they are levels.
    pub fn quantization(&self) -> Option<&Quantization> {
        self.quantization.as_ref()
    }
    /// The first n samples (with their labels).
    pub fn head(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            shape: self.shape,
            data: self.data[..n * self.dim()].to_vec(),
            labels: self.labels.as_ref().map(|l| l[..n].to_vec()),
            quantization: self.quantization,
        }
    }
    /// The shape of one sample.
    pub fn shape(&self) -> Shape {
        self.shape
    }
    /// Number of samples N.
    pub fn len(&self) -> usize {
        self.data.len() / self.shape.dim()
    }
    /// True without samples.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// d = C H W of one sample.
    pub fn dim(&self) -> usize {
        self.shape.dim()
    }
    /// Sample n (d values).
    pub fn sample(&self, n: usize) -> &[f64] {
        let d = self.dim();
        &self.data[n * d..(n + 1) * d]
    }
    /// All values, (N, d) row-major.
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }
    /// All values, (N, d) row-major, taken.
    pub fn into_vec(self) -> Vec<f64> {
        self.data
    }
    /// The samples in order.
    pub fn samples(&self) -> std::slice::ChunksExact<'_, f64> {
        self.data.chunks_exact(self.dim())
    }
}
