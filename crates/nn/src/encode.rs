//! Between the whitened component space of a design and the network's pixel images.
//!
//! Input image: `x = U^T (S chi_t) / s_rms` (the phi-space image of chi_t, mean not added,
//! scaled by the root-mean-square prior scale so that inputs are O(1)), plus, for local bases,
//! the channel `U^T gamma / 10`. Output: the network's image `y` is the correction in
//! whitened components `U y`, so `eps_hat = eps_base + U y` (SPEC section 4; the base is
//! Gaussian or the design's mixtures) and the training target is `U^T (eps - eps_base)` (U orthogonal: the loss is the same).

use crate::config::NetworkConfig;
use gud_core::basis::Basis;
use gud_core::{Design, NoisingState};

/// The fixed maps of one design.
pub struct Encoder<'a> {
    design: &'a Design,
    s_rms: f64,
    gamma_channel: bool,
}

impl<'a> Encoder<'a> {
    /// The encoder of `design` for `network`.
    pub fn new(design: &'a Design, network: &NetworkConfig) -> Self {
        let s = design.scale();
        let s_rms = (s.iter().map(|v| v * v).sum::<f64>() / s.len() as f64).sqrt();
        let local = matches!(design.basis().name(), "pixel" | "haar");
        Encoder {
            design,
            s_rms,
            gamma_channel: network.gamma_channel.unwrap_or(local),
        }
    }

    /// The design.
    pub fn design(&self) -> &'a Design {
        self.design
    }
    /// The input images' scale s_rms (the root-mean-square prior scale): x = U^T (S chi) / s_rms.
    pub fn input_scale(&self) -> f64 {
        self.s_rms
    }
    /// Whether gamma is an input channel.
    pub fn gamma_channel(&self) -> bool {
        self.gamma_channel
    }
    fn basis(&self) -> &dyn Basis {
        self.design.basis()
    }
    /// Input channels per field channel (1, or 2 with the gamma channel).
    pub fn input_planes(&self) -> usize {
        if self.gamma_channel {
            2
        } else {
            1
        }
    }

    /// Writes the network input of one sample (C_in x H x W) into `x`; `scratch` has d values.
    pub fn input(&self, chi_t: &[f64], gamma: &[f64], scratch: &mut [f64], x: &mut [f32]) {
        let d = chi_t.len();
        let comp: Vec<f64> = chi_t
            .iter()
            .zip(self.design.scale())
            .map(|(c, s)| c * s)
            .collect();
        self.basis().inverse(&comp, scratch);
        for (o, v) in x[..d].iter_mut().zip(scratch.iter()) {
            *o = (v / self.s_rms) as f32;
        }
        if self.gamma_channel {
            self.basis().inverse(gamma, scratch);
            for (o, v) in x[d..2 * d].iter_mut().zip(scratch.iter()) {
                *o = (v / 10.0) as f32;
            }
        }
    }

    /// The analytic base's eps of one sample (SPEC section 4: `gaussian`, or the design's
    /// fitted mixtures).
    pub fn base(&self, chi_t: &[f64], state: &NoisingState, eps_g: &mut [f64]) {
        self.design.base().eps_row(chi_t, state, eps_g);
    }

    /// The training target U^T (eps - eps_gaussian) of one sample, written as f32 into `y`.
    pub fn target(&self, eps: &[f64], eps_g: &[f64], scratch: &mut [f64], y: &mut [f32]) {
        let r: Vec<f64> = eps.iter().zip(eps_g).map(|(e, g)| e - g).collect();
        self.basis().inverse(&r, scratch);
        for (o, v) in y.iter_mut().zip(scratch.iter()) {
            *o = *v as f32;
        }
    }

    /// The image U^T u of a direction u in component space (the adjoint of `add_correction`).
    pub fn output_direction(&self, u: &[f64], scratch: &mut [f64], img: &mut [f32]) {
        self.basis().inverse(u, scratch);
        for (o, v) in img.iter_mut().zip(scratch.iter()) {
            *o = *v as f32;
        }
    }

    /// The d x d matrix M (row-major) with `(U v)^T = v^T M`: row p is `U e_p`, the components
    /// of pixel p. It maps a batch of pixel images to components inside a tensor graph.
    pub fn component_matrix(&self) -> Vec<f32> {
        let d = self.design.dim();
        let (mut unit, mut row) = (vec![0.0; d], vec![0.0; d]);
        let mut m = Vec::with_capacity(d * d);
        for p in 0..d {
            unit[p] = 1.0;
            self.basis().forward(&unit, &mut row);
            unit[p] = 0.0;
            m.extend(row.iter().map(|&v| v as f32));
        }
        m
    }

    /// Adds the network's correction U y (y an image of d values) to eps_hat.
    pub fn add_correction(&self, y: &[f32], scratch: &mut [f64], eps_hat: &mut [f64]) {
        let img: Vec<f64> = y.iter().map(|&v| v as f64).collect();
        self.basis().forward(&img, scratch);
        for (e, c) in eps_hat.iter_mut().zip(scratch.iter()) {
            *e += c;
        }
    }
}
