//! Training of the `neural` score (SPEC section 4, GUD eq. 11 with lambda_i = sigma_i^2):
//! minimise `E_{t, chi0, eps} sum_i (eps_hat_i - eps_i)^2` with t stratified over the batch,
//! AdamW (decoupled weight decay on weight matrices and kernels), linear warm-up + cosine
//! learning rate, global gradient-norm clipping and an EMA of the weights (what samples).
//!
//! With `train.family`, every example draws its schedule parameters (softness a, mix r) first:
//! one network learns the whole family and sees only gamma_t (SPEC section 4).
//!
//! With `train.stable_target = R`, the target eps is the optimal denoiser's eps of a reference
//! set holding the batch (Xu et al. 2023): the same minimiser as R grows, far less variance
//! where the data term is weak.
//!
//! Every random draw is a function of (seed, step): the epoch's permutation of the training
//! set comes from the stream (seed, train-epoch, e), sample b of step s from (seed, train-step,
//! s) at word b 2^32 (the stable target's extra reference samples at b = B .. R - 1). With the weights, EMA and AdamW moments restored from a checkpoint, a resumed run is
//! the uninterrupted run, bit for bit (at a fixed number of libtorch threads).

use crate::checkpoint::{self, Checkpoint, Named};
use crate::config::{NetworkConfig, TrainConfig};
use crate::encode::Encoder;
use crate::unet::UNet;
use crate::{Error, Result};
use gud_core::rng::{stream, Purpose};
use gud_core::{Dataset, Design, Field};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// One training example: network input, gamma, target, loss weights (f32, flattened; the
/// weights are empty without `train.min_snr`).
type Example = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

/// One training batch on the device: inputs (B, C_in, H, W), gamma (B, d), targets (B, C, H, W)
/// and, with `train.min_snr`, the loss weights of the components (B, d).
pub struct Batch {
    /// Input images.
    pub x: Tensor,
    /// Noising states.
    pub gamma: Tensor,
    /// Targets.
    pub target: Tensor,
    /// Loss weights (Min-SNR).
    pub weight: Option<Tensor>,
}

/// What one optimisation step did.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    /// The step just taken (1-based count of steps done).
    pub step: u64,
    /// Loss per dimension, sum_i (eps_hat_i - eps_i)^2 / d, averaged over the batch.
    pub loss: f64,
    /// Learning rate of the step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// The training state: network, EMA, AdamW moments and the step counter.
pub struct Trainer<'a> {
    encoder: Encoder<'a>,
    data: &'a Dataset,
    network: NetworkConfig,
    cfg: TrainConfig,
    device: Device,
    _vs: VarStore,
    net: UNet,
    vars: Vec<(String, Tensor)>,
    ema: Vec<(String, Tensor)>,
    adam_m: Vec<(String, Tensor)>,
    adam_v: Vec<(String, Tensor)>,
    step: u64,
    /// With `train.min_snr`: the d x d matrix M with `(U v)^T = v^T M` (row p is U e_p), so
    /// that a batch of pixel residuals becomes component residuals in the graph.
    to_comp: Option<Tensor>,
}

/// The variables of a store, sorted by name (a fixed order for checkpoints and updates).
pub(crate) fn sorted_vars(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn zeros_like(vars: &Named) -> Vec<(String, Tensor)> {
    vars.iter()
        .map(|(n, t)| (n.clone(), t.zeros_like()))
        .collect()
}

fn check_train(cfg: &TrainConfig) -> Result<()> {
    let bad = |field: &str, reason: &str| Err(Error::config(field, reason.to_string()));
    if cfg.batch == 0 {
        return bad("train.batch", "at least 1");
    }
    if !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
        return bad("train.lr", "a positive learning rate");
    }
    if !(0.0..1.0).contains(&cfg.ema) {
        return bad("train.ema", "an EMA decay in [0, 1)");
    }
    if cfg.clip.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return bad("train.clip", "a positive gradient-norm bound");
    }
    if !(0.0..=1.0).contains(&cfg.lr_final) {
        return bad("train.lr_final", "a fraction in [0, 1]");
    }
    if cfg.stable_target.is_some_and(|r| r < cfg.batch) {
        return bad(
            "train.stable_target",
            "a reference set of at least train.batch samples (or no key at all)",
        );
    }
    if cfg.min_snr.is_some_and(|k| !(k > 0.0 && k.is_finite())) {
        return bad("train.min_snr", "a positive SNR bound k (or no key at all)");
    }
    if cfg.checkpoint_every == 0 || cfg.log_every == 0 {
        return bad(
            "train.checkpoint_every",
            "checkpoint_every and log_every at least 1",
        );
    }
    Ok(())
}

