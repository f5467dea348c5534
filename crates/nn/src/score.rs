//! The trained network as a [`ScoreModel`]: `eps_hat = eps_gaussian + U NN(x, gamma)` (SPEC
//! section 4), evaluated without gradients in chunks (default 64: libtorch's CPU kernels are
//! faster per sample at moderate batch sizes than at large ones).

use crate::checkpoint::{Checkpoint, Named};
use crate::config::NetworkConfig;
use crate::encode::Encoder;
use crate::train::sorted_vars;
use crate::unet::UNet;
use crate::Result;
use gud_core::score::ScoreModel;
use gud_core::{Design, NoisingState};
use std::sync::Mutex;
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// The `neural` score model of one design.
pub struct NeuralScore<'a> {
    encoder: Encoder<'a>,
    net: Mutex<(VarStore, UNet)>,
    device: Device,
    chunk: usize,
}

impl<'a> NeuralScore<'a> {
    /// A network of `network`'s architecture with the given weights (copied).
    pub fn with_weights(
        design: &'a Design,
        network: &NetworkConfig,
        weights: &Named,
        device: Device,
        chunk: usize,
    ) -> Result<Self> {
        let (encoder, vs, net) = Self::build(design, network, device)?;
        tch::no_grad(|| {
            for ((_, dst), (_, src)) in sorted_vars(&vs).iter().zip(weights) {
                dst.shallow_clone().copy_(src);
            }
        });
        Ok(Self::assemble(encoder, vs, net, device, chunk))
    }

    /// The EMA weights of a checkpoint (refused unless it was trained on this design).
    pub fn from_checkpoint(
        design: &'a Design,
        ckpt: &Checkpoint,
        device: Device,
        chunk: usize,
    ) -> Result<Self> {
        ckpt.check_design(design)?;
        let (encoder, vs, net) = Self::build(design, &ckpt.network, device)?;
        ckpt.load_into("ema", &sorted_vars(&vs))?;
        Ok(Self::assemble(encoder, vs, net, device, chunk))
    }

    fn build(
        design: &'a Design,
        network: &NetworkConfig,
        device: Device,
    ) -> Result<(Encoder<'a>, VarStore, UNet)> {
        let encoder = Encoder::new(design, network);
        let vs = VarStore::new(device);
        let net = UNet::new(&vs.root(), network, design.shape(), encoder.gamma_channel())?;
        Ok((encoder, vs, net))
    }

    fn assemble(
        encoder: Encoder<'a>,
        vs: VarStore,
        net: UNet,
        device: Device,
        chunk: usize,
    ) -> Self {
        NeuralScore {
            encoder,
            net: Mutex::new((vs, net)),
            device,
            chunk: chunk.max(1),
        }
    }

    /// Sets every weight of the network to zero (then eps_hat is the Gaussian score).
    pub fn zero_weights(&self) {
        let guard = self.net.lock().expect("network lock");
        tch::no_grad(|| {
            for (_, v) in sorted_vars(&guard.0) {
                let _ = v.shallow_clone().zero_();
            }
        });
    }

    /// The network inputs of a batch of rows: images (n, C planes, H, W) and gamma (n, d).
    fn inputs(&self, chi_t: &[f64], gamma: &[f64]) -> (Tensor, Tensor) {
        let d = gamma.len();
        let n = chi_t.len() / d;
        let planes = self.encoder.input_planes();
        let mut x = vec![0f32; n * d * planes];
        let mut scratch = vec![0.0; d];
        for (row, xr) in chi_t.chunks_exact(d).zip(x.chunks_exact_mut(d * planes)) {
            self.encoder.input(row, gamma, &mut scratch, xr);
        }
        let xt = self.images(&x, n, planes);
        let g: Vec<f32> = gamma.iter().map(|&v| v as f32).collect();
        let gt = Tensor::from_slice(&g)
            .view([1, d as i64])
            .expand([n as i64, d as i64], false)
            .to_device(self.device);
        (xt, gt)
    }

    /// (n, planes * d) f32 values as an image tensor on the device.
    fn images(&self, x: &[f32], n: usize, planes: usize) -> Tensor {
        let shape = self.encoder.design().shape();
        let (c, h, w) = (shape.c as i64, shape.h as i64, shape.w as i64);
        Tensor::from_slice(x)
            .view([n as i64, c * planes as i64, h, w])
            .to_device(self.device)
    }

    /// The raw network output for a batch of rows (for tests and benchmarks): (n, d) f32.
    pub fn correction(&self, chi_t: &[f64], gamma: &[f64]) -> Vec<f32> {
        let (xt, gt) = self.inputs(chi_t, gamma);
        let guard = self.net.lock().expect("network lock");
        let y = tch::no_grad(|| guard.1.forward(&xt, &gt));
        to_vec(&y)
    }

