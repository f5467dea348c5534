//! The analytic base of SPEC section 4: per component either the Gaussian of variance Sigma_i
//! or a K-Gaussian mixture fitted to the data's marginal of that component.
//!
//! In a diagonal OU process each component's marginal evolves on its own: with
//! `p_0(c) = sum_k w_k N(c; m_k, v_k)`,
//!
//! ```text
//! p_t(chi) = sum_k w_k N(chi; alpha m_k, V_k),   V_k = alpha^2 v_k + sigma^2
//! eps(chi) = -sigma d/dchi log p_t = sigma sum_k r_k g_k,   g_k = (chi - alpha m_k) / V_k
//! d eps / d chi = sigma (E_r[1 / V] - Var_r(g))
//! ```
//!
//! with responsibilities `r_k = w_k N_k / p_t` (a softmax, computed in logs). K = 1 with m = 0
//! and v = Sigma is exactly the Gaussian base.

use crate::basis::Basis;
use crate::error::{Error, Result};
use crate::field::Shape;
use crate::process::NoisingState;
use crate::score::{gaussian_eps, gaussian_eps_derivative, ScoreModel};
use serde::{Deserialize, Serialize};

/// Iterations of EM at most, and its relative stopping tolerance on the mean log-likelihood.
const EM_MAX_ITERATIONS: usize = 1000;
const EM_TOLERANCE: f64 = 1e-10;
/// Variances are kept above this fraction of the data's variance (no collapse onto a point).
const EM_VARIANCE_FLOOR: f64 = 1e-6;

/// A one-dimensional Gaussian mixture `sum_k w_k N(m_k, v_k)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mixture1d {
    /// Weights pi_k.
    pub weights: Vec<f64>,
    /// Means m_k.
    pub means: Vec<f64>,
    /// Variances v_k.
    pub variances: Vec<f64>,
}

/// log sum_k exp(a_k), and the softmax of `a` written into `a`.
fn log_softmax_in_place(a: &mut [f64]) -> f64 {
    let max = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = a.iter().map(|v| (v - max).exp()).sum();
    for v in a.iter_mut() {
        *v = (*v - max).exp() / sum;
    }
    max + sum.ln()
}

impl Mixture1d {
    /// The single Gaussian N(0, v).
    pub fn gaussian(variance: f64) -> Self {
        Mixture1d {
            weights: vec![1.0],
            means: vec![0.0],
            variances: vec![variance],
        }
    }