impl<'a> Trainer<'a> {
    /// A fresh network (weights from `cfg.seed`) for `design`, trained on `data` (phi-space).
    /// `cfg` must be resolved (`translate`, `flip_sign` set).
    pub fn new(
        design: &'a Design,
        data: &'a Dataset,
        network: &NetworkConfig,
        cfg: &TrainConfig,
    ) -> Result<Self> {
        check_train(cfg)?;
        if data.shape() != design.shape() {
            return Err(gud_core::Error::ShapeMismatch {
                what: "training set".into(),
                expected: format!("samples of shape {}", design.shape()),
                got: format!("shape {}", data.shape()),
            }
            .into());
        }
        if data.is_empty() {
            return Err(
                gud_core::Error::EmptyData("training needs at least one sample".into()).into(),
            );
        }
        if let Some(f) = &cfg.family {
            f.check()?;
            let mid = 0.5 * (f.a[0] + f.a[1]);
            let r = f.r.map(|r| 0.5 * (r[0] + r[1]));
            design
                .schedule_variant(&design.resolved_config().schedule.with_softness(mid, r)?)
                .map_err(|e| Error::config("train.family", e.to_string()))?;
        }
        let device = crate::device(&cfg.device)?;
        let encoder = Encoder::new(design, network);
        let vs = VarStore::new(device);
        let net = UNet::new(&vs.root(), network, design.shape(), encoder.gamma_channel())?;
        let vars = sorted_vars(&vs);
        init_weights(&vars, cfg.seed);
        let ema = vars
            .iter()
            .map(|(n, t)| (n.clone(), t.detach().copy()))
            .collect();
        let to_comp = cfg.min_snr.map(|_| {
            let d = design.dim() as i64;
            Tensor::from_slice(&encoder.component_matrix())
                .view([d, d])
                .to_device(device)
        });
        Ok(Trainer {
            encoder,
            data,
            network: network.clone(),
            cfg: cfg.clone(),
            device,
            adam_m: zeros_like(&vars),
            adam_v: zeros_like(&vars),
            vars,
            ema,
            _vs: vs,
            net,
            step: 0,
            to_comp,
        })
    }

    /// Steps done so far.
    pub fn step(&self) -> u64 {
        self.step
    }
    /// The training settings.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }
    /// The EMA weights (what samples), by name.
    pub fn ema(&self) -> &Named {
        &self.ema
    }
    /// The current weights, by name.
    pub fn weights(&self) -> &Named {
        &self.vars
    }
    /// The network being trained.
    pub fn network(&self) -> &UNet {
        &self.net
    }
    /// Number of trainable parameters.
    pub fn parameters(&self) -> i64 {
        self.vars.iter().map(|(_, t)| t.numel() as i64).sum()
    }

    /// Continues from a checkpoint of the same config and design.
    pub fn resume(&mut self, ckpt: &Checkpoint) -> Result<()> {
        ckpt.check_design(self.encoder.design())?;
        ckpt.check_network(&self.network)?;
        ckpt.load_into("net", &self.vars)?;
        ckpt.load_into("ema", &self.ema)?;
        ckpt.load_into("adam_m", &self.adam_m)?;
        ckpt.load_into("adam_v", &self.adam_v)?;
        self.step = ckpt.step;
        Ok(())
    }