    /// The encoder between components and the network's images.
    pub fn encoder(&self) -> &Encoder<'a> {
        &self.encoder
    }

    /// The network's own inputs and output for rows that each have their own noising state
    /// (`gamma_rows` (n, d)): input images x (n, planes * d), gamma (n, d) and output y (n, d),
    /// all f32 (what a reimplementation of the network must reproduce: `gud export --check`).
    pub fn network_io(&self, chi_t: &[f64], gamma_rows: &[f64]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let d = self.encoder.design().dim();
        let n = chi_t.len() / d;
        let planes = self.encoder.input_planes();
        let mut x = vec![0f32; n * d * planes];
        let mut scratch = vec![0.0; d];
        for ((row, g), xr) in chi_t
            .chunks_exact(d)
            .zip(gamma_rows.chunks_exact(d))
            .zip(x.chunks_exact_mut(d * planes))
        {
            self.encoder.input(row, g, &mut scratch, xr);
        }
        let g: Vec<f32> = gamma_rows.iter().map(|&v| v as f32).collect();
        let xt = self.images(&x, n, planes);
        let gt = Tensor::from_slice(&g)
            .view([n as i64, d as i64])
            .to_device(self.device);
        let guard = self.net.lock().expect("network lock");
        let y = tch::no_grad(|| guard.1.forward(&xt, &gt));
        (x, g, to_vec(&y))
    }

    /// Network output y and `(U^T u)^T (dNN/dx) x_v` per row by one backward pass, where x_v is
    /// the input image of the direction v (the field planes only: gamma does not depend on chi).
    fn correction_form(
        &self,
        chi_t: &[f64],
        gamma: &[f64],
        u: &[f64],
        v: &[f64],
    ) -> (Vec<f32>, Vec<f64>) {
        let d = gamma.len();
        let n = chi_t.len() / d;
        let planes = self.encoder.input_planes();
        let (xt, gt) = self.inputs(chi_t, gamma);
        let xt = xt.set_requires_grad(true);
        let (mut u_img, mut v_img) = (vec![0f32; n * d], vec![0f32; n * d * planes]);
        let mut scratch = vec![0.0; d];
        let zero = vec![0.0; d];
        for b in 0..n {
            let r = b * d..(b + 1) * d;
            self.encoder
                .output_direction(&u[r.clone()], &mut scratch, &mut u_img[r.clone()]);
            let vr = &mut v_img[b * d * planes..(b + 1) * d * planes];
            self.encoder.input(&v[r], &zero, &mut scratch, vr);
            vr[d..].fill(0.0);
        }
        let guard = self.net.lock().expect("network lock");
        let y = guard.1.forward(&xt, &gt);
        let ut = self.images(&u_img, n, 1);
        let s = (&y * &ut).sum(tch::Kind::Float);
        let grad = Tensor::run_backward(&[s], &[&xt], false, false)
            .pop()
            .expect("one gradient");
        let vt = self.images(&v_img, n, planes);
        let form = (grad * vt)
            .view([n as i64, -1])
            .sum_dim_intlist(1, false, tch::Kind::Double);
        let form = Vec::<f64>::try_from(form.to_device(Device::Cpu)).expect("f64 output");
        (to_vec(&y.detach()), form)
    }
}

fn to_vec(y: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(y.to_device(Device::Cpu).contiguous().view(-1))
        .expect("the network's output is f32")
}

