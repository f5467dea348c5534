//! Hybrid Monte Carlo for lattice phi^4 (SPEC section 7): Gaussian momenta, leapfrog
//! integration of H = p^2/2 + S[phi] with a jittered step size, Metropolis accept/reject on
//! exp(-dH). Many independent
//! chains run in parallel; chain c uses ChaCha8 stream c of the seed.
//!
//! Protocol: (1) tuning: the common step size is adapted towards the target acceptance;
//! (2) pilot: the integrated autocorrelation times of |M| and S are measured on all chains;
//! (3) thermalisation is extended to at least 20 tau_int and the separation between saved
//! configurations set to ceil(2 tau_int) trajectories (both overridable); (4) production.

use crate::action::Lattice;
use crate::stats::{tau_int, TauInt};
use crate::{invalid, Phi4Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// HMC settings; `None` means chosen by the protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct HmcConfig {
    pub chains: usize,
    pub leapfrog_steps: usize,
    pub target_acceptance: f64,
    pub initial_step_size: f64,
    /// Trajectories of step-size tuning.
    pub tune: usize,
    /// Trajectories of the autocorrelation pilot.
    pub pilot: usize,
    /// Total thermalisation trajectories (tuning and pilot included); automatic when None.
    pub therm: Option<usize>,
    /// Trajectories between saved configurations; automatic when None.
    pub sep: Option<usize>,
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
    pub l: usize,
    pub m2: f64,
    pub lam: f64,
    pub samples: usize,
    pub chains: usize,
    pub seed: u64,
    pub leapfrog_steps: usize,
    pub step_size: f64,
    /// Acceptance rate over production trajectories.
    pub acceptance: f64,
    pub therm: usize,
    pub sep: usize,
    /// tau_int of |M| and of S in trajectories, measured on the production trajectories.
    pub tau_int_abs_m: TauInt,
    pub tau_int_action: TauInt,
    /// tau_int measured by the pilot (what chose therm and sep).
    pub pilot_tau_int: f64,
    pub trajectories_per_chain: usize,
    pub wall_s: f64,
    /// Leapfrog steps x sites x chains per second.
    pub site_updates_per_s: f64,
}

/// The samples (N x L x L, chain-major: chain 0's configurations in order, then chain 1's...)
/// and the summary.
#[derive(Debug, Clone)]
pub struct HmcRun {
    pub configs: Vec<f64>,
    pub summary: HmcSummary,
}

/// Progress report: phase name, trajectories done and planned (per chain).
pub type Progress<'a> = &'a (dyn Fn(&str, usize, usize) + Sync);

struct Chain {
    phi: Vec<f64>,
    /// S[phi] of the current state (kept from the last trajectory).
    action: f64,
    q: Vec<f64>,
    mom: Vec<f64>,
    rng: ChaCha8Rng,
    accepted: usize,
    trajectories: usize,
}