    /// Writes the full training state atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        checkpoint::save(
            path,
            self.step,
            &self.network,
            (
                self.encoder.design().sigma_data(),
                self.encoder.design().scale(),
            ),
            &[
                ("net", &self.vars),
                ("ema", &self.ema),
                ("adam_m", &self.adam_m),
                ("adam_v", &self.adam_v),
            ],
        )
    }

    /// Learning rate of step `step` (0-based): linear warm-up, then cosine to lr * lr_final.
    pub fn lr_at(&self, step: u64) -> f64 {
        let c = &self.cfg;
        if step < c.warmup {
            return c.lr * (step + 1) as f64 / c.warmup as f64;
        }
        let span = c.steps.saturating_sub(c.warmup).max(1) as f64;
        let p = ((step - c.warmup) as f64 / span).min(1.0);
        c.lr * (c.lr_final + (1.0 - c.lr_final) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
    }

    /// The batch of step `step`: a pure function of (seed, step).
    pub fn batch(&self, step: u64) -> Batch {
        let (n, b) = (self.data.len(), self.cfg.batch);
        let per_epoch = (n / b).max(1) as u64;
        let (epoch, pos) = (step / per_epoch, (step % per_epoch) as usize);
        let mut perm: Vec<usize> = (0..n).collect();
        let mut rng = stream(self.cfg.seed, Purpose::TrainEpoch, epoch);
        perm.shuffle(&mut rng);
        let (encoder, data, cfg) = (&self.encoder, self.data, &self.cfg);
        let design = encoder.design();
        let noised: Vec<Noised> = (0..b)
            .into_par_iter()
            .map(|k| {
                let phi = data.sample(perm[(pos * b + k) % n]);
                noise(
                    design,
                    cfg,
                    phi,
                    (k as f64, b as f64),
                    &mut step_rng(cfg.seed, step, k),
                )
            })
            .collect();
        let stable = cfg
            .stable_target
            .map(|r| stable_eps(design, data, cfg, step, &noised, r));
        let d = design.dim();
        let samples: Vec<Example> = noised
            .par_iter()
            .enumerate()
            .map(|(k, ex)| {
                let eps = stable
                    .as_ref()
                    .map_or(&ex.eps[..], |s| &s[k * d..(k + 1) * d]);
                encode(encoder, cfg, ex, eps)
            })
            .collect();
        let shape = self.encoder.design().shape();
        let (c, h, w) = (shape.c as i64, shape.h as i64, shape.w as i64);
        let cat = |f: fn(&Example) -> &Vec<f32>| -> Vec<f32> {
            samples.iter().flat_map(|s| f(s).iter().copied()).collect()
        };
        let planes = self.encoder.input_planes() as i64;
        let bi = b as i64;
        Batch {
            x: Tensor::from_slice(&cat(|s| &s.0))
                .view([bi, c * planes, h, w])
                .to_device(self.device),
            gamma: Tensor::from_slice(&cat(|s| &s.1))
                .view([bi, -1])
                .to_device(self.device),
            target: Tensor::from_slice(&cat(|s| &s.2))
                .view([bi, c, h, w])
                .to_device(self.device),
            weight: self.cfg.min_snr.map(|_| {
                Tensor::from_slice(&cat(|s| &s.3))
                    .view([bi, -1])
                    .to_device(self.device)
            }),
        }
    }
    /// The loss per dimension on a batch, with the current weights (a graph for backward):
    /// `sum_i lambda_i / sigma_i^2 (eps_hat_i - eps_i)^2 / d`, in pixel space when every weight
    /// is 1 (U orthogonal), else on the component residuals `U (y - target)`.
    pub fn loss(&self, batch: &Batch) -> Tensor {
        let out = self.net.forward(&batch.x, &batch.gamma);
        let diff = out - &batch.target;
        match (&batch.weight, &self.to_comp) {
            (Some(w), Some(m)) => {
                let b = diff.size()[0];
                let comp = diff.view([b, -1]).matmul(m);
                (comp.square() * w).mean(Kind::Float)
            }
            _ => diff.square().mean(Kind::Float),
        }
    }

    /// One AdamW step on the batch of the current step; updates the EMA.
    pub fn train_step(&mut self) -> StepStats {
        let batch = self.batch(self.step);
        self.train_step_on(&batch)
    }

    /// One AdamW step on a given batch (the step counter advances); updates the EMA.
    pub fn train_step_on(&mut self, batch: &Batch) -> StepStats {
        for (_, v) in self.vars.iter_mut() {
            v.zero_grad();
        }
        let loss = self.loss(batch);
        loss.backward();
        let loss = loss.double_value(&[]);
        let grads: Vec<Tensor> = self.vars.iter().map(|(_, v)| v.grad()).collect();
        // one reduction for the global norm (no per-tensor round trip)
        let squares: Vec<Tensor> = grads.iter().map(|g| g.square().sum(Kind::Double)).collect();
        let grad_norm = Tensor::stack(&squares, 0)
            .sum(Kind::Double)
            .double_value(&[])
            .sqrt();
        let scale = (self.cfg.clip / (grad_norm + 1e-6)).min(1.0);
        let lr = self.lr_at(self.step);
        let t = (self.step + 1) as f64;
        let (bc1, bc2) = (1.0 - BETA1.powf(t), 1.0 - BETA2.powf(t));
        let decay = self
            .cfg
            .ema
            .min((1.0 + self.step as f64) / (10.0 + self.step as f64));
        // AdamW and the EMA in place (issue 22: the step allocated ~15 temporaries per tensor):
        // p <- p (1 - lr wd) - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)
        tch::no_grad(|| {
            for (i, g) in grads.iter().enumerate() {
                // the gradient itself is clipped (it is zeroed before the next step)
                let mut g = g.shallow_clone();
                if scale < 1.0 {
                    let _ = g.g_mul_scalar_(scale);
                }
                let (mut p, mut m, mut v) = (
                    self.vars[i].1.shallow_clone(),
                    self.adam_m[i].1.shallow_clone(),
                    self.adam_v[i].1.shallow_clone(),
                );
                let _ = m.lerp_(&g, 1.0 - BETA1); // m = beta1 m + (1 - beta1) g
                let _ = v.lerp_(&g.square(), 1.0 - BETA2); // v = beta2 v + (1 - beta2) g^2
                if p.dim() >= 2 && self.cfg.weight_decay != 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.cfg.weight_decay);
                }
                let mut denom = v.sqrt();
                let _ = denom.g_div_scalar_(bc2.sqrt());
                let _ = denom.g_add_scalar_(ADAM_EPS);
                let _ = p.addcdiv_(&(&m * (-lr / bc1)), &denom);
                let _ = self.ema[i].1.shallow_clone().lerp_(&p, 1.0 - decay);
            }
        });
        self.step += 1;
        StepStats {
            step: self.step,
            loss,
            lr,
            grad_norm,
        }
    }
}

