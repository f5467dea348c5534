//! Exact sampling at scale (SPEC section 9.1): the RG steps of the Gaussian base with local
//! checkerboard couplings between them, a map from noise whose log-density costs O(d) on top of
//! the sample.
//!
//! The map `phi = T(z)`, z ~ N(0, I) in whitened components, is built from two kinds of step:
//!
//! * **RG steps** of the design's Gaussian base. On a grid of K levels the variance of the
//!   noised component i is `v_{n,i} = alpha_i^2(t_n) sigma_data,i + sigma_i^2(t_n)`, from
//!   `v_0 = 1` (the prior) to `v_K = sigma_data,i` (the data): the probability-flow ODE of a
//!   Gaussian moves chi by `lambda_{n,i} = sqrt(v_{n+1,i} / v_{n,i})` exactly. In phi-space,
//!   `x <- U^T (lambda_n . U x)`: diagonal in the basis, `log |det| = sum_i log lambda_{n,i}`.
//!   Without couplings the map is the exact sample of the Gaussian base.
//! * **Checkerboard couplings** after each RG step (SPEC 9.1, triangularity): the sites of one
//!   colour are moved by a monotone pointwise map whose parameters depend only on the other
//!   colour's sites within a radius,
//!   `y_i = e^{s_i} (x_i + u_i tanh x_i) + t_i`, `u_i = e^{w_i} - 1 > -1`,
//!   so the coupling's Jacobian is block triangular with a diagonal block and
//!   `log |det| = sum_i [s_i + log(1 + u_i sech^2 x_i)]`, every factor positive: each coupling
//!   is injective by construction. (s, w, t) come from orbit means of pointwise features of the
//!   other colour (the even features x^2, tanh^2 x and the squares of the odd ones' means feed
//!   one hidden tanh layer for s, w and t's coefficients; t is linear in the odd means x, tanh x,
//!   so the map commutes with phi -> -phi): translation equivariant, with
//!   one parameter set per (RG step, layer, colour) and none that depends on L, so a flow
//!   trained on one lattice runs on any other.
//!
//! `log q(phi) = log N(z; 0, I) - sum_i log S_i - sum_n [sum_i log lambda_{n,i} + couplings]`,
//! exact for the map applied. Training minimises the reverse Kullback-Leibler divergence to a
//! target with a gradient ([`Target::grad_log_density`]): `E_z[log q(T z) - log p(T z)]`, by
//! back-propagation written out below and Adam.

use crate::design::Design;
use crate::error::{Error, Result};
use crate::exact::{log_standard_normal, Proposals, Target};
use crate::monitor::Monitor;
use crate::rng::{stream, Purpose};
use crate::sampler::{draw_prior, sample_rng, SampleReport, StepInfo};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The architecture of the couplings (none of it depends on the lattice size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    /// RG steps K of the Gaussian base (1: the base in one step, then all couplings).
    pub stages: usize,
    /// Coupling pairs (red then black) after each RG step.
    pub layers: usize,
    /// Hidden units of each coupling's network.
    pub hidden: usize,
    /// Largest |dx|, |dy| of the other colour's sites a coupling reads (1: the four nearest).
    pub radius: usize,
    /// Bound of the log-scale s (s = s_max tanh(s_raw / s_max)).
    pub scale_max: f64,
    /// Dilations of the couplings, cycled over the coupling pairs (pair p of RG step n uses
    /// `dilations[(n * layers + p) % len]`): a pair of dilation D colours D x D blocks as a
    /// checkerboard and reads the other colour at offsets D (dx, dy). `[1]`: the sites' own
    /// checkerboard. The lattice's sides must be multiples of 2 D.
    pub dilations: Vec<usize>,
    /// Sublattice levels of the coupling pairs, cycled as the dilations (the decimation
    /// hierarchy): level 0 is the lattice's checkerboard; level 1 the sites with x + y even
    /// (a lattice of spacing sqrt 2, its neighbours diagonal), coloured by x's parity; level 2
    /// the sites with x and y even (spacing 2); and so on, each level the even sublattice of
    /// the one before. A pair updates one colour of its level from the other, the rest of the
    /// lattice unchanged. `[0]`: no hierarchy. Not combined with dilations.
    #[serde(default = "level_zero")]
    pub levels: Vec<usize>,
    /// Give every site's map a term of sub-linear growth, `v q(x)` with
    /// `q(x) = x (1 + x^2)^(-1/4) - x` and `v < 1/2`: the map can then turn the base's Gaussian
    /// tails into the quartic tails of phi^4 (`|z|^(1/2)` growth). Absent in a flow file: false.
    #[serde(default = "no_tails")]
    pub tails: bool,
}

fn no_tails() -> bool {
    false
}

fn level_zero() -> Vec<usize> {
    vec![0]
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            stages: 4,
            layers: 2,
            hidden: 16,
            radius: 2,
            scale_max: 2.0,
            dilations: vec![1],
            levels: vec![0],
            tails: false,
        }
    }
}

/// Even and odd pointwise features per site (F_e = F_o = 2).
const FEATURES: usize = 2;

fn even(x: f64) -> [f64; FEATURES] {
    let t = x.tanh();
    [x * x, t * t]
}
fn even_d(x: f64) -> [f64; FEATURES] {
    let t = x.tanh();
    [2.0 * x, 2.0 * t * (1.0 - t * t)]
}
fn odd(x: f64) -> [f64; FEATURES] {
    [x, x.tanh()]
}
fn odd_d(x: f64) -> [f64; FEATURES] {
    let t = x.tanh();
    [1.0, 1.0 - t * t]
}

/// `d/dx log p(x)` of a one-dimensional Gaussian mixture.
fn mixture_score(mix: &crate::score::Mixture1d, x: f64) -> f64 {
    let logs: Vec<f64> = (0..mix.len())
        .map(|k| {
            let (v, dx) = (mix.variances[k], x - mix.means[k]);
            mix.weights[k].ln() - 0.5 * v.ln() - dx * dx / (2.0 * v)
        })
        .collect();
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (mut num, mut den) = (0.0, 0.0);
    for (k, l) in logs.iter().enumerate() {
        let r = (l - max).exp();
        num -= r * (x - mix.means[k]) / mix.variances[k];
        den += r;
    }
    num / den
}

/// `q(x) = x (1 + x^2)^(-1/4) - x`, its first and second derivatives (the tails term).
fn tail_q(x: f64) -> [f64; 3] {
    let r = 1.0 + x * x;
    let q = x * r.powf(-0.25) - x;
    let q1 = (1.0 + 0.5 * x * x) * r.powf(-1.25) - 1.0;
    let q2 = x * r.powf(-2.25) * (-1.5 - 0.25 * x * x);
    [q, q1, q2]
}