    /// Number of mixture components K.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// True when the mixture has no component (never for a fitted one).
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Checks lengths, weights (positive, summing to 1) and variances (positive, finite).
    pub fn validate(&self, what: &str) -> Result<()> {
        let k = self.weights.len();
        let ok = k >= 1
            && self.means.len() == k
            && self.variances.len() == k
            && self.weights.iter().all(|w| w.is_finite() && *w > 0.0)
            && (self.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9
            && self.means.iter().all(|m| m.is_finite())
            && self.variances.iter().all(|v| v.is_finite() && *v > 0.0);
        if ok {
            Ok(())
        } else {
            Err(Error::param(
                what,
                format!("{self:?}"),
                "K >= 1 weights > 0 summing to 1, K finite means and K variances > 0",
            ))
        }
    }

    /// The per-k log terms `log w_k + log N(x; alpha m_k, V_k)` and `g_k = (x - alpha m_k) / V_k`
    /// under the forward process (alpha^2 = a2, sigma^2 = s2).
    fn terms(&self, x: f64, a2: f64, s2: f64, logs: &mut [f64], g: &mut [f64], inv_v: &mut [f64]) {
        let alpha = a2.sqrt();
        for k in 0..self.len() {
            let v = a2 * self.variances[k] + s2;
            let dx = x - alpha * self.means[k];
            logs[k] =
                self.weights[k].ln() - 0.5 * (std::f64::consts::TAU * v).ln() - dx * dx / (2.0 * v);
            g[k] = dx / v;
            inv_v[k] = 1.0 / v;
        }
    }

    /// `log p_t(x)` of the noised marginal (t = 0 with a2 = 1, s2 = 0).
    pub fn log_density(&self, x: f64, a2: f64, s2: f64) -> f64 {
        let k = self.len();
        let (mut logs, mut g, mut inv_v) = (vec![0.0; k], vec![0.0; k], vec![0.0; k]);
        self.terms(x, a2, s2, &mut logs, &mut g, &mut inv_v);
        log_softmax_in_place(&mut logs)
    }

    /// `eps = sigma sum_k r_k (x - alpha m_k) / V_k` and `d eps / dx = sigma (E_r[1/V] -
    /// Var_r(g))` of the noised marginal.
    pub fn eps_and_derivative(&self, x: f64, a2: f64, s2: f64) -> (f64, f64) {
        const STACK: usize = 8;
        let k = self.len();
        if k <= STACK {
            let (mut l, mut g, mut iv) = ([0.0; STACK], [0.0; STACK], [0.0; STACK]);
            self.moments(x, a2, s2, &mut l[..k], &mut g[..k], &mut iv[..k])
        } else {
            let (mut l, mut g, mut iv) = (vec![0.0; k], vec![0.0; k], vec![0.0; k]);
            self.moments(x, a2, s2, &mut l, &mut g, &mut iv)
        }
    }

    fn moments(
        &self,
        x: f64,
        a2: f64,
        s2: f64,
        r: &mut [f64],
        g: &mut [f64],
        iv: &mut [f64],
    ) -> (f64, f64) {
        self.terms(x, a2, s2, r, g, iv);
        log_softmax_in_place(r);
        let (mut mean_g, mut mean_g2, mut mean_iv) = (0.0, 0.0, 0.0);
        for k in 0..r.len() {
            mean_g += r[k] * g[k];
            mean_g2 += r[k] * g[k] * g[k];
            mean_iv += r[k] * iv[k];
        }
        let sigma = s2.sqrt();
        (
            sigma * mean_g,
            sigma * (mean_iv - (mean_g2 - mean_g * mean_g)),
        )
    }

    /// Maximum-likelihood fit of K components by EM. Initialised deterministically from the
    /// sorted data (K equal blocks: their means, variances and weights 1/K), so the fit is a
    /// function of the data alone. `symmetric` fits `p(x) = p(-x)`: components in pairs (+m,
    /// -m) of equal weight and variance (and one at m = 0 when K is odd), with the exact
    /// constrained M-step. K = 1 gives the sample mean (0 when symmetric) and variance.
    pub fn fit(values: &[f64], k: usize, symmetric: bool) -> Result<Self> {
        let n = values.len();
        if k == 0 {
            return Err(Error::param("base.components", k, "at least 1"));
        }
        if k > n {
            return Err(Error::param(
                "base.components",
                k,
                &format!("at most the number of training samples ({n})"),
            ));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::Numerical {
                what: "the mixture fit".into(),
                reason: "non-finite data".into(),
            });
        }
        let mut mix = Self::initial(values, k, symmetric);
        let total_var = mix
            .variances
            .iter()
            .zip(&mix.weights)
            .map(|(v, w)| v * w)
            .sum::<f64>()
            .max(f64::MIN_POSITIVE);
        let floor = EM_VARIANCE_FLOOR * total_var;
        let mut resp = vec![0.0; n * k];
        let mut last = f64::NEG_INFINITY;
        for _ in 0..EM_MAX_ITERATIONS {
            let ll = mix.e_step(values, &mut resp);
            mix.m_step(values, &resp, symmetric, floor);
            if (ll - last).abs() <= EM_TOLERANCE * ll.abs().max(1.0) {
                break;
            }
            last = ll;
        }
        mix.validate("base (fitted mixture)")?;
        Ok(mix)
    }

    /// K equal blocks of the sorted data (of |x| mirrored, when symmetric).
    fn initial(values: &[f64], k: usize, symmetric: bool) -> Self {
        let mut sorted: Vec<f64> = if symmetric {
            values.iter().flat_map(|&v| [v, -v]).collect()
        } else {
            values.to_vec()
        };
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mut mix = Mixture1d {
            weights: Vec::with_capacity(k),
            means: Vec::with_capacity(k),
            variances: Vec::with_capacity(k),
        };
        for j in 0..k {
            let block = &sorted[j * n / k..((j + 1) * n / k).max(j * n / k + 1)];
            let m = block.iter().sum::<f64>() / block.len() as f64;
            let v = block.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / block.len() as f64;
            mix.weights.push(1.0 / k as f64);
            mix.means.push(m);
            mix.variances.push(v);
        }
        // blocks of the whole data give the spread; a block of equal values gets the overall one
        let overall = sorted.iter().map(|x| x * x).sum::<f64>() / n as f64;
        for v in &mut mix.variances {
            if *v <= 0.0 {
                *v = overall.max(f64::MIN_POSITIVE);
            }
        }
        if symmetric {
            mix.symmetrise();
        }
        mix
    }

    /// Responsibilities (n, K) and the mean log-likelihood.
    fn e_step(&self, values: &[f64], resp: &mut [f64]) -> f64 {
        let k = self.len();
        let (mut g, mut iv) = (vec![0.0; k], vec![0.0; k]);
        let mut ll = 0.0;
        for (x, r) in values.iter().zip(resp.chunks_exact_mut(k)) {
            self.terms(*x, 1.0, 0.0, r, &mut g, &mut iv);
            ll += log_softmax_in_place(r);
        }
        ll / values.len() as f64
    }