/// The random stream of step `step`, positioned at slot k: slot k < B draws example k,
/// slots B.. the extra reference samples of the stable target.
fn step_rng(seed: u64, step: u64, k: usize) -> ChaCha8Rng {
    let mut rng = stream(seed, Purpose::TrainStep, step);
    rng.set_word_pos((k as u128) << 32);
    rng
}

/// The stable target of every example (B x d): the optimal denoiser's eps at the example's
/// chi_t and state, for the reference set made of the batch's own chi0 and `r - B` more
/// training samples (uniform, augmented), Xu et al. 2023, eq. (6).
fn stable_eps(
    design: &Design,
    data: &Dataset,
    cfg: &TrainConfig,
    step: u64,
    noised: &[Noised],
    r: usize,
) -> Vec<f64> {
    let (b, d, n) = (noised.len(), design.dim(), data.len());
    let extra: Vec<f64> = (b..r.max(b))
        .into_par_iter()
        .flat_map_iter(|k| {
            let mut rng = step_rng(cfg.seed, step, k);
            let phi = data.sample(rng.random_range(0..n));
            whitened(design, cfg, phi, &mut rng)
        })
        .collect();
    let reference: Vec<f64> = noised
        .iter()
        .flat_map(|e| e.chi0.iter().copied())
        .chain(extra)
        .collect();
    let empirical =
        gud_core::score::EmpiricalScore::new(d, reference).expect("finite training data");
    let chi_t: Vec<f64> = noised
        .iter()
        .flat_map(|e| e.chi_t.iter().copied())
        .collect();
    let states: Vec<&gud_core::NoisingState> = noised.iter().map(|e| &e.state).collect();
    let mut eps = vec![0.0; b * d];
    empirical.eps_hat_each(&chi_t, &states, &mut eps);
    eps
}

/// PyTorch's default initialisation drawn from our own seeded stream (libtorch's global
/// generator is shared by every thread of the process): kernels and their biases uniform in
/// +-1/sqrt(fan_in); norms and the zero-initialised last layers (`out.*`, `global.out.*`)
/// left as built.
fn init_weights(vars: &Named, seed: u64) {
    let fan_in: std::collections::HashMap<&str, i64> = vars
        .iter()
        .filter(|(_, t)| t.dim() >= 2)
        .filter_map(|(n, t)| Some((n.strip_suffix(".weight")?, t.size()[1..].iter().product())))
        .collect();
    let mut rng = stream(seed, Purpose::NetworkInit, 0);
    for (name, t) in vars {
        let layer = name.rsplit_once('.').map_or("", |(l, _)| l);
        let Some(&fan) = fan_in.get(layer) else {
            continue;
        };
        if layer == "out" || layer == "global.out" {
            continue;
        }
        let bound = 1.0 / (fan as f64).sqrt();
        let values: Vec<f32> = (0..t.numel())
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        let src = Tensor::from_slice(&values)
            .view(t.size().as_slice())
            .to_device(t.device());
        tch::no_grad(|| t.shallow_clone().copy_(&src));
    }
}