/// The own-site map of one site from its network's outputs: `y = a (x + u tanh x + v q(x))
/// + t` with `a = e^s`, `s = s_max tanh(o_0 / s_max)`, `u = e^(o_1) - 1 > -1` and (with
/// tails) `v = (1 - e^(-o_2)) / 2 < 1/2`; its slope `a g'(x)` is positive for every x.
#[derive(Debug, Clone, Copy)]
struct SiteMap {
    s: f64,
    a: f64,
    u: f64,
    v: f64,
}

impl SiteMap {
    fn new(out: &[f64], smax: f64, tails: bool) -> Self {
        let s = smax * (out[0] / smax).tanh();
        SiteMap {
            s,
            a: s.exp(),
            u: out[1].exp() - 1.0,
            v: if tails {
                0.5 * (1.0 - (-out[2]).exp())
            } else {
                0.0
            },
        }
    }
    /// g(x), g'(x), g''(x) of `g(x) = x + u tanh x + v q(x)`.
    fn g(&self, x: f64) -> [f64; 3] {
        let th = x.tanh();
        let sech2 = 1.0 - th * th;
        let [q, q1, q2] = if self.v == 0.0 { [0.0; 3] } else { tail_q(x) };
        [
            x + self.u * th + self.v * q,
            1.0 + self.u * sech2 + self.v * q1,
            -2.0 * self.u * sech2 * th + self.v * q2,
        ]
    }
}

/// The other colour's offsets within `radius`, grouped into orbits of the lattice's rotations
/// and reflections (|dx| + |dy| odd).
fn orbits(radius: usize) -> Vec<Vec<(isize, isize)>> {
    let r = radius as isize;
    let mut keys: Vec<(isize, isize)> = Vec::new();
    let mut out: Vec<Vec<(isize, isize)>> = Vec::new();
    for dy in -r..=r {
        for dx in -r..=r {
            if (dx + dy).rem_euclid(2) == 0 {
                continue;
            }
            let key = (dx.abs().max(dy.abs()), dx.abs().min(dy.abs()));
            match keys.iter().position(|k| *k == key) {
                Some(j) => out[j].push((dx, dy)),
                None => {
                    keys.push(key);
                    out.push(vec![(dx, dy)]);
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&j| keys[j]);
    order.into_iter().map(|j| out[j].clone()).collect()
}

/// The couplings' parameters: one block per (RG step, layer, colour), each `W1 (H x I), b1 (H),
/// W2 (O x H), b2 (O)` with I = orbits x F_e inputs and O = 2 + orbits x F_o outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Couplings {
    /// The architecture.
    pub config: FlowConfig,
    /// All parameters, block after block.
    pub params: Vec<f64>,
}

impl Couplings {
    /// Checks the architecture.
    pub fn check(config: &FlowConfig) -> Result<()> {
        let bad = |name: &str, v: usize, e: &str| Err(Error::param(name, v, e));
        if config.stages == 0 {
            return bad("flow.stages", 0, "at least 1 RG step");
        }
        if config.stages > 1000 || config.layers > 1000 || config.hidden > 4096 {
            return bad(
                "flow.stages / layers / hidden",
                config.stages.max(config.layers).max(config.hidden),
                "at most 1000 steps and layers and 4096 hidden units",
            );
        }
        if config.hidden == 0 {
            return bad("flow.hidden", 0, "at least 1 hidden unit");
        }
        if !(1..=8).contains(&config.radius) {
            return bad("flow.radius", config.radius, "1 to 8 sites");
        }
        crate::error::check_range("flow.scale_max", config.scale_max, f64::MIN_POSITIVE, 20.0)?;
        if config.dilations.is_empty() || config.dilations.len() > 1000 {
            return bad(
                "flow.dilations (entries)",
                config.dilations.len(),
                "1 to 1000 dilations",
            );
        }
        if let Some(&d) = config.dilations.iter().find(|&&d| !(1..=1024).contains(&d)) {
            return bad("flow.dilations", d, "dilations from 1 to 1024 sites");
        }
        if config.levels.is_empty() || config.levels.len() > 1000 {
            return bad(
                "flow.levels (entries)",
                config.levels.len(),
                "1 to 1000 levels",
            );
        }
        if let Some(&l) = config.levels.iter().find(|&&l| l > 20) {
            return bad("flow.levels", l, "levels from 0 to 20");
        }
        let dilated = config.dilations.iter().any(|&d| d > 1);
        if dilated && config.levels.iter().any(|&l| l > 0) {
            return bad(
                "flow.levels",
                config.levels.iter().copied().max().unwrap_or(0),
                "level 0 when the pairs are dilated (dilations and levels are two geometries: choose one)",
            );
        }
        Ok(())
    }

    /// Identity couplings (output weights zero: the flow is the Gaussian base) with hidden
    /// weights drawn from stream (seed, FlowInit) with variance 1 / inputs.
    pub fn new(config: &FlowConfig, seed: u64) -> Result<Self> {
        Self::check(config)?;
        let shape = BlockShape::new(config);
        let blocks = config.stages * config.layers * 2;
        let mut params = vec![0.0; blocks * shape.size()];
        let mut rng = stream(seed, Purpose::FlowInit, 0);
        let scale = (1.0 / shape.inputs as f64).sqrt();
        for b in 0..blocks {
            let block = &mut params[b * shape.size()..(b + 1) * shape.size()];
            for w in &mut block[..shape.hidden * shape.inputs] {
                let u: f64 =
                    rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut rng);
                *w = u * scale;
            }
        }
        Ok(Couplings {
            config: config.clone(),
            params,
        })
    }

    /// Parameters with their architecture (e.g. read from a file): checked for size and
    /// finiteness.
    pub fn from_params(config: &FlowConfig, params: Vec<f64>) -> Result<Self> {
        Self::check(config)?;
        let expected = config.stages * config.layers * 2 * BlockShape::new(config).size();
        if params.len() != expected {
            return Err(Error::ShapeMismatch {
                what: "the flow's parameters".into(),
                expected: format!("{expected} values for {config:?}"),
                got: format!("{}", params.len()),
            });
        }
        if let Some(i) = params.iter().position(|p| !p.is_finite()) {
            return Err(Error::NonFinite {
                what: "the flow's parameters".into(),
                index: i,
                value: params[i],
            });
        }
        Ok(Couplings {
            config: config.clone(),
            params,
        })
    }
}

/// Sizes of one coupling block.
#[derive(Debug, Clone, Copy)]
struct BlockShape {
    /// Orbit features of one parity (orbits x F).
    features: usize,
    /// The hidden layer's inputs: the even orbit features and the squares of the odd ones.
    inputs: usize,
    hidden: usize,
    outputs: usize,
    /// Index of the first output that multiplies an odd feature (t's coefficients).
    t_first: usize,
}

impl BlockShape {
    fn new(config: &FlowConfig) -> Self {
        let orbits = orbits(config.radius).len();
        BlockShape {
            features: orbits * FEATURES,
            inputs: 2 * orbits * FEATURES,
            hidden: config.hidden,
            outputs: 2 + usize::from(config.tails) + orbits * FEATURES,
            t_first: 2 + usize::from(config.tails),
        }
    }
    fn size(&self) -> usize {
        self.hidden * self.inputs + self.hidden + self.outputs * self.hidden + self.outputs
    }
}

/// The flow on a design: its RG steps (per-component factors) and the couplings.
pub struct LocalFlow<'a> {
    design: &'a Design,
    /// The design's sigma_data averaged over each orbit of lattice momenta (Fourier basis).
    sigma_data: Vec<f64>,
    couplings: &'a Couplings,
    shape: BlockShape,
    orbits: Vec<Vec<(isize, isize)>>,
    /// Factor of each RG step per component (the first includes the prior scale S).
    lambda: Vec<Vec<f64>>,
    /// `-sum_i log S_i - sum_n sum_i log lambda_{n,i}`: the RG steps' part of log q.
    log_det_linear: f64,
    h: usize,
    w: usize,
    /// The distinct geometries of the coupling pairs.
    geometries: Vec<Geometry>,
    /// Each coupling pair's geometry (an index into `geometries`).
    pair_geometry: Vec<usize>,
}

