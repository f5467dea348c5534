//! Hybrid Monte Carlo for lattice phi^4 (SPEC section 7): Gaussian momenta, leapfrog
//! integration of H = p^2/2 + `S[phi]` with a jittered step size, Metropolis accept/reject on
//! exp(-dH). Many independent
//! chains run in parallel, in interleaved blocks of 8 (SIMD over chains); chain c uses
//! Xoshiro256++ seeded from the seed and advanced by c jumps of 2^128 (a fast normal source:
//! drawing momenta is a fifth of the work).
//!
//! Protocol: (1) tuning: the common step size is adapted towards the target acceptance;
//! (2) pilot: the integrated autocorrelation times of |M| and S are measured on all chains;
//! (3) thermalisation is extended to at least 20 tau_int and the separation between saved
//! configurations set to ceil(2 tau_int) trajectories (both overridable); (4) production.

use crate::action::{Lattice, LANES};
use crate::stats::{tau_int, TauInt};
use crate::{invalid, Phi4Error, Result};
use gud_core::monitor::{Monitor, Silent};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus as ChainRng;
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

/// HMC settings; `None` means chosen by the protocol.
#[derive(Debug, Clone, PartialEq)]
/// The settings of an HMC run.
pub struct HmcConfig {
    /// Independent chains run in parallel.
    pub chains: usize,
    /// Leapfrog steps per trajectory.
    pub leapfrog_steps: usize,
    /// Acceptance rate the step-size tuning aims at.
    pub target_acceptance: f64,
    /// Leapfrog step size before tuning.
    pub initial_step_size: f64,
    /// Trajectories of step-size tuning.
    pub tune: usize,
    /// Trajectories of the autocorrelation pilot.
    pub pilot: usize,
    /// Total thermalisation trajectories (tuning and pilot included); automatic when None.
    pub therm: Option<usize>,
    /// Trajectories between saved configurations; automatic when None.
    pub sep: Option<usize>,
    /// Seed (chain k uses stream k).
    pub seed: u64,
}

impl Default for HmcConfig {
    fn default() -> Self {
        HmcConfig {
            chains: 64,
            leapfrog_steps: 10,
            target_acceptance: 0.8,
            initial_step_size: 0.1,
            tune: 100,
            pilot: 200,
            therm: None,
            sep: None,
            seed: 0,
        }
    }
}

/// What a run did, printed as its JSON summary.
#[derive(Debug, Clone, Serialize)]
pub struct HmcSummary {
    /// Lattice size L.
    pub l: usize,
    /// m^2 of the action.
    pub m2: f64,
    /// lambda of the action.
    pub lam: f64,
    /// Configurations saved.
    pub samples: usize,
    /// Chains.
    pub chains: usize,
    /// Seed.
    pub seed: u64,
    /// Leapfrog steps per trajectory.
    pub leapfrog_steps: usize,
    /// The tuned step size.
    pub step_size: f64,
    /// Acceptance rate over production trajectories.
    pub acceptance: f64,
    /// Thermalisation trajectories per chain.
    pub therm: usize,
    /// Trajectories between saved configurations.
    pub sep: usize,
    /// tau_int of |M| in trajectories, measured on every production trajectory.
    pub tau_int_abs_m_trajectories: TauInt,
    /// tau_int of the action in trajectories.
    pub tau_int_action_trajectories: TauInt,
    /// tau_int of |M| in saved configurations (each chain's saved series): the unit of
    /// `gud phi4 observe` and of the jackknife bins.
    pub tau_int_abs_m_saved: TauInt,
    /// tau_int of |M| in trajectories measured by the pilot (what chose therm and sep).
    pub pilot_tau_int_trajectories: f64,
    /// All trajectories of a chain.
    pub trajectories_per_chain: usize,
    /// Seconds.
    pub wall_s: f64,
    /// Leapfrog steps x sites x chains per second.
    pub site_updates_per_s: f64,
}

/// The samples (N x L x L, chain-major: chain 0's configurations in order, then chain 1's...)
/// and the summary.
#[derive(Debug, Clone)]
pub struct HmcRun {
    /// The configurations, (N, L, L) chain-major.
    pub configs: Vec<f64>,
    /// What the run did.
    pub summary: HmcSummary,
}