    fn m_step(&mut self, values: &[f64], resp: &[f64], symmetric: bool, floor: f64) {
        let k = self.len();
        let n = values.len() as f64;
        let mut nk = vec![0.0; k];
        let mut sx = vec![0.0; k];
        for (x, r) in values.iter().zip(resp.chunks_exact(k)) {
            for j in 0..k {
                nk[j] += r[j];
                sx[j] += r[j] * x;
            }
        }
        // pair j with its mirror K-1-j: one mean +-m, one variance, one weight
        let partner = |j: usize| if symmetric { k - 1 - j } else { j };
        let mut means = vec![0.0; k];
        for j in 0..k {
            let p = partner(j);
            means[j] = if p == j {
                if symmetric {
                    0.0
                } else {
                    sx[j] / nk[j].max(f64::MIN_POSITIVE)
                }
            } else {
                (sx[j] - sx[p]) / (nk[j] + nk[p]).max(f64::MIN_POSITIVE)
            };
        }
        let mut sq = vec![0.0; k];
        for (x, r) in values.iter().zip(resp.chunks_exact(k)) {
            for j in 0..k {
                sq[j] += r[j] * (x - means[j]) * (x - means[j]);
            }
        }
        for j in 0..k {
            let p = partner(j);
            let (count, ss) = if p == j {
                (nk[j], sq[j])
            } else {
                (nk[j] + nk[p], sq[j] + sq[p])
            };
            let share = if p == j { 1.0 } else { 2.0 };
            self.means[j] = means[j];
            self.variances[j] = (ss / count.max(f64::MIN_POSITIVE)).max(floor);
            self.weights[j] = (count / (share * n)).max(1e-300);
        }
        let total: f64 = self.weights.iter().sum();
        self.weights.iter_mut().for_each(|w| *w /= total);
    }

    /// Pairs (j, K-1-j) made exact mirrors (means -m, +m; shared variance and weight).
    fn symmetrise(&mut self) {
        let k = self.len();
        for j in 0..k.div_ceil(2) {
            let p = k - 1 - j;
            let m = 0.5 * (self.means[p] - self.means[j]);
            let v = 0.5 * (self.variances[j] + self.variances[p]);
            let w = 0.5 * (self.weights[j] + self.weights[p]);
            (self.means[j], self.means[p]) = if p == j { (0.0, 0.0) } else { (-m, m) };
            (self.variances[j], self.variances[p]) = (v, v);
            (self.weights[j], self.weights[p]) = (w, w);
        }
        let total: f64 = self.weights.iter().sum();
        self.weights.iter_mut().for_each(|w| *w /= total);
    }
}

/// The analytic base of every component: a fitted mixture where one was chosen, the Gaussian
/// of variance Sigma_i elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticBase {
    sigma_data: Vec<f64>,
    mixtures: Vec<Option<Mixture1d>>,
}

impl AnalyticBase {
    /// The Gaussian base of SPEC section 4 for component variances Sigma_i.
    pub fn gaussian(sigma_data: Vec<f64>) -> Self {
        let d = sigma_data.len();
        AnalyticBase {
            sigma_data,
            mixtures: vec![None; d],
        }
    }

    /// The Gaussian base with the listed (component, mixture) pairs in place of it.
    pub fn with_mixtures(sigma_data: Vec<f64>, mixtures: Vec<(usize, Mixture1d)>) -> Result<Self> {
        let mut base = Self::gaussian(sigma_data);
        let d = base.dim();
        for (i, m) in mixtures {
            if i >= d {
                return Err(Error::param(
                    "base.fitted.component",
                    i,
                    &format!("a component index below {d}"),
                ));
            }
            m.validate("base.fitted")?;
            base.mixtures[i] = Some(m);
        }
        Ok(base)
    }

    /// Number of components d.
    pub fn dim(&self) -> usize {
        self.sigma_data.len()
    }

    /// The mixture of component i, if it has one.
    pub fn mixture(&self, i: usize) -> Option<&Mixture1d> {
        self.mixtures[i].as_ref()
    }

    /// The components with a mixture, in order.
    pub fn mixture_components(&self) -> impl Iterator<Item = (usize, &Mixture1d)> {
        self.mixtures
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (i, m)))
    }

    /// True when every component has the Gaussian base.
    pub fn is_gaussian(&self) -> bool {
        self.mixtures.iter().all(Option::is_none)
    }

    /// The base eps of component i at chi (alpha^2 = a2, sigma^2 = s2).
    #[inline]
    pub fn eps(&self, i: usize, chi: f64, a2: f64, s2: f64) -> f64 {
        match &self.mixtures[i] {
            None => gaussian_eps(chi, a2, s2, self.sigma_data[i]),
            Some(m) => m.eps_and_derivative(chi, a2, s2).0,
        }
    }

    /// d eps_i / d chi_i of the base (its Jacobian is diagonal).
    #[inline]
    pub fn eps_derivative(&self, i: usize, chi: f64, a2: f64, s2: f64) -> f64 {
        match &self.mixtures[i] {
            None => gaussian_eps_derivative(a2, s2, self.sigma_data[i]),
            Some(m) => m.eps_and_derivative(chi, a2, s2).1,
        }
    }

    /// The base eps of one sample (d values).
    pub fn eps_row(&self, chi_t: &[f64], state: &NoisingState, out: &mut [f64]) {
        let (a2, s2) = (state.alpha_sq(), state.sigma_sq());
        for i in 0..chi_t.len() {
            out[i] = self.eps(i, chi_t[i], a2[i], s2[i]);
        }
    }
}