impl Chain {
    fn new(v: usize, seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        let phi = (0..v)
            .map(|_| 0.5 * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng))
            .collect();
        Chain {
            phi,
            action: f64::NAN,
            q: vec![0.0; v],
            mom: vec![0.0; v],
            rng,
            accepted: 0,
            trajectories: 0,
        }
    }

    /// One HMC trajectory; returns whether it was accepted. The step size is jittered
    /// uniformly in [0.8, 1.2] eps per trajectory (independent of the state, so detailed
    /// balance holds): a fixed trajectory length resonates with modes of frequency
    /// omega ~ pi / (steps eps), which then barely decorrelate.
    fn trajectory(&mut self, lat: &Lattice, eps: f64, steps: usize) -> bool {
        let eps = eps * (0.8 + 0.4 * self.rng.random::<f64>());
        for p in &mut self.mom {
            *p = StandardNormal.sample(&mut self.rng);
        }
        if !self.action.is_finite() {
            self.action = lat.action(&self.phi);
        }
        let h0 = 0.5 * self.mom.iter().map(|p| p * p).sum::<f64>() + self.action;
        self.q.copy_from_slice(&self.phi);
        leapfrog(lat, &mut self.q, &mut self.mom, eps, steps);
        let s1 = lat.action(&self.q);
        let h1 = 0.5 * self.mom.iter().map(|p| p * p).sum::<f64>() + s1;
        let u: f64 = self.rng.random();
        self.trajectories += 1;
        // accept with probability min(1, exp(-(H1 - H0))); a NaN energy is always rejected
        if u < (h0 - h1).exp() {
            std::mem::swap(&mut self.phi, &mut self.q);
            self.action = s1;
            self.accepted += 1;
            true
        } else {
            false
        }
    }

    fn abs_m_and_action(&self) -> (f64, f64) {
        let v = self.phi.len() as f64;
        ((self.phi.iter().sum::<f64>() / v).abs(), self.action)
    }
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
/// trajectory; checks `stop` between rounds of 10.
fn advance(
    chains: &mut [Chain],
    lat: &Lattice,
    eps: f64,
    steps: usize,
    count: usize,
    stop: &AtomicBool,
    mut on_round: impl FnMut(usize),
    record: Option<&mut Vec<Vec<(f64, f64)>>>,
) -> Result<()> {
    let mut rec = record;
    let mut done = 0;
    while done < count {
        if stop.load(Ordering::Relaxed) {
            return Err(Phi4Error::Interrupted);
        }
        let k = (count - done).min(10);
        let logs: Vec<Vec<(f64, f64)>> = chains
            .par_iter_mut()
            .map(|c| {
                (0..k)
                    .map(|_| {
                        c.trajectory(lat, eps, steps);
                        c.abs_m_and_action()
                    })
                    .collect()
            })
            .collect();
        if let Some(r) = rec.as_deref_mut() {
            for (series, log) in r.iter_mut().zip(logs) {
                series.extend(log);
            }
        }
        done += k;
        on_round(done);
    }
    Ok(())
}

fn acceptance(chains: &[Chain]) -> f64 {
    let (a, t) = chains
        .iter()
        .fold((0, 0), |(a, t), c| (a + c.accepted, t + c.trajectories));
    a as f64 / t.max(1) as f64
}

fn reset_counts(chains: &mut [Chain]) {
    for c in chains {
        c.accepted = 0;
        c.trajectories = 0;
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

/// Samples `n` configurations of `lat` by HMC.
pub fn sample(
    lat: &Lattice,
    n: usize,
    cfg: &HmcConfig,
    progress: Progress<'_>,
    stop: &AtomicBool,
) -> Result<HmcRun> {
    check(cfg, n)?;
    let start = Instant::now();
    let v = lat.volume();
    let steps = cfg.leapfrog_steps;
    let mut chains: Vec<Chain> = (0..cfg.chains)
        .map(|c| Chain::new(v, cfg.seed, c as u64))
        .collect();

    // (1) tuning: Robbins-Monro on log eps towards the target acceptance, in rounds of 10
    let mut eps = cfg.initial_step_size;
    let mut round = 0;
    while round * 10 < cfg.tune {
        reset_counts(&mut chains);
        advance(&mut chains, lat, eps, steps, 10, stop, |_| {}, None)?;
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
        stop,
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
        stop,
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
            stop,
            |_| {},
            Some(&mut series),
        )?;
        for (s, c) in saved.iter_mut().zip(&chains) {
            s.extend_from_slice(&c.phi);
        }
        progress("sample", (k + 1) * sep, total);
    }
    let prod_s = prod_start.elapsed().as_secs_f64();
    let (tau_m, tau_a) = tau_of(&series);
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
        tau_int_abs_m: tau_m,
        tau_int_action: tau_a,
        pilot_tau_int: pilot_tau,
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
    let mut cs: Vec<Chain> = (0..chains)
        .map(|c| Chain::new(lat.volume(), seed, c as u64))
        .collect();
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let _ = advance(&mut cs, lat, eps, steps, trajectories, &stop, |_| {}, None);
    (t0.elapsed().as_secs_f64(), acceptance(&cs))
}