/// LANES chains advanced together: fields interleaved site-major (`phi[x * LANES + k]` is site
/// x of lane k), so that every kernel runs over lanes in SIMD. Lane k of block j is chain
/// j * LANES + k and draws from its own stream in exactly the order a lone chain would
/// (jitter, momenta in site order, accept uniform). Lanes past the requested number of chains
/// run on streams of their own and are never recorded.
struct Block {
    phi: Vec<f64>,
    q: Vec<f64>,
    mom: Vec<f64>,
    /// S[phi] of each lane's current state (kept from the last trajectory).
    action: [f64; LANES],
    rngs: Vec<ChainRng>,
    /// Lanes that are real chains.
    active: usize,
    accepted: [usize; LANES],
    trajectories: usize,
}

/// The streams of `count` chains: Xoshiro256++ seeded from `seed`, chain c advanced by c jumps
/// of 2^128 (non-overlapping); padding lanes start from the long jump (2^192) of the seed.
fn chain_rngs(seed: u64, count: usize, padding: bool) -> Vec<ChainRng> {
    let mut base = ChainRng::seed_from_u64(seed);
    if padding {
        base.long_jump();
    }
    (0..count)
        .map(|_| {
            let r = base.clone();
            base.jump();
            r
        })
        .collect()
}

impl Block {
    fn new(v: usize, rngs: Vec<ChainRng>, active: usize) -> Self {
        let mut rngs = rngs;
        let mut phi = vec![0.0; v * LANES];
        for (k, rng) in rngs.iter_mut().enumerate() {
            for x in 0..v {
                phi[x * LANES + k] =
                    0.5 * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng);
            }
        }
        Block {
            phi,
            q: vec![0.0; v * LANES],
            mom: vec![0.0; v * LANES],
            action: [f64::NAN; LANES],
            rngs,
            active,
            accepted: [0; LANES],
            trajectories: 0,
        }
    }

    fn kinetic(&self) -> [f64; LANES] {
        kinetic_lanes(&self.mom)
    }

    /// One HMC trajectory on every lane. The step size is jittered uniformly in [0.8, 1.2] eps
    /// per lane and trajectory (independent of the state, so detailed balance holds): a fixed
    /// trajectory length resonates with modes of frequency omega ~ pi / (steps eps).
    fn trajectory(&mut self, lat: &Lattice, eps: f64, steps: usize) {
        let v = lat.volume();
        let mut e = [0.0; LANES];
        for (k, rng) in self.rngs.iter_mut().enumerate() {
            e[k] = eps * (0.8 + 0.4 * rng.random::<f64>());
            for x in 0..v {
                self.mom[x * LANES + k] = StandardNormal.sample(rng);
            }
        }
        if self.action.iter().any(|a| !a.is_finite()) {
            self.action = lat.action_lanes(&self.phi);
        }
        let k0 = self.kinetic();
        self.q.copy_from_slice(&self.phi);
        let (s1, k1) = leapfrog_lanes(lat, &mut self.q, &mut self.mom, &e, steps);
        self.trajectories += 1;
        for (k, rng) in self.rngs.iter_mut().enumerate() {
            let u: f64 = rng.random();
            // accept with probability min(1, exp(-(H1 - H0))); a NaN energy is always rejected
            if u < ((k0[k] + self.action[k]) - (k1[k] + s1[k])).exp() {
                for x in 0..v {
                    self.phi[x * LANES + k] = self.q[x * LANES + k];
                }
                self.action[k] = s1[k];
                self.accepted[k] += 1;
            }
        }
    }

    /// (|M|, S) of every real chain.
    fn abs_m_and_action(&self) -> Vec<(f64, f64)> {
        let v = (self.phi.len() / LANES) as f64;
        let mut m = [0.0; LANES];
        for site in self.phi.chunks_exact(LANES) {
            for k in 0..LANES {
                m[k] += site[k];
            }
        }
        (0..self.active)
            .map(|k| ((m[k] / v).abs(), self.action[k]))
            .collect()
    }

    /// The current configuration of lane k.
    fn config(&self, k: usize) -> impl Iterator<Item = f64> + '_ {
        self.phi.iter().skip(k).step_by(LANES).copied()
    }
}

fn make_blocks(chains: usize, v: usize, seed: u64) -> Vec<Block> {
    let blocks = chains.div_ceil(LANES);
    let mut real = chain_rngs(seed, chains, false).into_iter();
    let mut pad = chain_rngs(seed, blocks * LANES - chains, true).into_iter();
    (0..blocks)
        .map(|j| {
            let active = (chains - j * LANES).min(LANES);
            let rngs = (0..LANES)
                .map(|k| {
                    if k < active { real.next() } else { pad.next() }.expect("a stream per lane")
                })
                .collect();
            Block::new(v, rngs, active)
        })
        .collect()
}