/// Where a coupling pair acts: the sites of each colour it updates, and the lattice vectors
/// e1, e2 (x, y) that its offsets (dx, dy) are counted in.
#[derive(Debug, Clone)]
struct Geometry {
    sites: [Vec<usize>; 2],
    e1: (isize, isize),
    e2: (isize, isize),
}

impl Geometry {
    /// Dilation D (all sites, D x D blocks as the checkerboard) or sublattice level l (module
    /// docs of [`FlowConfig::levels`]) on an h x w lattice.
    fn new(dil: usize, level: usize, h: usize, w: usize) -> Result<Self> {
        let s = dil << (level / 2);
        if !h.is_multiple_of(2 * s) || !w.is_multiple_of(2 * s) {
            let (name, value) = if level > 0 {
                ("flow.levels", level)
            } else {
                ("flow.dilations", dil)
            };
            let expected =
                format!("a geometry whose period 2 x {s} divides the lattice's sides ({h} x {w})");
            return Err(Error::param(name, value, &expected));
        }
        let mut sites = [Vec::new(), Vec::new()];
        for y in 0..h {
            for x in 0..w {
                let colour = if level == 0 {
                    Some((x / dil + y / dil) % 2)
                } else if x % s != 0 || y % s != 0 {
                    None
                } else if level.is_multiple_of(2) {
                    Some((x / s + y / s) % 2)
                } else if (x / s + y / s).is_multiple_of(2) {
                    Some((x / s) % 2)
                } else {
                    None
                };
                if let Some(c) = colour {
                    sites[c].push(y * w + x);
                }
            }
        }
        let si = s as isize;
        let (e1, e2) = if level.is_multiple_of(2) {
            ((si, 0), (0, si))
        } else {
            ((si, si), (si, -si))
        };
        Ok(Geometry { sites, e1, e2 })
    }
}

/// The design's sigma_data with each Fourier component's value replaced by the mean over its
/// orbit of lattice momenta (|n_y|, |n_x| up to their swap: the lattice's rotations and
/// reflections map the orbit onto itself). The target's variances are equal on an orbit; the
/// fitted ones differ by the sampling error of the data (a few percent per component at L = 64
/// on 4096 configurations, which would add up to a log-weight variance of order one over the
/// d components). Other bases keep their values.
fn orbit_means(design: &Design) -> Vec<f64> {
    let sd = design.sigma_data();
    let comps = design.basis().components();
    let key = |i: usize| {
        comps[i].momentum.map(|m| {
            let (a, b) = (m.n[0].abs(), m.n[1].abs());
            (comps[i].channel, a.min(b), a.max(b))
        })
    };
    let mut sums: std::collections::HashMap<(usize, i64, i64), (f64, usize)> =
        std::collections::HashMap::new();
    for i in 0..sd.len() {
        if let Some(k) = key(i) {
            let e = sums.entry(k).or_insert((0.0, 0));
            e.0 += sd[i];
            e.1 += 1;
        }
    }
    (0..sd.len())
        .map(|i| match key(i) {
            Some(k) => {
                let (sum, n) = sums[&k];
                sum / n as f64
            }
            None => sd[i],
        })
        .collect()
}

/// What one proposal's pass kept for back-propagation: the field before every step.
struct Tape {
    inputs: Vec<Vec<f64>>,
}

/// What [`LocalFlow::couple_backward`] propagates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sweep {
    /// The reverse KL's gradient, log-det terms included.
    Loss,
    /// The map's vector-Jacobian product alone (the path gradient).
    Path,
    /// `J^(-T)` of the coupling.
    InverseTranspose,
}

impl<'a> LocalFlow<'a> {
    /// The flow of `couplings` on `design` (one channel, an even H x W lattice).
    pub fn new(design: &'a Design, couplings: &'a Couplings) -> Result<Self> {
        let s = design.shape();
        if s.c != 1 || !s.h.is_multiple_of(2) || !s.w.is_multiple_of(2) || s.h < 2 || s.w < 2 {
            return Err(Error::param(
                "design shape",
                s,
                "one channel on an even H x W lattice (the couplings are a checkerboard)",
            ));
        }
        let config = &couplings.config;
        let d = design.dim();
        let (t_min, t_max) = design.schedule().t_range();
        let k = config.stages;
        // variance levels v_0 = 1 (prior), v_1..v_{K-1} on a uniform grid in t, v_K = sigma_data
        let sd = &orbit_means(design);
        let mut levels: Vec<Vec<f64>> = vec![vec![1.0; d]];
        for n in 1..k {
            let t = t_max + (t_min - t_max) * n as f64 / k as f64;
            let st = design.state(t);
            levels.push(
                (0..d)
                    .map(|i| st.alpha_sq()[i] * sd[i] + st.sigma_sq()[i])
                    .collect(),
            );
        }
        levels.push(sd.to_vec());
        let mut lambda: Vec<Vec<f64>> = (0..k)
            .map(|n| {
                (0..d)
                    .map(|i| (levels[n + 1][i] / levels[n][i]).sqrt())
                    .collect()
            })
            .collect();
        for (l, s) in lambda[0].iter_mut().zip(design.scale()) {
            *l *= s;
        }
        let log_det_linear = -lambda.iter().flatten().map(|l| l.ln()).sum::<f64>();
        if !log_det_linear.is_finite() {
            return Err(Error::Numerical {
                what: "the flow's RG steps".into(),
                reason: "a component's variance level is zero or not finite".into(),
            });
        }
        let mut keys: Vec<(usize, usize)> = Vec::new();
        let mut geometries = Vec::new();
        let mut pair_geometry = Vec::new();
        for p in 0..config.stages * config.layers {
            let key = (
                config.dilations[p % config.dilations.len()],
                config.levels[p % config.levels.len()],
            );
            let g = match keys.iter().position(|k| *k == key) {
                Some(g) => g,
                None => {
                    geometries.push(Geometry::new(key.0, key.1, s.h, s.w)?);
                    keys.push(key);
                    keys.len() - 1
                }
            };
            pair_geometry.push(g);
        }
        Ok(LocalFlow {
            design,
            sigma_data: sd.clone(),
            couplings,
            shape: BlockShape::new(config),
            orbits: orbits(config.radius),
            lambda,
            log_det_linear,
            h: s.h,
            w: s.w,
            geometries,
            pair_geometry,
        })
    }