/// The analytic base alone as a score model (`score = { kind = "mixture" }`).
#[derive(Debug, Clone)]
pub struct MixtureScore {
    base: AnalyticBase,
}

impl MixtureScore {
    /// The score model of `base`.
    pub fn new(base: AnalyticBase) -> Self {
        MixtureScore { base }
    }
}

impl ScoreModel for MixtureScore {
    fn name(&self) -> &'static str {
        "mixture"
    }
    fn dim(&self) -> usize {
        self.base.dim()
    }
    fn eps_hat(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        active: Option<&[usize]>,
        eps_hat: &mut [f64],
    ) {
        let d = self.dim();
        let (a2, s2) = (state.alpha_sq(), state.sigma_sq());
        for (x, e) in chi_t.chunks_exact(d).zip(eps_hat.chunks_exact_mut(d)) {
            for i in crate::score::active_or_all(active, d) {
                e[i] = self.base.eps(i, x[i], a2[i], s2[i]);
            }
        }
    }

    /// Exact: the Jacobian is diagonal, `d eps_i / d chi_i` of each component's base.
    fn eps_jacobian(
        &self,
        chi_t: &[f64],
        state: &NoisingState,
        eps_hat: &mut [f64],
        jac: &mut [f64],
    ) {
        let d = self.dim();
        let (a2, s2) = (state.alpha_sq(), state.sigma_sq());
        jac.fill(0.0);
        for ((x, e), j) in chi_t
            .chunks_exact(d)
            .zip(eps_hat.chunks_exact_mut(d))
            .zip(jac.chunks_exact_mut(d * d))
        {
            for i in 0..d {
                e[i] = self.base.eps(i, x[i], a2[i], s2[i]);
                j[i * d + i] = self.base.eps_derivative(i, x[i], a2[i], s2[i]);
            }
        }
    }

    /// Exact: the Jacobian is diagonal, `q_b = sum_i u_i v_i d eps_i / d chi_i`.
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
        let (a2, s2) = (state.alpha_sq(), state.sigma_sq());
        for (b, qb) in q.iter_mut().enumerate() {
            let r = b * d..(b + 1) * d;
            *qb = 0.0;
            for i in 0..d {
                let j = r.start + i;
                eps_hat[j] = self.base.eps(i, chi_t[j], a2[i], s2[i]);
                *qb += u[j] * v[j] * self.base.eps_derivative(i, chi_t[j], a2[i], s2[i]);
            }
        }
    }
}

/// The constant component of each channel: the component that a field constant in channel c
/// (and zero elsewhere) maps to. An error when the basis has none (e.g. `pixel`).
pub fn zero_modes(basis: &dyn Basis, shape: Shape) -> Result<Vec<usize>> {
    let plane = shape.h * shape.w;
    let (mut field, mut comp) = (vec![0.0; shape.dim()], vec![0.0; shape.dim()]);
    let mut modes = Vec::with_capacity(shape.c);
    for c in 0..shape.c {
        field.iter_mut().for_each(|v| *v = 0.0);
        field[c * plane..(c + 1) * plane]
            .iter_mut()
            .for_each(|v| *v = 1.0 / (plane as f64).sqrt());
        basis.forward(&field, &mut comp);
        let (i, v) = comp
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .expect("d >= 1");
        if v.abs() < 1.0 - 1e-9 {
            return Err(Error::param(
                "base.modes",
                "\"zero\"",
                &format!(
                    "a basis with a constant (zero-momentum) component, which `{}` has not: \
                     choose modes = \"all\" or a number of components",
                    basis.name()
                ),
            ));
        }
        modes.push(i);
    }
    Ok(modes)
}

/// Excess kurtosis `E[x^4] / E[x^2]^2 - 3` of each column of `chi` (n, d) about its mean.
fn excess_kurtosis(chi: &[f64], d: usize) -> Vec<f64> {
    let n = (chi.len() / d) as f64;
    (0..d)
        .map(|i| {
            let m = chi.iter().skip(i).step_by(d).sum::<f64>() / n;
            let (m2, m4) = chi.iter().skip(i).step_by(d).fold((0.0, 0.0), |(a, b), x| {
                let y = (x - m) * (x - m);
                (a + y / n, b + y * y / n)
            });
            if m2 > 0.0 {
                m4 / (m2 * m2) - 3.0
            } else {
                0.0
            }
        })
        .collect()
}