/// Leapfrog on interleaved lanes, each with its own step size eps_k; returns the action and
/// the kinetic energy at the end (computed with the last half kick, in the same pass).
///
/// Compiled twice, for the portable baseline and with AVX2 (4 lanes per instruction instead of
/// 2), chosen at run time. Both perform the same IEEE operations in the same order (AVX2 only
/// widens the lane loops; no FMA, no reassociation), so they give the same bits (tested).
fn leapfrog_lanes(
    lat: &Lattice,
    q: &mut [f64],
    p: &mut [f64],
    eps: &[f64; LANES],
    steps: usize,
) -> ([f64; LANES], [f64; LANES]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: leapfrog_lanes_avx2 only requires the CPU to support AVX2, checked above.
        #[allow(unsafe_code)]
        return unsafe { leapfrog_lanes_avx2(lat, q, p, eps, steps) };
    }
    leapfrog_lanes_portable(lat, q, p, eps, steps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn leapfrog_lanes_avx2(
    lat: &Lattice,
    q: &mut [f64],
    p: &mut [f64],
    eps: &[f64; LANES],
    steps: usize,
) -> ([f64; LANES], [f64; LANES]) {
    leapfrog_lanes_portable(lat, q, p, eps, steps)
}

#[inline(always)]
fn leapfrog_lanes_portable(
    lat: &Lattice,
    q: &mut [f64],
    p: &mut [f64],
    eps: &[f64; LANES],
    steps: usize,
) -> ([f64; LANES], [f64; LANES]) {
    let half = eps.map(|e| 0.5 * e);
    lat.kick_lanes(q, p, &half);
    if steps == 0 {
        return (lat.action_lanes(q), kinetic_lanes(p));
    }
    for _ in 1..steps {
        lat.drift_kick_lanes(q, p, eps, eps);
    }
    lat.drift_kick_lanes_energy(q, p, eps, &half)
}

/// 1/2 |p|^2 per lane, summed in site order.
fn kinetic_lanes(p: &[f64]) -> [f64; LANES] {
    let mut k2 = [0.0; LANES];
    for site in p.chunks_exact(LANES) {
        for k in 0..LANES {
            k2[k] += site[k] * site[k];
        }
    }
    k2.map(|x| 0.5 * x)
}

/// `steps` leapfrog steps of size eps: half kick, (drift, kick) x steps, the last kick halved.
pub fn leapfrog(lat: &Lattice, q: &mut [f64], p: &mut [f64], eps: f64, steps: usize) {
    lat.kick(q, p, 0.5 * eps);
    for i in 0..steps {
        for (x, m) in q.iter_mut().zip(p.iter()) {
            *x += eps * m;
        }
        lat.kick(q, p, if i + 1 < steps { eps } else { 0.5 * eps });
    }
}

fn check(cfg: &HmcConfig, n: usize) -> Result<()> {
    if n == 0 {
        return Err(invalid("samples", n, "at least 1"));
    }
    if cfg.chains == 0 {
        return Err(invalid("chains", cfg.chains, "at least 1"));
    }
    if cfg.leapfrog_steps == 0 {
        return Err(invalid("leapfrog", cfg.leapfrog_steps, "at least 1"));
    }
    if !(cfg.target_acceptance > 0.0 && cfg.target_acceptance < 1.0) {
        return Err(invalid(
            "target-acceptance",
            cfg.target_acceptance,
            "a number in (0, 1)",
        ));
    }
    if !(cfg.initial_step_size.is_finite() && cfg.initial_step_size > 0.0) {
        return Err(invalid(
            "step-size",
            cfg.initial_step_size,
            "a finite number > 0",
        ));
    }
    if cfg.sep == Some(0) {
        return Err(invalid("sep", 0, "at least 1"));
    }
    Ok(())
}

/// Runs `count` trajectories on every chain in parallel, calling `record` per chain and
/// trajectory; asks the monitor whether to stop between rounds of 10.
fn advance(
    chains: &mut [Block],
    lat: &Lattice,
    eps: f64,
    steps: usize,
    count: usize,
    monitor: &dyn Monitor,
    mut on_round: impl FnMut(usize),
    record: Option<&mut Vec<Vec<(f64, f64)>>>,
) -> Result<()> {
    let mut rec = record;
    let mut done = 0;
    while done < count {
        if monitor.should_stop() {
            return Err(Phi4Error::Interrupted);
        }
        let k = (count - done).min(10);
        // per block: k trajectories, each logging (|M|, S) of every real chain
        let logs: Vec<Vec<Vec<(f64, f64)>>> = chains
            .par_iter_mut()
            .map(|b| {
                (0..k)
                    .map(|_| {
                        b.trajectory(lat, eps, steps);
                        b.abs_m_and_action()
                    })
                    .collect()
            })
            .collect();
        if let Some(r) = rec.as_deref_mut() {
            let mut series = r.iter_mut();
            for (block, log) in chains.iter().zip(logs) {
                for lane in 0..block.active {
                    let s = series.next().expect("one series per chain");
                    s.extend(log.iter().map(|row| row[lane]));
                }
            }
        }
        done += k;
        on_round(done);
    }
    Ok(())
}

fn acceptance(blocks: &[Block]) -> f64 {
    let (a, t) = blocks.iter().fold((0, 0), |(a, t), b| {
        (
            a + b.accepted[..b.active].iter().sum::<usize>(),
            t + b.trajectories * b.active,
        )
    });
    a as f64 / t.max(1) as f64
}

fn reset_counts(blocks: &mut [Block]) {
    for b in blocks {
        b.accepted = [0; LANES];
        b.trajectories = 0;
    }
}

fn tau_of(series: &[Vec<(f64, f64)>]) -> (TauInt, TauInt) {
    let m: Vec<Vec<f64>> = series
        .iter()
        .map(|s| s.iter().map(|x| x.0).collect())
        .collect();
    let a: Vec<Vec<f64>> = series
        .iter()
        .map(|s| s.iter().map(|x| x.1).collect())
        .collect();
    let mr: Vec<&[f64]> = m.iter().map(|s| &s[..]).collect();
    let ar: Vec<&[f64]> = a.iter().map(|s| &s[..]).collect();
    (tau_int(&mr), tau_int(&ar))
}

/// Samples `n` configurations of `lat` by HMC. The monitor hears each phase (`tune`, `pilot`,
/// `therm`, `sample`) in trajectories per chain; a stop request ends the run between rounds
/// of 10 trajectories with [`Phi4Error::Interrupted`].
pub fn sample(lat: &Lattice, n: usize, cfg: &HmcConfig, monitor: &dyn Monitor) -> Result<HmcRun> {
    let progress =
        |phase: &str, done: usize, total: usize| monitor.progress(phase, done, total, "");
    check(cfg, n)?;
    let start = Instant::now();
    let v = lat.volume();
    // the saved configurations, and the caller's copy of them
    gud_core::memory::check_alloc(
        &format!("{n} configurations of {} x {}", lat.l, lat.l),
        &[2, n, v],
        8,
    )?;
    let steps = cfg.leapfrog_steps;
    let mut chains = make_blocks(cfg.chains, v, cfg.seed);

    // (1) tuning: Robbins-Monro on log eps towards the target acceptance, in rounds of 10
    let mut eps = cfg.initial_step_size;
    let mut round = 0;
    while round * 10 < cfg.tune {
        reset_counts(&mut chains);
        advance(&mut chains, lat, eps, steps, 10, monitor, |_| {}, None)?;
        round += 1;
        let acc = acceptance(&chains);
        eps *= ((acc - cfg.target_acceptance) * 2.0 / (round as f64).sqrt()).exp();
        progress("tune", round * 10, cfg.tune);
    }

    // (2) pilot: autocorrelation of |M| and S at the tuned step size
    let mut pilot = vec![Vec::with_capacity(cfg.pilot); cfg.chains];
    advance(
        &mut chains,
        lat,
        eps,
        steps,
        cfg.pilot,
        monitor,
        |d| progress("pilot", d, cfg.pilot),
        Some(&mut pilot),
    )?;
    let (tm, ta) = tau_of(&pilot);
    let pilot_tau = tm.tau.max(ta.tau);

    // (3) thermalisation to >= 20 tau_int, separation ceil(2 tau_int)
    let done_so_far = round * 10 + cfg.pilot;
    let therm = cfg
        .therm
        .unwrap_or_else(|| done_so_far.max((20.0 * pilot_tau).ceil() as usize));
    let extra = therm.saturating_sub(done_so_far);
    advance(
        &mut chains,
        lat,
        eps,
        steps,
        extra,
        monitor,
        |d| progress("therm", d, extra),
        None,
    )?;
    let sep = cfg
        .sep
        .unwrap_or(((2.0 * pilot_tau).ceil() as usize).max(1));

    // (4) production: per chain ceil(n / chains) configurations, one every `sep` trajectories
    let per_chain = n.div_ceil(cfg.chains);
    let total = per_chain * sep;
    reset_counts(&mut chains);
    let mut saved: Vec<Vec<f64>> = vec![Vec::with_capacity(per_chain * v); cfg.chains];
    let mut series = vec![Vec::with_capacity(total); cfg.chains];
    let prod_start = Instant::now();
    for k in 0..per_chain {
        advance(
            &mut chains,
            lat,
            eps,
            steps,
            sep,
            monitor,
            |_| {},
            Some(&mut series),
        )?;
        let mut out = saved.iter_mut();
        for b in &chains {
            for lane in 0..b.active {
                out.next()
                    .expect("one store per chain")
                    .extend(b.config(lane));
            }
        }
        progress("sample", (k + 1) * sep, total);
    }
    let prod_s = prod_start.elapsed().as_secs_f64();
    let (tau_m, tau_a) = tau_of(&series);
    let abs_m: Vec<Vec<f64>> = saved
        .iter()
        .map(|c| {
            c.chunks_exact(v)
                .map(|phi| (phi.iter().sum::<f64>() / v as f64).abs())
                .collect()
        })
        .collect();
    let tau_saved = crate::stats::tau_int(&abs_m.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let configs: Vec<f64> = saved.concat().into_iter().take(n * v).collect();
    let all_traj = therm.max(done_so_far) + total;
    let summary = HmcSummary {
        l: lat.l,
        m2: lat.couplings.m2,
        lam: lat.couplings.lam,
        samples: n,
        chains: cfg.chains,
        seed: cfg.seed,
        leapfrog_steps: steps,
        step_size: eps,
        acceptance: acceptance(&chains),
        therm: therm.max(done_so_far),
        sep,
        tau_int_abs_m_trajectories: tau_m,
        tau_int_action_trajectories: tau_a,
        tau_int_abs_m_saved: tau_saved,
        pilot_tau_int_trajectories: pilot_tau,
        trajectories_per_chain: all_traj,
        wall_s: start.elapsed().as_secs_f64(),
        site_updates_per_s: (total * steps * v * cfg.chains) as f64 / prod_s.max(1e-12),
    };
    Ok(HmcRun { configs, summary })
}

/// Throughput measurement: `trajectories` trajectories of `chains` chains at fixed step size
/// (no tuning); returns (seconds, acceptance).
pub fn run_fixed(
    lat: &Lattice,
    chains: usize,
    eps: f64,
    steps: usize,
    trajectories: usize,
    seed: u64,
) -> (f64, f64) {
    let mut cs = make_blocks(chains, lat.volume(), seed);
    let t0 = Instant::now();
    let _ = advance(
        &mut cs,
        lat,
        eps,
        steps,
        trajectories,
        &Silent,
        |_| {},
        None,
    );
    (t0.elapsed().as_secs_f64(), acceptance(&cs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Couplings;

    #[test]
    fn dispatched_leapfrog_equals_the_portable_one_bit_for_bit() {
        // on an AVX2 machine this compares the AVX2 build with the portable one
        for l in [2, 5, 8] {
            let lat = Lattice::new(l, Couplings::new(-4.0, 8.0).unwrap()).unwrap();
            let v = l * l;
            let q0: Vec<f64> = (0..v * LANES)
                .map(|i| ((i * 37 % 23) as f64 - 11.0) / 17.0)
                .collect();
            let p0: Vec<f64> = (0..v * LANES)
                .map(|i| ((i * 53 % 19) as f64 - 9.0) / 7.0)
                .collect();
            let eps: [f64; LANES] = std::array::from_fn(|k| 0.05 + 0.01 * k as f64);
            let (mut qa, mut pa) = (q0.clone(), p0.clone());
            let (mut qb, mut pb) = (q0, p0);
            let ea = leapfrog_lanes(&lat, &mut qa, &mut pa, &eps, 7);
            let eb = leapfrog_lanes_portable(&lat, &mut qb, &mut pb, &eps, 7);
            assert_eq!((qa, pa), (qb, pb), "L = {l}");
            assert_eq!(ea, eb, "L = {l}");
        }
    }
}