    /// Number of values d of a field.
    pub fn dim(&self) -> usize {
        self.design.dim()
    }

    /// Coupling blocks applied per sample.
    pub fn couplings_per_sample(&self) -> usize {
        self.couplings.config.stages * self.couplings.config.layers * 2
    }

    /// The geometry of coupling block b (its pair's).
    fn geometry(&self, b: usize) -> &Geometry {
        &self.geometries[self.pair_geometry[b / 2]]
    }

    /// The sites coupling block b updates (its colour in its geometry).
    fn sites(&self, b: usize, colour: usize) -> &[usize] {
        &self.geometry(b).sites[colour]
    }

    /// The site at offset dx e1 + dy e2 of site i (periodic).
    fn neighbour(&self, i: usize, dx: isize, dy: isize, g: &Geometry) -> usize {
        let (h, w) = (self.h as isize, self.w as isize);
        let (yi, xi) = ((i / self.w) as isize, (i % self.w) as isize);
        let (ox, oy) = (dx * g.e1.0 + dy * g.e2.0, dx * g.e1.1 + dy * g.e2.1);
        ((yi + oy).rem_euclid(h) * w + (xi + ox).rem_euclid(w)) as usize
    }

    fn block(&self, b: usize) -> &[f64] {
        let n = self.shape.size();
        &self.couplings.params[b * n..(b + 1) * n]
    }

    /// `x <- U^T (lambda . U x)` (for n = 0 from z in components: `x <- U^T (lambda . z)`).
    fn rg_step(&self, n: usize, x: &mut [f64], scratch: &mut [f64]) {
        self.rg_apply(n, x, scratch, false);
    }

    /// `x <- U^T (lambda^(+-1) . U x)` (n = 0: from components), `inverse` dividing.
    fn rg_apply(&self, n: usize, x: &mut [f64], scratch: &mut [f64], inverse: bool) {
        let basis = self.design.basis();
        if n > 0 {
            basis.forward(x, scratch);
        } else {
            scratch.copy_from_slice(x);
        }
        for (c, l) in scratch.iter_mut().zip(&self.lambda[n]) {
            if inverse {
                *c /= l;
            } else {
                *c *= l;
            }
        }
        basis.inverse(scratch, x);
    }

    /// The orbit sums of the even (`odd_features = false`) or odd features around site i.
    fn orbit_features(
        &self,
        x: &[f64],
        i: usize,
        dil: &Geometry,
        odd_features: bool,
        out: &mut [f64],
    ) {
        for (o, orbit) in self.orbits.iter().enumerate() {
            let mut acc = [0.0; FEATURES];
            for &(dx, dy) in orbit {
                let j = self.neighbour(i, dx, dy, dil);
                let f = if odd_features { odd(x[j]) } else { even(x[j]) };
                for (a, v) in acc.iter_mut().zip(f) {
                    *a += v;
                }
            }
            let norm = 1.0 / orbit.len() as f64;
            for (k, a) in acc.iter().enumerate() {
                out[o * FEATURES + k] = a * norm;
            }
        }
    }

    /// The hidden layer's inputs at site i (`e`: even orbit features, then the squares of the
    /// odd ones) and the odd orbit features `od` (what t is linear in).
    fn inputs(&self, x: &[f64], i: usize, dil: &Geometry, e: &mut [f64], od: &mut [f64]) {
        let f = od.len();
        self.orbit_features(x, i, dil, false, &mut e[..f]);
        self.orbit_features(x, i, dil, true, od);
        for k in 0..f {
            e[f + k] = od[k] * od[k];
        }
    }

    /// One coupling (block b, colour c) in place; returns its log |det|.
    fn couple(&self, b: usize, colour: usize, x: &mut [f64]) -> f64 {
        self.couple_inner(b, colour, x, true)
    }

    /// One coupling in place; with `with_log_det` its log |det| too (else 0).
    fn couple_inner(&self, b: usize, colour: usize, x: &mut [f64], with_log_det: bool) -> f64 {
        let p = self.block(b);
        let sh = self.shape;
        let smax = self.couplings.config.scale_max;
        let (mut e, mut od) = (vec![0.0; sh.inputs], vec![0.0; sh.features]);
        let (mut hid, mut out) = (vec![0.0; sh.hidden], vec![0.0; sh.outputs]);
        let mut log_det = 0.0;
        let dil = self.geometry(b);
        let tails = self.couplings.config.tails;
        // the other colour is not changed by this coupling: read it from x as it is
        for &i in self.sites(b, colour) {
            self.inputs(x, i, dil, &mut e, &mut od);
            mlp(p, sh, &e, &mut hid, &mut out);
            let m = SiteMap::new(&out, smax, tails);
            let t: f64 = out[sh.t_first..].iter().zip(&od).map(|(c, o)| c * o).sum();
            let [g, g1, _] = m.g(x[i]);
            x[i] = m.a * g + t;
            if with_log_det {
                log_det += m.s + g1.ln();
            }
        }
        log_det
    }

    /// Maps one prior draw z (whitened components) to its field (in place, phi-space, mean
    /// added) and returns the couplings' log |det|; with a tape, the inputs of every step.
    fn forward(&self, z: &[f64], x: &mut [f64], mut tape: Option<&mut Tape>) -> f64 {
        let cfg = &self.couplings.config;
        let mut scratch = vec![0.0; x.len()];
        x.copy_from_slice(z);
        let mut log_det = 0.0;
        for n in 0..cfg.stages {
            self.rg_step(n, x, &mut scratch);
            for l in 0..cfg.layers {
                for colour in 0..2 {
                    if let Some(t) = tape.as_deref_mut() {
                        t.inputs.push(x.to_vec());
                    }
                    log_det += self.couple((n * cfg.layers + l) * 2 + colour, colour, x);
                }
            }
        }
        for (v, m) in x.iter_mut().zip(self.design.mean()) {
            *v += m;
        }
        log_det
    }