impl ScoreModel for NeuralScore<'_> {
    fn name(&self) -> &'static str {
        "neural"
    }

    fn dim(&self) -> usize {
        self.encoder.design().dim()
    }

    fn eps_hat(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        _active: Option<&[usize]>,
        eps_hat: &mut [f64],
    ) {
        let d = self.dim();
        let mut scratch = vec![0.0; d];
        for (rows, out) in chi_t
            .chunks(self.chunk * d)
            .zip(eps_hat.chunks_mut(self.chunk * d))
        {
            let y = self.correction(rows, state.gamma());
            for ((row, o), yr) in rows
                .chunks_exact(d)
                .zip(out.chunks_exact_mut(d))
                .zip(y.chunks_exact(d))
            {
                self.encoder.base(row, state, o);
                self.encoder.add_correction(yr, &mut scratch, o);
            }
        }
    }

    /// Exact (autograd): `J_b = diag(base derivative) + O^T (dNN/dx) E`, with O the output
    /// directions of the components and E the input images of the unit vectors e_k. Each row is
    /// replicated d times so that one forward and one backward pass of the replicated batch give
    /// every row's d vector-Jacobian products together (in chunks of about 256 images). Measured
    /// (`cargo bench -p gud-nn --bench unet`, 2 cores): 14.5 rows/s at 8 x 8 against 6.6 for one
    /// forward pass shared by d backward passes, 1.3 against 0.5 at 16 x 16.
    fn eps_jacobian(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        eps_hat: &mut [f64],
        jac: &mut [f64],
    ) {
        let d = self.dim();
        let planes = self.encoder.input_planes();
        let mut scratch = vec![0.0; d];
        let zero = vec![0.0; d];
        // O (d output images, one per component) and E^T (d input images of e_k, field planes)
        let (mut out_dirs, mut in_dirs) = (vec![0f32; d * d], vec![0f32; d * d * planes]);
        let mut unit = vec![0.0; d];
        for k in 0..d {
            unit[k] = 1.0;
            self.encoder
                .output_direction(&unit, &mut scratch, &mut out_dirs[k * d..(k + 1) * d]);
            let vr = &mut in_dirs[k * d * planes..(k + 1) * d * planes];
            self.encoder.input(&unit, &zero, &mut scratch, vr);
            vr[d..].fill(0.0);
            unit[k] = 0.0;
        }
        let e_t = Tensor::from_slice(&in_dirs)
            .view([d as i64, (d * planes) as i64])
            .to_device(self.device);
        let (a2, s2) = (state.alpha_sq(), state.sigma_sq());
        let analytic = self.encoder.design().base();
        // small chunks keep the replicated activations in cache (measured: 4 rows of d = 64
        // images are 1.3x faster per row than 16)
        let rows_per_chunk = (256 / d).max(1);
        for (c, rows) in chi_t.chunks(rows_per_chunk * d).enumerate() {
            let n = rows.len() / d;
            let replicated: Vec<f64> = rows
                .chunks_exact(d)
                .flat_map(|r| std::iter::repeat_n(r, d).flatten().copied())
                .collect();
            let (xt, gt) = self.inputs(&replicated, state.gamma());
            let xt = xt.set_requires_grad(true);
            let guard = self.net.lock().expect("network lock");
            let y = guard.1.forward(&xt, &gt);
            let dirs: Vec<f32> = (0..n).flat_map(|_| out_dirs.iter().copied()).collect();
            let s = (&y * self.images(&dirs, n * d, 1)).sum(tch::Kind::Float);
            let grad = Tensor::run_backward(&[s], &[&xt], false, false)
                .pop()
                .expect("one gradient");
            drop(guard);
            // J_NN[(b, i), k] = grad_(b,i) . E_k
            let jn = grad
                .view([(n * d) as i64, (d * planes) as i64])
                .matmul(&e_t.transpose(0, 1))
                .to_kind(tch::Kind::Double);
            let jn = Vec::<f64>::try_from(jn.to_device(Device::Cpu).contiguous().view(-1))
                .expect("f64 Jacobian");
            let y = to_vec(&y.detach());
            let base = c * rows_per_chunk;
            for (b, row) in rows.chunks_exact(d).enumerate() {
                let o = &mut eps_hat[(base + b) * d..(base + b + 1) * d];
                self.encoder.base(row, state, o);
                // every replica of a row has the same output: take the first
                self.encoder
                    .add_correction(&y[b * d * d..b * d * d + d], &mut scratch, o);
                let j = &mut jac[(base + b) * d * d..(base + b + 1) * d * d];
                j.copy_from_slice(&jn[b * d * d..(b + 1) * d * d]);
                for i in 0..d {
                    j[i * d + i] += analytic.eps_derivative(i, row[i], a2[i], s2[i]);
                }
            }
        }
    }

    /// u^T J v = u^T J_base v + (U^T u)^T J_NN x_v, the network part by autograd.
    fn jacobian_form(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        u: &[f64],
        v: &[f64],
        eps_hat: &mut [f64],
        q: &mut [f64],
    ) {
        let d = self.dim();
        let mut scratch = vec![0.0; d];
        let (a2, s2) = (state.alpha_sq(), state.sigma_sq());
        let analytic = self.encoder.design().base();
        let step = self.chunk * d;
        for (k, rows) in chi_t.chunks(step).enumerate() {
            let r = k * step..k * step + rows.len();
            let (y, form) = self.correction_form(rows, state.gamma(), &u[r.clone()], &v[r.clone()]);
            let out = &mut eps_hat[r.clone()];
            for (b, ((row, o), yr)) in rows
                .chunks_exact(d)
                .zip(out.chunks_exact_mut(d))
                .zip(y.chunks_exact(d))
                .enumerate()
            {
                self.encoder.base(row, state, o);
                self.encoder.add_correction(yr, &mut scratch, o);
                let base = r.start + b * d;
                // the analytic base's Jacobian is diagonal
                let diag: f64 = (0..d)
                    .map(|i| {
                        u[base + i] * v[base + i] * analytic.eps_derivative(i, row[i], a2[i], s2[i])
                    })
                    .sum();
                q[r.start / d + b] = diag + form[b];
            }
        }
    }
}