/// Fits the base of `config` to the whitened training data `chi` (n, d): the chosen components'
/// mixtures by EM (symmetric when `symmetric`), or the config's `fitted` ones when it has them.
/// Returns the base and the config with the fitted mixtures filled in.
pub fn fit_base(
    config: &BaseConfig,
    basis: &dyn Basis,
    shape: Shape,
    sigma_data: &[f64],
    chi: &[f64],
    symmetric: bool,
) -> Result<(AnalyticBase, BaseConfig)> {
    let d = sigma_data.len();
    let BaseConfig::Mixture(m) = config else {
        return Ok((AnalyticBase::gaussian(sigma_data.to_vec()), config.clone()));
    };
    let fitted: Vec<(usize, Mixture1d)> = if !m.fitted.is_empty() {
        m.fitted
            .iter()
            .map(|f| {
                if f.weights.len() != m.components {
                    return Err(Error::param(
                        "base.fitted",
                        format!("{} weights", f.weights.len()),
                        &format!("base.components = {} per fitted component", m.components),
                    ));
                }
                let mix = Mixture1d {
                    weights: f.weights.clone(),
                    means: f.means.clone(),
                    variances: f.variances.clone(),
                };
                Ok((f.component, mix))
            })
            .collect::<Result<_>>()?
    } else {
        let modes = match m.modes {
            MixtureModes::Named(ModeSet::Zero) => zero_modes(basis, shape)?,
            MixtureModes::Named(ModeSet::All) => (0..d).collect(),
            MixtureModes::Count(k) if (1..=d).contains(&k) => {
                let kurt = excess_kurtosis(chi, d);
                let mut order: Vec<usize> = (0..d).collect();
                order.sort_by(|a, b| kurt[*b].abs().total_cmp(&kurt[*a].abs()));
                let mut chosen = order[..k].to_vec();
                chosen.sort_unstable();
                chosen
            }
            MixtureModes::Count(k) => {
                return Err(Error::param(
                    "base.modes",
                    k,
                    &format!("\"zero\", \"all\" or a number of components in 1..={d}"),
                ))
            }
        };
        modes
            .into_iter()
            .map(|i| {
                let column: Vec<f64> = chi.iter().skip(i).step_by(d).copied().collect();
                Ok((i, Mixture1d::fit(&column, m.components, symmetric)?))
            })
            .collect::<Result<_>>()?
    };
    let resolved = BaseConfig::Mixture(MixtureConfig {
        fitted: fitted
            .iter()
            .map(|(i, mix)| FittedMixture {
                component: *i,
                weights: mix.weights.clone(),
                means: mix.means.clone(),
                variances: mix.variances.clone(),
            })
            .collect(),
        ..m.clone()
    });
    Ok((
        AnalyticBase::with_mixtures(sigma_data.to_vec(), fitted)?,
        resolved,
    ))
}

/// Which components get a mixture base: the zero mode(s), all, or the N of largest |excess
/// kurtosis| of the whitened data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MixtureModes {
    /// The N components of largest |excess kurtosis|.
    Count(usize),
    /// `"zero"` or `"all"`.
    Named(ModeSet),
}

/// The named sets of [`MixtureModes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeSet {
    /// The constant (zero-momentum) component of each channel: the magnetisation of a lattice.
    Zero,
    /// Every component.
    All,
}

/// A fitted mixture of one component (written into the resolved config, so that a run
/// reproduces its base without refitting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FittedMixture {
    /// The component.
    pub component: usize,
    /// Weights pi_k.
    pub weights: Vec<f64>,
    /// Means m_k.
    pub means: Vec<f64>,
    /// Variances v_k.
    pub variances: Vec<f64>,
}

/// A K-Gaussian mixture base for the chosen components (SPEC section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixtureConfig {
    /// K, the Gaussians per component (K = 1 is the Gaussian base, refitted).
    pub components: usize,
    /// Which components get a mixture.
    pub modes: MixtureModes,
    /// The fitted mixtures; fitted by EM (maximum likelihood) when absent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fitted: Vec<FittedMixture>,
}

impl Default for MixtureConfig {
    fn default() -> Self {
        MixtureConfig {
            components: 2,
            modes: MixtureModes::Named(ModeSet::Zero),
            fitted: Vec::new(),
        }
    }
}

/// The analytic base that the `neural` score adds its correction to (SPEC section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BaseConfig {
    /// eps_i = sigma_i chi_i / (alpha_i^2 Sigma_i + sigma_i^2) for every component.
    Gaussian {},
    /// A fitted K-Gaussian mixture for the chosen components, Gaussian elsewhere.
    Mixture(MixtureConfig),
}