    /// Draws the flow's input z from `rng` (d standard normals, then one uniform per fitted
    /// mixture of the design's base) and returns its log-density. Components with a mixture
    /// (the zero mode of the default phi^4 design) start from it, scaled so that the RG steps
    /// carry it to the fitted mixture of the data: `z_i = chi0_i / sqrt(sigma_data,i)`.
    pub fn draw_input(&self, rng: &mut ChaCha8Rng, z: &mut [f64]) -> f64 {
        draw_prior(rng, z);
        let mut log_b = log_standard_normal(z);
        let sd = &self.sigma_data;
        for (i, mix) in self.design.base().mixture_components() {
            let u: f64 = rng.random();
            let mut c = 0;
            let mut acc = mix.weights[0];
            while u >= acc && c + 1 < mix.len() {
                c += 1;
                acc += mix.weights[c];
            }
            let n = z[i];
            let chi0 = mix.means[c] + mix.variances[c].sqrt() * n;
            z[i] = chi0 / sd[i].sqrt();
            // the standard normal of component i is replaced by the mixture's density of z_i
            log_b += 0.5 * n * n
                + 0.5 * (2.0 * std::f64::consts::PI).ln()
                + mix.log_density(chi0, 1.0, 0.0)
                + 0.5 * sd[i].ln();
        }
        log_b
    }

    /// The field of input `z` (log-density `log_input`, from [`LocalFlow::draw_input`]) and
    /// its `log q` (SPEC 9.1).
    pub fn sample_one(&self, z: &[f64], log_input: f64, phi: &mut [f64]) -> f64 {
        let log_det = self.forward(z, phi, None);
        log_input + self.log_det_linear - log_det
    }

    /// The field of input `z` without its density (what `log q` is measured against): the
    /// same steps without the log-determinant's terms.
    pub fn field_only(&self, z: &[f64], phi: &mut [f64]) {
        let cfg = &self.couplings.config;
        let mut scratch = vec![0.0; phi.len()];
        phi.copy_from_slice(z);
        for n in 0..cfg.stages {
            self.rg_step(n, phi, &mut scratch);
            for l in 0..cfg.layers {
                for colour in 0..2 {
                    self.couple_inner((n * cfg.layers + l) * 2 + colour, colour, phi, false);
                }
            }
        }
        for (v, m) in phi.iter_mut().zip(self.design.mean()) {
            *v += m;
        }
    }

    /// The cost report of `count` proposals (grid points: the RG steps; evaluations: coupling
    /// blocks per sample).
    pub fn report(&self, count: usize) -> SampleReport {
        let nfe = self.couplings_per_sample();
        SampleReport {
            sampler: "flow",
            score: "local-couplings",
            grid_points: self.couplings.config.stages,
            nfe,
            component_evals: nfe * self.dim() / 2,
            component_evals_full: nfe * self.dim() / 2,
            samples: count,
        }
    }
}

