//! The trained network as a [`ScoreModel`]: `eps_hat = eps_gaussian + U NN(x, gamma)` (SPEC
//! section 4), evaluated without gradients on all cores by an [`EvalPool`] (replicas of the
//! network, chunks of the batch).

use crate::checkpoint::{Checkpoint, Named};
use crate::config::NetworkConfig;
use crate::encode::Encoder;
use crate::pool::EvalPool;
use crate::train::sorted_vars;
use crate::unet::UNet;
use crate::Result;
use gud_core::score::ScoreModel;
use gud_core::{Design, NoisingState};
use tch::{Device, Tensor};

/// Rows per call of the pool in [`ScoreModel::eps_hat`]: the input images of at most this many
/// rows exist at once (8 MB at 32 x 32 with the gamma channel).
const ROWS_PER_CALL: usize = 1024;

/// The `neural` score model of one design.
pub struct NeuralScore<'a> {
    encoder: Encoder<'a>,
    pool: EvalPool,
    device: Device,
}

impl<'a> NeuralScore<'a> {
    /// A network of `network`'s architecture with the given weights (copied), evaluated in
    /// chunks of `chunk` images ([`crate::pool::auto_chunk`] when `None`) on all of libtorch's threads
    /// ([`EvalPool`]).
    pub fn with_weights(
        design: &'a Design,
        network: &NetworkConfig,
        weights: &Named,
        device: Device,
        chunk: Option<usize>,
    ) -> Result<Self> {
        let (encoder, pool) = Self::build(design, network, device, chunk)?;
        pool.set_weights(weights);
        Ok(NeuralScore {
            encoder,
            pool,
            device,
        })
    }

    /// The EMA weights of a checkpoint (refused unless it was trained on this design).
    pub fn from_checkpoint(
        design: &'a Design,
        ckpt: &Checkpoint,
        device: Device,
        chunk: Option<usize>,
    ) -> Result<Self> {
        ckpt.check_design(design)?;
        let (encoder, pool) = Self::build(design, &ckpt.network, device, chunk)?;
        ckpt.load_into("ema", &sorted_vars(&pool.first().0))?;
        pool.sync();
        Ok(NeuralScore {
            encoder,
            pool,
            device,
        })
    }

    fn build(
        design: &'a Design,
        network: &NetworkConfig,
        device: Device,
        chunk: Option<usize>,
    ) -> Result<(Encoder<'a>, EvalPool)> {
        let encoder = Encoder::new(design, network);
        let workers = tch::get_num_threads().max(1) as usize;
        let pool = EvalPool::new(
            network,
            design.shape(),
            encoder.gamma_channel(),
            device,
            workers,
            chunk,
        )?;
        Ok((encoder, pool))
    }

    /// Sets every weight of the network to zero (then eps_hat is the Gaussian score).
    pub fn zero_weights(&self) {
        self.pool.zero_weights();
    }