impl Default for BaseConfig {
    fn default() -> Self {
        BaseConfig::Gaussian {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::basis::FourierBasis;
    use crate::config::{DesignConfig, MeanMode, PriorConfig, SamplerConfig, SamplerKind};
    use crate::field::Dataset;
    use crate::sampler::{generate, Plan};
    use crate::testutil::gaussian_vec;

    /// (alpha^2, sigma^2) over gamma from -30 to 30.
    fn states() -> Vec<(f64, f64)> {
        (-30..=30)
            .map(|g| {
                let g = g as f64;
                (1.0 / (1.0 + g.exp()), 1.0 / (1.0 + (-g).exp()))
            })
            .collect()
    }

    #[test]
    fn one_component_at_zero_with_variance_sigma_is_exactly_the_gaussian_base() {
        for sigma_data in [0.3, 1.0, 4.7] {
            let m = Mixture1d::gaussian(sigma_data);
            for (a2, s2) in states() {
                for x in [-3.0, -0.4, 0.0, 1.1, 5.0] {
                    let (e, de) = m.eps_and_derivative(x, a2, s2);
                    let g = gaussian_eps(x, a2, s2, sigma_data);
                    let dg = gaussian_eps_derivative(a2, s2, sigma_data);
                    assert!(
                        (e - g).abs() <= 1e-12 * (1.0 + g.abs()),
                        "{e} vs {g} (a2 {a2})"
                    );
                    assert!((de - dg).abs() <= 1e-12 * (1.0 + dg.abs()), "{de} vs {dg}");
                }
            }
        }
    }

    fn two_gaussians() -> Mixture1d {
        Mixture1d {
            weights: vec![0.3, 0.7],
            means: vec![-1.5, 0.8],
            variances: vec![0.2, 0.5],
        }
    }

    #[test]
    fn the_mixture_eps_is_minus_sigma_times_the_gradient_of_the_noised_marginal() {
        let m = two_gaussians();
        // the closed form p_t, written out independently of the code under test
        let log_p = |x: f64, a2: f64, s2: f64| -> f64 {
            let a = a2.sqrt();
            let n = |w: f64, mu: f64, v: f64| {
                let v = a2 * v + s2;
                w * (-(x - a * mu).powi(2) / (2.0 * v)).exp() / (std::f64::consts::TAU * v).sqrt()
            };
            (n(0.3, -1.5, 0.2) + n(0.7, 0.8, 0.5)).ln()
        };
        let h = 1e-5;
        for (a2, s2) in states().into_iter().step_by(3) {
            for x in [-2.5, -1.0, -0.2, 0.4, 1.7] {
                assert!((m.log_density(x, a2, s2) - log_p(x, a2, s2)).abs() < 1e-10);
                let fd = (log_p(x + h, a2, s2) - log_p(x - h, a2, s2)) / (2.0 * h);
                let (eps, de) = m.eps_and_derivative(x, a2, s2);
                let want = -s2.sqrt() * fd;
                assert!(
                    (eps - want).abs() < 1e-6 * (1.0 + want.abs()),
                    "{eps} vs {want}"
                );
                // the divergence: d eps / dx against differences of eps
                let fd_e = (m.eps_and_derivative(x + h, a2, s2).0
                    - m.eps_and_derivative(x - h, a2, s2).0)
                    / (2.0 * h);
                assert!(
                    (de - fd_e).abs() < 1e-5 * (1.0 + fd_e.abs()),
                    "{de} vs {fd_e}"
                );
            }
        }
    }

    /// n draws of `m` from a fixed seed: a uniform picks the component, a normal its value.
    fn draw(m: &Mixture1d, n: usize, seed: u64) -> Vec<f64> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let z = gaussian_vec(n, seed + 1000);
        z.iter()
            .map(|zi| {
                let u: f64 = rng.random();
                let mut acc = 0.0;
                let mut k = m.len() - 1;
                for (j, w) in m.weights.iter().enumerate() {
                    acc += w;
                    if u < acc {
                        k = j;
                        break;
                    }
                }
                m.means[k] + m.variances[k].sqrt() * zi
            })
            .collect()
    }

    #[test]
    fn em_recovers_a_known_mixture_within_four_standard_errors() {
        // well separated (5 standard deviations), so the complete-data errors apply:
        // se(w) = sqrt(w (1 - w) / n), se(m_k) = sqrt(v_k / (n w_k)), se(v_k) = v_k sqrt(2 / (n w_k))
        let truth = Mixture1d {
            weights: vec![0.35, 0.65],
            means: vec![-2.0, 1.5],
            variances: vec![0.25, 0.4],
        };
        let n = 20000;
        let x = draw(&truth, n, 11);
        let fit = Mixture1d::fit(&x, 2, false).unwrap();
        let nf = n as f64;
        for k in 0..2 {
            let (w, m, v) = (truth.weights[k], truth.means[k], truth.variances[k]);
            let se_w = (w * (1.0 - w) / nf).sqrt();
            let se_m = (v / (nf * w)).sqrt();
            let se_v = v * (2.0 / (nf * w)).sqrt();
            assert!((fit.weights[k] - w).abs() < 4.0 * se_w, "{fit:?}");
            assert!((fit.means[k] - m).abs() < 4.0 * se_m, "{fit:?}");
            assert!((fit.variances[k] - v).abs() < 4.0 * se_v, "{fit:?}");
        }
    }

    #[test]
    fn the_symmetric_fit_is_an_exact_mirror_and_fits_a_symmetric_mixture() {
        let truth = Mixture1d {
            weights: vec![0.5, 0.5],
            means: vec![-1.2, 1.2],
            variances: vec![0.3, 0.3],
        };
        let n = 20000;
        let x = draw(&truth, n, 5);
        for k in [2, 3] {
            let fit = Mixture1d::fit(&x, k, true).unwrap();
            for j in 0..k {
                let p = k - 1 - j;
                assert_eq!(fit.means[j], -fit.means[p], "{fit:?}");
                assert_eq!(fit.variances[j], fit.variances[p]);
                assert_eq!(fit.weights[j], fit.weights[p]);
            }
        }
        let fit = Mixture1d::fit(&x, 2, true).unwrap();
        // a symmetric pair: each of the 2n mirrored points carries one of the two means
        let se_m = (0.3 / n as f64).sqrt();
        assert!((fit.means[1] - 1.2).abs() < 4.0 * se_m, "{fit:?}");
        let one = Mixture1d::fit(&x, 1, true).unwrap();
        let m2 = x.iter().map(|v| v * v).sum::<f64>() / n as f64;
        assert_eq!(one.means, vec![0.0]);
        assert!((one.variances[0] - m2).abs() < 1e-12 * m2);
    }

    #[test]
    fn bad_settings_name_their_key() {
        let x = [0.1, -0.3, 0.7];
        let e = Mixture1d::fit(&x, 0, false).unwrap_err().to_string();
        assert!(
            e.contains("base.components") && e.contains("at least 1"),
            "{e}"
        );
        let e = Mixture1d::fit(&x, 4, false).unwrap_err().to_string();
        assert!(e.contains("base.components") && e.contains("(3)"), "{e}");
        let e = AnalyticBase::with_mixtures(vec![1.0; 4], vec![(4, Mixture1d::gaussian(1.0))])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("base.fitted.component") && e.contains("below 4"),
            "{e}"
        );
        let shape = Shape::lattice(2);
        let basis = crate::basis::PixelBasis::new(shape);
        let e = zero_modes(&basis, shape).unwrap_err().to_string();
        assert!(e.contains("base.modes") && e.contains("pixel"), "{e}");
        let cfg = BaseConfig::Mixture(MixtureConfig {
            modes: MixtureModes::Count(5),
            ..MixtureConfig::default()
        });
        let chi = gaussian_vec(40, 1);
        let e = fit_base(&cfg, &basis, shape, &[1.0; 4], &chi, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("base.modes") && e.contains("1..=4"), "{e}");
    }