impl LocalFlow<'_> {
    /// The reverse-KL loss of prior draw z, `log q(phi) - log p(phi)` with `phi = T(z)`, and
    /// (added to `grad`) its gradient with respect to the parameters: the total one
    /// (`Sweep::Loss`) or the path gradient (`Sweep::Path`, Vaitl et al. 2022):
    /// `(grad_x log q - grad_x log p)^T dT/dtheta` at `x = T(z)`, without the score term
    /// `d log q / d theta` at fixed x, whose mean is zero: the same mean, a smaller variance
    /// near the target (zero at q = p).
    /// Returns (loss, log q, log p).
    fn loss_and_gradient(
        &self,
        z: &[f64],
        log_input: f64,
        target: &dyn Target,
        grad: &mut [f64],
        sweep: Sweep,
    ) -> (f64, f64, f64) {
        let d = self.dim();
        let cfg = &self.couplings.config;
        let mut tape = Tape {
            inputs: Vec::with_capacity(self.couplings_per_sample()),
        };
        let mut phi = vec![0.0; d];
        let log_det = self.forward(z, &mut phi, Some(&mut tape));
        let log_q = log_input + self.log_det_linear - log_det;
        let log_p = target.log_density(&phi);
        let loss = log_q - log_p;
        if !loss.is_finite() {
            return (loss, log_q, log_p);
        }
        // dL/dphi: -grad log p (total), or grad log q - grad log p (path)
        let mut bar = vec![0.0; d];
        let mut grad_p = vec![0.0; d];
        target.grad_log_density(&phi, &mut grad_p);
        if sweep == Sweep::Path {
            self.grad_log_q(z, &tape, &mut bar);
        }
        for (b, gp) in bar.iter_mut().zip(&grad_p) {
            *b -= gp;
        }
        // back through every step (the mean shift has no Jacobian)
        let mut scratch = vec![0.0; d];
        let per_block = self.shape.size();
        for n in (0..cfg.stages).rev() {
            for l in (0..cfg.layers).rev() {
                for colour in (0..2).rev() {
                    let b = (n * cfg.layers + l) * 2 + colour;
                    let g = &mut grad[b * per_block..(b + 1) * per_block];
                    self.couple_backward(b, colour, &tape.inputs[b], &mut bar, Some(g), sweep);
                }
            }
            if n > 0 {
                // U^T diag(lambda) U is symmetric: its adjoint is itself
                self.rg_step(n, &mut bar, &mut scratch);
            }
        }
        (loss, log_q, log_p)
    }

    /// `grad_z log b(z)` of the input density of [`LocalFlow::draw_input`] (the standard
    /// normal; the fitted mixture on the base's mixture components).
    fn grad_log_input(&self, z: &[f64], out: &mut [f64]) {
        for (o, zi) in out.iter_mut().zip(z) {
            *o = -zi;
        }
        for (i, mix) in self.design.base().mixture_components() {
            let r = self.sigma_data[i].sqrt();
            out[i] = r * mixture_score(mix, z[i] * r);
        }
    }

    /// `grad_x log q(x)` at `x = T(z)` (the tape holds every step's input): the input's
    /// `grad_z (log b - log |det dT/dz|)`, then `J^(-T)` of every step in the order they
    /// were applied (`J^(-T) = J_K^(-T) ... J_1^(-T)`), each in O(d) (Vaitl et al. 2022).
    fn grad_log_q(&self, z: &[f64], tape: &Tape, out: &mut [f64]) {
        let d = self.dim();
        let cfg = &self.couplings.config;
        let mut scratch = vec![0.0; d];
        // grad_z of -log |det|: back through every step with no cotangent at the output
        let mut bar = vec![0.0; d];
        for n in (0..cfg.stages).rev() {
            for l in (0..cfg.layers).rev() {
                for colour in (0..2).rev() {
                    let b = (n * cfg.layers + l) * 2 + colour;
                    self.couple_backward(b, colour, &tape.inputs[b], &mut bar, None, Sweep::Loss);
                }
            }
            self.rg_adjoint(n, &mut bar, &mut scratch);
        }
        self.grad_log_input(z, out);
        for (o, b) in out.iter_mut().zip(&bar) {
            *o += b;
        }
        // J^(-T), step after step from the input
        for n in 0..cfg.stages {
            // M^(-T) of RG step n (M = U^T lambda U, or U^T lambda first): lambda divides
            self.rg_apply(n, out, &mut scratch, true);
            for l in 0..cfg.layers {
                for colour in 0..2 {
                    let b = (n * cfg.layers + l) * 2 + colour;
                    self.couple_backward(
                        b,
                        colour,
                        &tape.inputs[b],
                        out,
                        None,
                        Sweep::InverseTranspose,
                    );
                }
            }
        }
    }

    /// The adjoint of RG step n: `U^T lambda U` is symmetric (its own adjoint); the first,
    /// `x = U^T (lambda . z)` from components, has `z_bar = lambda . U x_bar`.
    fn rg_adjoint(&self, n: usize, bar: &mut [f64], scratch: &mut [f64]) {
        if n > 0 {
            self.rg_step(n, bar, scratch);
        } else {
            self.design.basis().forward(bar, scratch);
            for ((b, c), l) in bar.iter_mut().zip(scratch.iter()).zip(&self.lambda[0]) {
                *b = c * l;
            }
        }
    }

    /// Back-propagation through coupling b (colour c) with input `x`: `bar` holds dL/dy on
    /// entry and dL/dx on return; parameter gradients are added to `g` when given. `Loss`: L
    /// includes -log |det| of the coupling; `Path`: it does not (the map alone);
    /// `InverseTranspose`: `bar <- J^(-T) bar` for the coupling's Jacobian J (no parameters).
    fn couple_backward(
        &self,
        b: usize,
        colour: usize,
        x: &[f64],
        bar: &mut [f64],
        mut g: Option<&mut [f64]>,
        sweep: Sweep,
    ) {
        let p = self.block(b);
        let sh = self.shape;
        let smax = self.couplings.config.scale_max;
        let (mut e, mut od) = (vec![0.0; sh.inputs], vec![0.0; sh.features]);
        let (mut hid, mut out) = (vec![0.0; sh.hidden], vec![0.0; sh.outputs]);
        let mut out_bar = vec![0.0; sh.outputs];
        let (mut e_bar, mut od_bar) = (vec![0.0; sh.inputs], vec![0.0; sh.features]);
        let (w1_len, w2_len) = (sh.hidden * sh.inputs, sh.outputs * sh.hidden);
        let dil = self.geometry(b);
        let tails = self.couplings.config.tails;
        for &i in self.sites(b, colour) {
            self.inputs(x, i, dil, &mut e, &mut od);
            mlp(p, sh, &e, &mut hid, &mut out);
            let m = SiteMap::new(&out, smax, tails);
            let (s, a, u, v) = (m.s, m.a, m.u, m.v);
            let xi = x[i];
            let th = xi.tanh();
            let sech2 = 1.0 - th * th;
            let [gx, gg, g2] = m.g(xi);
            // J = [[D, C], [0, 1]] with D = a g'(x): J^(-T) takes u = bar / D on this colour
            // and bar - C^T u on the other
            let y_bar = match sweep {
                Sweep::InverseTranspose => bar[i] / (a * gg),
                _ => bar[i],
            };
            // the log-det terms' weight (Loss only)
            let ld = if sweep == Sweep::Loss { 1.0 } else { 0.0 };
            // direct: y = a g(x) + t, log det = s + log g'(x), g = x + u tanh x + v q(x)
            bar[i] = match sweep {
                Sweep::Loss => y_bar * a * gg - g2 / gg,
                Sweep::Path => y_bar * a * gg,
                Sweep::InverseTranspose => y_bar,
            };
            let s_bar = y_bar * (a * gx) - ld;
            out_bar[0] = s_bar * (1.0 - (s / smax).powi(2));
            out_bar[1] = (y_bar * a * th - ld * sech2 / gg) * (u + 1.0);
            if tails {
                let [q, q1, _] = tail_q(xi);
                // v = (1 - e^(-o_2)) / 2: dv/do_2 = (1 - 2 v) / 2
                out_bar[2] = (y_bar * a * q - ld * q1 / gg) * 0.5 * (1.0 - 2.0 * v);
            }
            for k in 0..sh.features {
                out_bar[sh.t_first + k] = y_bar * od[k];
                od_bar[k] = y_bar * out[sh.t_first + k];
            }
            // the hidden layer
            let w1 = &p[..w1_len];
            let w2 = &p[w1_len + sh.hidden..w1_len + sh.hidden + w2_len];
            e_bar.iter_mut().for_each(|v| *v = 0.0);
            let mut grads = g.as_deref_mut().map(|g| {
                let (gw1, rest) = g.split_at_mut(w1_len);
                let (gb1, rest) = rest.split_at_mut(sh.hidden);
                let (gw2, gb2) = rest.split_at_mut(w2_len);
                (gw1, gb1, gw2, gb2)
            });
            if let Some((_, _, gw2, gb2)) = grads.as_mut() {
                for (k, ob) in out_bar.iter().enumerate() {
                    gb2[k] += ob;
                    for j in 0..sh.hidden {
                        gw2[k * sh.hidden + j] += ob * hid[j];
                    }
                }
            }
            for j in 0..sh.hidden {
                let hb: f64 = (0..sh.outputs)
                    .map(|k| w2[k * sh.hidden + j] * out_bar[k])
                    .sum();
                let pre_bar = hb * (1.0 - hid[j] * hid[j]);
                if let Some((gw1, gb1, _, _)) = grads.as_mut() {
                    gb1[j] += pre_bar;
                    for m in 0..sh.inputs {
                        gw1[j * sh.inputs + m] += pre_bar * e[m];
                    }
                }
                for m in 0..sh.inputs {
                    e_bar[m] += w1[j * sh.inputs + m] * pre_bar;
                }
            }
            // the squares of the odd features are inputs too
            for k in 0..sh.features {
                od_bar[k] += e_bar[sh.features + k] * 2.0 * od[k];
            }
            // the features read the other colour's sites (J^(-T): subtracted)
            let sign = if sweep == Sweep::InverseTranspose {
                -1.0
            } else {
                1.0
            };
            for (o, orbit) in self.orbits.iter().enumerate() {
                let norm = sign / orbit.len() as f64;
                for &(dx, dy) in orbit {
                    let j = self.neighbour(i, dx, dy, dil);
                    let (de, dd) = (even_d(x[j]), odd_d(x[j]));
                    for f in 0..FEATURES {
                        bar[j] += norm
                            * (e_bar[o * FEATURES + f] * de[f] + od_bar[o * FEATURES + f] * dd[f]);
                    }
                }
            }
        }
    }

    /// The Jacobian dphi/dz (d x d, row-major) by forward-mode differentiation of every step:
    /// the dense reference of the structured log-determinant (tests; O(d^2) per sample).
    pub fn jacobian(&self, z: &[f64]) -> Vec<f64> {
        let d = self.dim();
        let cfg = &self.couplings.config;
        // columns of the Jacobian as tangents, carried with the primal
        let mut x = z.to_vec();
        let mut tangents: Vec<Vec<f64>> = (0..d)
            .map(|j| {
                let mut e = vec![0.0; d];
                e[j] = 1.0;
                e
            })
            .collect();
        let mut scratch = vec![0.0; d];
        for n in 0..cfg.stages {
            self.rg_step(n, &mut x, &mut scratch);
            for t in &mut tangents {
                self.rg_step(n, t, &mut scratch);
            }
            for l in 0..cfg.layers {
                for colour in 0..2 {
                    let b = (n * cfg.layers + l) * 2 + colour;
                    let before = x.clone();
                    for t in &mut tangents {
                        *t = self.couple_tangent(b, colour, &before, t);
                    }
                    self.couple(b, colour, &mut x);
                }
            }
        }
        let mut jac = vec![0.0; d * d];
        for (j, t) in tangents.iter().enumerate() {
            for i in 0..d {
                jac[i * d + j] = t[i];
            }
        }
        jac
    }

    /// The tangent of coupling b at input x along dx (central differences would lose digits:
    /// this is the exact derivative, through the same features).
    fn couple_tangent(&self, b: usize, colour: usize, x: &[f64], dx: &[f64]) -> Vec<f64> {
        let p = self.block(b);
        let sh = self.shape;
        let smax = self.couplings.config.scale_max;
        let dil = self.geometry(b);
        let tails = self.couplings.config.tails;
        let mut dy = dx.to_vec();
        let (mut e, mut od) = (vec![0.0; sh.inputs], vec![0.0; sh.features]);
        let (mut de, mut dod) = (vec![0.0; sh.inputs], vec![0.0; sh.features]);
        let (mut hid, mut out) = (vec![0.0; sh.hidden], vec![0.0; sh.outputs]);
        let (w1_len, w2_len) = (sh.hidden * sh.inputs, sh.outputs * sh.hidden);
        let w1 = &p[..w1_len];
        let w2 = &p[w1_len + sh.hidden..w1_len + sh.hidden + w2_len];
        for &i in self.sites(b, colour) {
            self.inputs(x, i, dil, &mut e, &mut od);
            // tangents of the orbit sums
            for (o, orbit) in self.orbits.iter().enumerate() {
                let norm = 1.0 / orbit.len() as f64;
                let (mut ae, mut ao) = ([0.0; FEATURES], [0.0; FEATURES]);
                for &(ddx, ddy) in orbit {
                    let j = self.neighbour(i, ddx, ddy, dil);
                    let (fe, fo) = (even_d(x[j]), odd_d(x[j]));
                    for f in 0..FEATURES {
                        ae[f] += fe[f] * dx[j];
                        ao[f] += fo[f] * dx[j];
                    }
                }
                for f in 0..FEATURES {
                    de[o * FEATURES + f] = ae[f] * norm;
                    dod[o * FEATURES + f] = ao[f] * norm;
                }
            }
            for k in 0..sh.features {
                de[sh.features + k] = 2.0 * od[k] * dod[k];
            }
            mlp(p, sh, &e, &mut hid, &mut out);
            let mut dout = vec![0.0; sh.outputs];
            for j in 0..sh.hidden {
                let dpre: f64 = (0..sh.inputs).map(|m| w1[j * sh.inputs + m] * de[m]).sum();
                let dh = dpre * (1.0 - hid[j] * hid[j]);
                for (k, dk) in dout.iter_mut().enumerate() {
                    *dk += w2[k * sh.hidden + j] * dh;
                }
            }
            let m = SiteMap::new(&out, smax, tails);
            let ds = dout[0] * (1.0 - (m.s / smax).powi(2));
            let du = dout[1] * (m.u + 1.0);
            let dv = if tails {
                dout[2] * 0.5 * (1.0 - 2.0 * m.v)
            } else {
                0.0
            };
            let dt: f64 = (0..sh.features)
                .map(|k| dout[sh.t_first + k] * od[k] + out[sh.t_first + k] * dod[k])
                .sum();
            let xi = x[i];
            let th = xi.tanh();
            let [g, g1, _] = m.g(xi);
            let q = if tails { tail_q(xi)[0] } else { 0.0 };
            dy[i] = ds * m.a * g + m.a * (dx[i] * g1 + du * th + dv * q) + dt;
        }
        dy
    }
}