/// Random lattice translation, Z2 sign flip and horizontal flip, as the config enables them.
fn augment(
    phi: &[f64],
    shape: gud_core::Shape,
    cfg: &TrainConfig,
    rng: &mut ChaCha8Rng,
) -> Vec<f64> {
    let (h, w) = (shape.h, shape.w);
    let (dy, dx) = if cfg.translate.unwrap_or(false) {
        (rng.random_range(0..h), rng.random_range(0..w))
    } else {
        (0, 0)
    };
    let sign = if cfg.flip_sign.unwrap_or(false) && rng.random::<bool>() {
        -1.0
    } else {
        1.0
    };
    let mirror = cfg.flip_horizontal && rng.random::<bool>();
    let mut out = vec![0.0; phi.len()];
    for c in 0..shape.c {
        for y in 0..h {
            for x in 0..w {
                let xs = if mirror { w - 1 - x } else { x };
                let src = c * h * w + ((y + dy) % h) * w + (xs + dx) % w;
                out[c * h * w + y * w + x] = sign * phi[src];
            }
        }
    }
    out
}

/// A noised training example before encoding: chi0 (augmented), the state at its t, the
/// drawn eps and chi_t = alpha chi0 + sigma eps.
struct Noised {
    chi0: Vec<f64>,
    state: gud_core::NoisingState,
    eps: Vec<f64>,
    chi_t: Vec<f64>,
}

/// Augments phi and maps it to whitened components (chi0).
fn whitened(design: &Design, cfg: &TrainConfig, phi: &[f64], rng: &mut ChaCha8Rng) -> Vec<f64> {
    let phi = augment(phi, design.shape(), cfg, rng);
    design
        .field_to_whitened(&Field(phi))
        .expect("the field has the design's shape")
        .as_slice()
        .to_vec()
}

/// One noised example: augment phi, draw the schedule member, t (stratum k of b) and eps.
fn noise(
    design: &Design,
    cfg: &TrainConfig,
    phi: &[f64],
    (k, b): (f64, f64),
    rng: &mut ChaCha8Rng,
) -> Noised {
    let d = design.dim();
    let chi0 = whitened(design, cfg, phi, rng);
    // a member of the schedule family, or the design's schedule
    let variant = cfg.family.as_ref().map(|f| {
        let a = rng.random_range(f.a[0]..=f.a[1]);
        let r = f.r.map(|r| rng.random_range(r[0]..=r[1]));
        let config = design
            .resolved_config()
            .schedule
            .with_softness(a, r)
            .expect("checked by Trainer::new");
        design
            .schedule_variant(&config)
            .expect("checked by Trainer::new")
    });
    let schedule = variant.as_deref().unwrap_or(design.schedule());
    let (t_lo, t_hi) = schedule.t_range();
    let t = t_lo + (t_hi - t_lo) * (k + rng.random::<f64>()) / b;
    let state = gud_core::NoisingState::at(schedule, t);
    let eps: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
    // chi_t = alpha chi0 + sigma eps (SPEC section 2).
    let chi_t: Vec<f64> = (0..d)
        .map(|i| state.alpha(i) * chi0[i] + state.sigma(i) * eps[i])
        .collect();
    Noised {
        chi0,
        state,
        eps,
        chi_t,
    }
}

/// The encoded example: network input, gamma, the target `eps - eps_gaussian` in pixel space
/// (`eps`: the drawn one, or the stable target) and the Min-SNR weights.
fn encode(encoder: &Encoder, cfg: &TrainConfig, n: &Noised, eps: &[f64]) -> Example {
    let design = encoder.design();
    let d = design.dim();
    let state = &n.state;
    let mut scratch = vec![0.0; d];
    let mut x = vec![0f32; d * encoder.input_planes()];
    encoder.input(&n.chi_t, state.gamma(), &mut scratch, &mut x);
    let mut eps_g = vec![0.0; d];
    encoder.base(&n.chi_t, state, &mut eps_g);
    let mut y = vec![0f32; d];
    encoder.target(eps, &eps_g, &mut scratch, &mut y);
    let gamma = state.gamma().iter().map(|&g| g as f32).collect();
    // Min-SNR-k: lambda_i / sigma_i^2 = min(1, k / SNR_i), SNR_i = Sigma_i e^-gamma_i (GUD eq. 17).
    let weight = cfg.min_snr.map_or_else(Vec::new, |k| {
        let sd = design.sigma_data();
        (0..d)
            .map(|i| (k.ln() - state.log_snr_data(i, sd)).min(0.0).exp() as f32)
            .collect()
    });
    (x, gamma, y, weight)
}