    /// 4 x 4 fields whose zero mode (fourier component of k = 0) is a two-Gaussian mixture and
    /// every other component a standard normal.
    fn bimodal_zero_mode(n: usize, seed: u64) -> (Dataset, Mixture1d) {
        let shape = Shape::lattice(4);
        let basis = FourierBasis::new(shape);
        let zero = zero_modes(&basis, shape).unwrap()[0];
        // platykurtic (kurtosis 2.1), the regime of the phi^4 magnetisation (2.84); a strongly
        // bimodal mixture (+-1.6, v = 0.2) needs more steps of `exp`: E[x^4] z = -4.2 at 5
        // steps, -0.9 at 10 and 0.1 at 40 (measured with this test's seeds)
        let truth = Mixture1d {
            weights: vec![0.5, 0.5],
            means: vec![-1.0, 1.0],
            variances: vec![0.5, 0.5],
        };
        let m0 = draw(&truth, n, seed);
        let z = gaussian_vec(n * 16, seed + 1);
        let mut data = vec![0.0; n * 16];
        for (k, (row, out)) in z
            .chunks_exact(16)
            .zip(data.chunks_exact_mut(16))
            .enumerate()
        {
            let mut chi = row.to_vec();
            chi[zero] = m0[k];
            basis.inverse(&chi, out);
        }
        (Dataset::new(shape, data).unwrap(), truth)
    }

    #[test]
    fn the_design_fits_the_zero_modes_mixture_and_its_resolved_config_reproduces_it() {
        let (data, _) = bimodal_zero_mode(4000, 3);
        let cfg = DesignConfig {
            mean: MeanMode::Zero,
            prior: PriorConfig::White {},
            base: BaseConfig::Mixture(MixtureConfig::default()),
            ..DesignConfig::default()
        };
        let design = crate::Design::fit(&cfg, &data).unwrap();
        let zero = zero_modes(design.basis(), design.shape()).unwrap()[0];
        let fitted: Vec<usize> = design.base().mixture_components().map(|(i, _)| i).collect();
        assert_eq!(fitted, vec![zero]);
        let again = crate::Design::fit(design.resolved_config(), &data).unwrap();
        assert_eq!(
            again.base(),
            design.base(),
            "the resolved config reproduces the base"
        );
        // the default design keeps the Gaussian base
        let plain = crate::Design::fit(&DesignConfig::default(), &data).unwrap();
        assert!(plain.base().is_gaussian());
    }