/// Settings of [`train`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowTraining {
    /// Optimisation steps (Adam).
    pub steps: usize,
    /// Prior draws per step.
    pub batch: usize,
    /// Peak learning rate (cosine decay to a tenth).
    pub lr: f64,
    /// Seed of the draws (stream (seed, FlowTraining, step)).
    pub seed: u64,
    /// Clip the batch's mean gradient to this Euclidean norm before Adam (absent: no clipping).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip: Option<f64>,
    /// Train with the path gradient (Vaitl et al. 2022): the reverse KL's gradient without
    /// its score term, whose mean is zero (the same mean, less variance near the target).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub path_gradient: bool,
}

impl Default for FlowTraining {
    fn default() -> Self {
        FlowTraining {
            steps: 1000,
            batch: 64,
            lr: 1e-2,
            seed: 0,
            clip: None,
            path_gradient: false,
        }
    }
}

/// One logged step of [`train`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowStep {
    /// Step (1-based).
    pub step: usize,
    /// Mean of `log q - log p` over the batch (the reverse KL minus log Z).
    pub loss: f64,
    /// ESS / N of the batch.
    pub ess_fraction: f64,
    /// Draws with a non-finite loss (left out of the step).
    pub non_finite: usize,
}

/// Trains `couplings` on `design` against `target` by the reverse Kullback-Leibler divergence
/// (module docs): returns one [`FlowStep`] per step. The monitor hears each step (phase
/// `training`); a stop request returns the steps so far with the parameters of the last one.
pub fn train(
    design: &Design,
    couplings: &mut Couplings,
    target: &dyn Target,
    opts: &FlowTraining,
    monitor: &dyn Monitor,
) -> Result<Vec<FlowStep>> {
    let d = design.dim();
    if target.dim() != d {
        return Err(Error::ShapeMismatch {
            what: "the flow's target".into(),
            expected: format!("{d} values (the design's)"),
            got: format!("{}", target.dim()),
        });
    }
    if opts.batch == 0 || opts.steps == 0 {
        return Err(Error::param("flow training batch / steps", 0, "at least 1"));
    }
    crate::error::check_range("lr", opts.lr, f64::MIN_POSITIVE, 1.0)?;
    if let Some(c) = opts.clip {
        crate::error::check_range("clip", c, f64::MIN_POSITIVE, f64::MAX)?;
    }
    crate::memory::check_alloc(
        "the flow's training batch",
        &[
            opts.batch,
            d,
            couplings.config.stages * couplings.config.layers * 2 + 4,
        ],
        8,
    )?;
    let np = couplings.params.len();
    let (mut m, mut v) = (vec![0.0; np], vec![0.0; np]);
    let (beta1, beta2, eps): (f64, f64, f64) = (0.9, 0.999, 1e-8);
    let mut log = Vec::with_capacity(opts.steps);
    for step in 1..=opts.steps {
        let flow = LocalFlow::new(design, couplings)?;
        let mut rng = stream(opts.seed, Purpose::FlowTraining, step as u64);
        let zs: Vec<(Vec<f64>, f64)> = (0..opts.batch)
            .map(|_| {
                let mut z = vec![0.0; d];
                let log_b = flow.draw_input(&mut rng, &mut z);
                (z, log_b)
            })
            .collect();
        // each draw's gradient in parallel, summed in draw order: the same bits for any
        // number of threads (a parallel reduction's association depends on the scheduling)
        let sweep = if opts.path_gradient {
            Sweep::Path
        } else {
            Sweep::Loss
        };
        let per_draw: Vec<(Vec<f64>, f64)> = zs
            .par_iter()
            .map(|(z, log_b)| {
                let mut g = vec![0.0; np];
                let (loss, _, _) = flow.loss_and_gradient(z, *log_b, target, &mut g, sweep);
                if !loss.is_finite() {
                    g.iter_mut().for_each(|x| *x = 0.0);
                }
                (g, loss)
            })
            .collect();
        let mut grad = vec![0.0; np];
        let mut losses = Vec::with_capacity(per_draw.len());
        for (g, loss) in &per_draw {
            grad.iter_mut().zip(g).for_each(|(x, y)| *x += y);
            losses.push(*loss);
        }
        let finite: Vec<f64> = losses.iter().copied().filter(|l| l.is_finite()).collect();
        let non_finite = losses.len() - finite.len();
        if finite.is_empty() {
            return Err(Error::Numerical {
                what: "training the flow".into(),
                reason: format!("every draw of step {step} has a non-finite log q - log p"),
            });
        }
        let nf = finite.len() as f64;
        let mean_loss = finite.iter().sum::<f64>() / nf;
        let log_w: Vec<f64> = losses.iter().map(|l| -l).collect();
        let ess = crate::exact::ess_fraction(&log_w);
        drop(flow);
        // Adam with a cosine decay of the rate to a tenth
        let progress = (step - 1) as f64 / opts.steps.max(2) as f64;
        let lr = opts.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
        let (c1, c2) = (1.0 - beta1.powi(step as i32), 1.0 - beta2.powi(step as i32));
        // the mean gradient, clipped to a norm of `clip` when asked
        let norm = grad.iter().map(|g| (g / nf) * (g / nf)).sum::<f64>().sqrt();
        let shrink = match opts.clip {
            Some(c) if norm > c => c / norm,
            _ => 1.0,
        };
        for ((p, g), (mi, vi)) in couplings
            .params
            .iter_mut()
            .zip(&grad)
            .zip(m.iter_mut().zip(v.iter_mut()))
        {
            let g = g / nf * shrink;
            *mi = beta1 * *mi + (1.0 - beta1) * g;
            *vi = beta2 * *vi + (1.0 - beta2) * g * g;
            *p -= lr * (*mi / c1) / ((*vi / c2).sqrt() + eps);
        }
        log.push(FlowStep {
            step,
            loss: mean_loss,
            ess_fraction: ess,
            non_finite,
        });
        monitor.progress(
            "training",
            step,
            opts.steps,
            &format!("KL - log Z {mean_loss:.3}, batch ESS/N {ess:.3}"),
        );
        if monitor.should_stop() {
            break;
        }
    }
    Ok(log)
}