    /// The evaluation of the network (its replicas and chunks).
    pub fn pool(&self) -> &EvalPool {
        &self.pool
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
        to_vec(&self.pool.forward(&xt, &gt))
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
        (x, g, to_vec(&self.pool.forward(&xt, &gt)))
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
        let guard = self.pool.first();
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

    /// eps_hat and the Jacobians of `rows` (one forward pass of `net` over r replicas of each
    /// row, a backward pass per cotangent tensor of `cotangents`; `e_t` = E^T) into `eps` and
    /// `jac`: the body of [`ScoreModel::eps_jacobian`] for one chunk.
    #[allow(clippy::too_many_arguments)]
    fn jacobian_chunk(
        &self,
        net: &UNet,
        rows: &[f64],
        state: &NoisingState,
        r: usize,
        cotangents: &[Tensor],
        e_t: &Tensor,
        eps: &mut [f64],
        jac: &mut [f64],
    ) {
        let d = self.dim();
        let planes = self.encoder.input_planes();
        let passes = cotangents.len();
        let n = rows.len() / d;
        let shape = self.encoder.design().shape();
        let image = [shape.c as i64, shape.h as i64, shape.w as i64];
        let replicated: Vec<f64> = rows
            .chunks_exact(d)
            .flat_map(|row| std::iter::repeat_n(row, r).flatten().copied())
            .collect();
        let (xt, gt) = self.inputs(&replicated, state.gamma());
        let xt = xt.set_requires_grad(true);
        let y = net.forward(&xt, &gt);
        let y5 = y.view([n as i64, r as i64, image[0], image[1], image[2]]);
        let grads: Vec<Tensor> = cotangents
            .iter()
            .enumerate()
            .map(|(j, cot)| {
                let s = (&y5 * cot).sum(tch::Kind::Float);
                Tensor::run_backward(&[s], &[&xt], j + 1 < passes, false)
                    .pop()
                    .expect("one gradient")
                    .view([(n * r) as i64, (d * planes) as i64])
            })
            .collect();
        // rows (j, b r + i) of `jn`: component j r + i of row b, J_NN[(b, k), :] = grad . E
        let jn = Tensor::stack(&grads, 0)
            .matmul(e_t)
            .to_kind(tch::Kind::Double);
        let jn = Vec::<f64>::try_from(jn.to_device(Device::Cpu).contiguous().view(-1))
            .expect("f64 Jacobian");
        let y = to_vec(&y.detach());
        let (a2, s2) = (state.alpha_sq(), state.sigma_sq());
        let analytic = self.encoder.design().base();
        let mut scratch = vec![0.0; d];
        for (b, row) in rows.chunks_exact(d).enumerate() {
            let o = &mut eps[b * d..(b + 1) * d];
            self.encoder.base(row, state, o);
            // every replica of a row has the same output: take the first
            self.encoder
                .add_correction(&y[b * r * d..b * r * d + d], &mut scratch, o);
            let j = &mut jac[b * d * d..(b + 1) * d * d];
            for (k, jk) in j.chunks_exact_mut(d).enumerate() {
                let at = ((k / r) * n * r + b * r + k % r) * d;
                jk.copy_from_slice(&jn[at..at + d]);
                jk[k] += analytic.eps_derivative(k, row[k], a2[k], s2[k]);
            }
        }
    }
}

/// Images in one forward pass of [`ScoreModel::eps_jacobian`]: 64-128 measured fastest per
/// Jacobian row at 8 x 8 and 16 x 16 (2 cores).
pub const JACOBIAN_BATCH: usize = 128;

/// Replicas r per row and rows per forward pass for the Jacobians of `n` rows of d components:
/// about [`JACOBIAN_BATCH`] images per pass, as few replicas (backward passes of d / r
/// cotangents each) as that allows.
pub fn jacobian_replicas(n: usize, d: usize) -> (usize, usize) {
    let r = JACOBIAN_BATCH.div_ceil(n.max(1)).clamp(1, d.max(1));
    (r, (JACOBIAN_BATCH / r).max(1))
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
            .chunks(ROWS_PER_CALL * d)
            .zip(eps_hat.chunks_mut(ROWS_PER_CALL * d))
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
    /// directions of the components and E the input images of the unit vectors e_k. The rows'
    /// forward pass is shared by their d vector-Jacobian products: each row is replicated r
    /// times so that the forward batch holds about [`JACOBIAN_BATCH`] images, and d / r backward
    /// passes of that graph (replica i of pass j takes the cotangent of component j r + i) give
    /// every row's d x d Jacobian. Measured (`cargo run --release -p gud-nn --example jacobian`,
    /// 2 cores, rows/s): 8 x 8, 128 rows: 48-57 against 27-35 for a forward pass per cotangent
    /// (r = d); 16 x 16: 3.5-3.75 against 2.1.
    fn eps_jacobian(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        eps_hat: &mut [f64],
        jac: &mut [f64],
    ) {
        let d = self.dim();
        let planes = self.encoder.input_planes();
        let n_all = chi_t.len() / d;
        let (r, rows_per_chunk) = jacobian_replicas(n_all, d);
        let passes = d.div_ceil(r);
        let mut scratch = vec![0.0; d];
        let zero = vec![0.0; d];
        // the cotangent images of pass j (r of them, replica i: component j r + i's output
        // direction, zero past d) and E^T (d input images of e_k, field planes)
        let (mut out_dirs, mut in_dirs) = (vec![0f32; passes * r * d], vec![0f32; d * d * planes]);
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
        let shape = self.encoder.design().shape();
        let image = [shape.c as i64, shape.h as i64, shape.w as i64];
        let cotangents: Vec<Tensor> = out_dirs
            .chunks_exact(r * d)
            .map(|c| {
                Tensor::from_slice(c)
                    .view([1, r as i64, image[0], image[1], image[2]])
                    .to_device(self.device)
            })
            .collect();
        let e_t = Tensor::from_slice(&in_dirs)
            .view([d as i64, (d * planes) as i64])
            .to_device(self.device)
            .transpose(0, 1);
        // replica 0 with libtorch's own threads: spreading the rows over the pool's workers (a
        // graph each) gave the same rows/s (8 x 8: 56.6 against 57.0; 16 x 16: 3.89 against
        // 3.88, `make bench`, 2 cores) with 1.5x the peak memory (931 MB against 636 at 16 x 16)
        let first = self.pool.first();
        for ((rows, eps), jac) in chi_t
            .chunks(rows_per_chunk * d)
            .zip(eps_hat.chunks_mut(rows_per_chunk * d))
            .zip(jac.chunks_mut(rows_per_chunk * d * d))
        {
            self.jacobian_chunk(&first.1, rows, state, r, &cotangents, &e_t, eps, jac);
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
        let step = self.pool.chunk() * d;
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
