//! The pixel basis: U = identity (SPEC section 1).

use super::{Basis, ComponentInfo};
use crate::field::Shape;

#[derive(Debug, Clone)]
/// The identity basis: components are pixels or lattice sites.
pub struct PixelBasis {
    shape: Shape,
    info: Vec<ComponentInfo>,
}

impl PixelBasis {
    /// The identity on fields of `shape`.
    pub fn new(shape: Shape) -> Self {
        let mut info = Vec::with_capacity(shape.dim());
        for c in 0..shape.c {
            for y in 0..shape.h {
                for x in 0..shape.w {
                    info.push(ComponentInfo {
                        position: Some([y as f64, x as f64]),
                        ..ComponentInfo::plain(c)
                    });
                }
            }
        }
        PixelBasis { shape, info }
    }
}

impl Basis for PixelBasis {
    fn name(&self) -> &'static str {
        "pixel"
    }
    fn shape(&self) -> Shape {
        self.shape
    }
    fn components(&self) -> &[ComponentInfo] {
        &self.info
    }
    fn forward(&self, phi: &[f64], chi: &mut [f64]) {
        chi.copy_from_slice(phi);
    }
    fn inverse(&self, chi: &[f64], phi: &mut [f64]) {
        phi.copy_from_slice(chi);
    }
}