impl crate::exact::Proposer for LocalFlow<'_> {
    fn dim(&self) -> usize {
        self.design.dim()
    }
    /// Proposals `first .. first + count` (proposal k from the prior draw of stream k of the
    /// seed, as every sampler's sample k) with their exact log q.
    fn propose(
        &self,
        seed: u64,
        first: u64,
        count: usize,
        observer: &mut dyn FnMut(StepInfo),
    ) -> Result<Proposals> {
        let d = self.dim();
        if count == 0 {
            return Err(Error::param("proposals", 0, "at least 1"));
        }
        if first.checked_add(count as u64).is_none() {
            return Err(Error::param("first", first, "first + count below 2^64"));
        }
        crate::memory::check_alloc(
            &format!("proposals = {count} of {d} values with their log q"),
            &[count, d + 1],
            8,
        )?;
        let mut fields = vec![0.0; count * d];
        let mut log_q = vec![0.0; count];
        const CHUNK: usize = 256;
        for (c, (f, lq)) in fields
            .chunks_mut(CHUNK * d)
            .zip(log_q.chunks_mut(CHUNK))
            .enumerate()
        {
            let start = first + (c * CHUNK) as u64;
            f.par_chunks_mut(d)
                .zip(lq.par_iter_mut())
                .enumerate()
                .for_each(|(k, (phi, l))| {
                    let mut z = vec![0.0; d];
                    let log_b = self.draw_input(&mut sample_rng(seed, start + k as u64), &mut z);
                    *l = self.sample_one(&z, log_b, phi);
                });
            observer(StepInfo {
                step: c,
                steps: count.div_ceil(CHUNK),
                t: 0.0,
                active: d,
                batch: lq.len(),
            });
        }
        // every coupling and RG step is injective by construction (positive factors)
        Ok(Proposals {
            fields,
            log_q,
            report: self.report(count),
            non_injective: 0,
        })
    }

    fn batch(&self) -> usize {
        // a batch is the unit of progress and stopping: about 2^20 site updates
        ((1 << 20) / (self.dim() * self.couplings_per_sample()).max(1)).clamp(16, 4096)
    }
    fn fields_only(&self, seed: u64, first: u64, count: usize) -> Option<Result<Vec<f64>>> {
        let d = self.dim();
        let mut fields = vec![0.0; count * d];
        fields.par_chunks_mut(d).enumerate().for_each(|(k, phi)| {
            let mut z = vec![0.0; d];
            self.draw_input(&mut sample_rng(seed, first + k as u64), &mut z);
            self.field_only(&z, phi);
        });
        Some(Ok(fields))
    }
}

/// `out = W2 tanh(W1 e + b1) + b2` of one block (`hid` keeps the hidden activations).
fn mlp(p: &[f64], sh: BlockShape, e: &[f64], hid: &mut [f64], out: &mut [f64]) {
    let (w1, rest) = p.split_at(sh.hidden * sh.inputs);
    let (b1, rest) = rest.split_at(sh.hidden);
    let (w2, b2) = rest.split_at(sh.outputs * sh.hidden);
    for (j, hj) in hid.iter_mut().enumerate() {
        let row = &w1[j * sh.inputs..(j + 1) * sh.inputs];
        *hj = (row.iter().zip(e).map(|(a, b)| a * b).sum::<f64>() + b1[j]).tanh();
    }
    for (k, ok) in out.iter_mut().enumerate() {
        let row = &w2[k * sh.hidden..(k + 1) * sh.hidden];
        *ok = row.iter().zip(hid.iter()).map(|(a, b)| a * b).sum::<f64>() + b2[k];
    }
}

#[cfg(test)]
mod tests;