    #[test]
    fn sampling_the_mixture_base_reproduces_the_mixtures_moments_at_5_steps() {
        let (data, truth) = bimodal_zero_mode(4000, 3);
        let cfg = DesignConfig {
            mean: MeanMode::Zero,
            prior: PriorConfig::White {},
            base: BaseConfig::Mixture(MixtureConfig::default()),
            ..DesignConfig::default()
        };
        let design = crate::Design::fit(&cfg, &data).unwrap();
        let zero = zero_modes(design.basis(), design.shape()).unwrap()[0];
        let score = MixtureScore::new(design.base().clone());
        let sampler = SamplerConfig {
            kind: SamplerKind::Exp,
            steps: 5,
            ..SamplerConfig::default()
        };
        let plan = Plan::new(
            design.schedule(),
            design.sigma_data(),
            sampler.steps,
            sampler.grid,
            None,
        )
        .unwrap();
        let n = 4000;
        let (chi, _) = generate(&plan, &score, &sampler, 9, 0, n, &mut |_| {}).unwrap();
        // back to the data's units of the zero mode: chi_tilde = S chi
        let s = design.scale()[zero];
        let x: Vec<f64> = chi.chunks_exact(16).map(|r| s * r[zero]).collect();
        // the mixture's E[x^2] and E[x^4] with the errors of their sample means
        let m2_true: f64 = truth
            .means
            .iter()
            .zip(&truth.variances)
            .zip(&truth.weights)
            .map(|((m, v), w)| w * (m * m + v))
            .sum();
        let m4_true: f64 = truth
            .means
            .iter()
            .zip(&truth.variances)
            .zip(&truth.weights)
            .map(|((m, v), w)| w * (m.powi(4) + 6.0 * m * m * v + 3.0 * v * v))
            .sum();
        for (p, want) in [(2, m2_true), (4, m4_true)] {
            let vals: Vec<f64> = x.iter().map(|v| v.powi(p)).collect();
            let mean = vals.iter().sum::<f64>() / n as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            // the fit's own error: the training set's sample moment against the truth
            let train: Vec<f64> = data
                .samples()
                .map(|f| {
                    let c = design.to_comp(&crate::Field(f.to_vec())).unwrap();
                    c.0[zero].powi(p)
                })
                .collect();
            let t_mean = train.iter().sum::<f64>() / train.len() as f64;
            let t_var =
                train.iter().map(|v| (v - t_mean).powi(2)).sum::<f64>() / (train.len() - 1) as f64;
            let se = (var / n as f64 + t_var / train.len() as f64).sqrt();
            assert!(
                (mean - want).abs() < 4.0 * se,
                "E[x^{p}] = {mean} vs {want} (se {se})"
            );
        }
    }

    #[test]
    fn the_mixture_scores_divergence_is_exact() {
        let (data, _) = bimodal_zero_mode(500, 4);
        let cfg = DesignConfig {
            mean: MeanMode::Zero,
            base: BaseConfig::Mixture(MixtureConfig {
                modes: MixtureModes::Named(ModeSet::All),
                ..MixtureConfig::default()
            }),
            ..DesignConfig::default()
        };
        let design = crate::Design::fit(&cfg, &data).unwrap();
        let score = MixtureScore::new(design.base().clone());
        let st = design.state(0.4);
        let (chi, u, v) = (
            gaussian_vec(32, 1),
            gaussian_vec(32, 2),
            gaussian_vec(32, 3),
        );
        let (mut eps, mut q) = (vec![0.0; 32], vec![0.0; 2]);
        score.jacobian_form(&chi, &st, &u, &v, &mut eps, &mut q);
        let mut direct = vec![0.0; 32];
        score.eps_hat(&chi, &st, None, &mut direct);
        assert_eq!(eps, direct);
        // against the trait's default: central differences along v
        struct Fd<'a>(&'a MixtureScore);
        impl ScoreModel for Fd<'_> {
            fn name(&self) -> &'static str {
                "fd"
            }
            fn dim(&self) -> usize {
                self.0.dim()
            }
            fn eps_hat(&self, c: &[f64], s: &NoisingState, a: Option<&[usize]>, e: &mut [f64]) {
                self.0.eps_hat(c, s, a, e)
            }
        }
        let mut q_fd = vec![0.0; 2];
        Fd(&score).jacobian_form(&chi, &st, &u, &v, &mut eps, &mut q_fd);
        for b in 0..2 {
            assert!(
                (q[b] - q_fd[b]).abs() < 1e-6 * (1.0 + q[b].abs()),
                "{q:?} vs {q_fd:?}"
            );
        }
    }
}
