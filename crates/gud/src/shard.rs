//! Proposals in shards (issue 33): proposal k always comes from stream k of the seed, so any
//! index range [first, first + count) is a reproducible piece of one run. A shard file (.npz:
//! `fields` (N, L, L), `log_q` (N,), `log_p` (N,) as float64, and `provenance`, UTF-8 JSON as
//! bytes) carries what made it; [`mcmc_from_shards`] checks that the shards are one run's
//! pieces (same fingerprint, seed and target; ranges that tile 0..N without gaps, overlaps or
//! duplicates) and gives the chain, weights and report of the single run, bit for bit.

use crate::error::{bail, Context, Result};
use crate::exact::Mcmc;
use gud_core::exact::{Proposals, Proposer};
use gud_core::monitor::Monitor;
use gud_core::sampler::SampleReport;
use gud_phi4::{Couplings, Lattice};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What made a shard (the file's `provenance`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardProvenance {
    /// gud's version.
    pub gud_version: String,
    /// FNV-1a 64 of everything that defines the proposals: the resolved config, the proposer
    /// and its weights (a flow file or a run's checkpoint), the couplings.
    pub fingerprint: String,
    /// The proposer, as a person reads it (e.g. "flow", "exp, 10 points, neural").
    pub proposer: String,
    /// Seed of the proposals (proposal k: stream k) and of the chain's draws.
    pub seed: u64,
    /// First proposal index.
    pub first: u64,
    /// Proposals in the shard.
    pub count: usize,
    /// Lattice size L.
    pub l: usize,
    /// m^2 of the target.
    pub m2: f64,
    /// lambda of the target.
    pub lam: f64,
    /// The proposals' sampler and score names, grid points and evaluations per sample.
    pub sampler: String,
    /// The score's name.
    pub score: String,
    /// Grid points.
    pub grid_points: usize,
    /// Evaluations per sample (the total of the shard for the adaptive ODE).
    pub nfe: usize,
    /// Component-evaluations per sample (the total for the adaptive ODE).
    pub component_evals: usize,
    /// The same without the RG projection.
    pub component_evals_full: usize,
    /// Proposals whose map was found not injective.
    pub non_injective: usize,
    /// Seconds of proposing.
    pub wall_s: f64,
    /// The resolved config (TOML).
    pub config: String,
}

/// A shard: its provenance and its proposals with log q and log p.
#[derive(Debug, Clone)]
pub struct Shard {
    /// What made it.
    pub provenance: ShardProvenance,
    /// Fields (count x d), phi-space.
    pub fields: Vec<f64>,
    /// log q of each.
    pub log_q: Vec<f64>,
    /// log p = -S of each.
    pub log_p: Vec<f64>,
}

/// FNV-1a 64 of byte strings, as 16 hex digits (a fingerprint, not a security hash).
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(&[0xff]) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// What a shard needs to know besides the proposer.
#[derive(Debug, Clone)]
pub struct ShardSpec {
    /// The fingerprint of config, proposer and weights ([`fingerprint`]).
    pub fingerprint: String,
    /// The proposer as a person reads it.
    pub proposer: String,
    /// The resolved config (TOML).
    pub config: String,
    /// Seed.
    pub seed: u64,
    /// First index.
    pub first: u64,
    /// Proposals.
    pub count: usize,
}

/// Proposals `spec.first ..` of `proposer` with log q and log p against the phi^4 `lattice`.
pub fn propose_shard(
    proposer: &dyn Proposer,
    lattice: &Lattice,
    spec: &ShardSpec,
    monitor: &dyn Monitor,
) -> Result<Shard> {
    let d = proposer.dim();
    if d != lattice.l * lattice.l {
        bail!(
            "the proposal has {d} values per field, the target an {0} x {0} lattice",
            lattice.l
        );
    }
    if spec.count == 0 {
        return Err(gud_core::Error::param("count", 0, "at least 1 proposal").into());
    }
    if spec.first.checked_add(spec.count as u64).is_none() {
        return Err(gud_core::Error::param("first", spec.first, "first + count below 2^64").into());
    }
    gud_core::memory::check_alloc(
        &format!("count = {} proposals of {d} values", spec.count),
        &[spec.count, d + 2],
        8,
    )?;
    let start = Instant::now();
    let p: Proposals =
        crate::exact::propose_range(proposer, spec.seed, spec.first, spec.count, monitor)?;
    let wall_s = start.elapsed().as_secs_f64();
    let log_p = gud_core::exact::log_densities(lattice, &p.fields);
    Ok(Shard {
        provenance: ShardProvenance {
            gud_version: env!("CARGO_PKG_VERSION").into(),
            fingerprint: spec.fingerprint.clone(),
            proposer: spec.proposer.clone(),
            seed: spec.seed,
            first: spec.first,
            count: spec.count,
            l: lattice.l,
            m2: lattice.couplings.m2,
            lam: lattice.couplings.lam,
            sampler: p.report.sampler.into(),
            score: p.report.score.into(),
            grid_points: p.report.grid_points,
            nfe: p.report.nfe,
            component_evals: p.report.component_evals,
            component_evals_full: p.report.component_evals_full,
            non_injective: p.non_injective,
            wall_s,
            config: spec.config.clone(),
        },
        fields: p.fields,
        log_q: p.log_q,
        log_p,
    })
}

/// Writes a shard (.npz) to `path` (the caller's temporary).
pub fn write(path: &Path, shard: &Shard) -> Result<()> {
    let p = &shard.provenance;
    let mut npz = gud_io::npz::Npz::default();
    npz.floats.insert(
        "fields".into(),
        (vec![p.count, p.l, p.l], shard.fields.clone()),
    );
    npz.floats
        .insert("log_q".into(), (vec![p.count], shard.log_q.clone()));
    npz.floats
        .insert("log_p".into(), (vec![p.count], shard.log_p.clone()));
    npz.bytes.insert(
        "provenance".into(),
        serde_json::to_string_pretty(p)?.into_bytes(),
    );
    Ok(gud_io::npz::write(path, &npz)?)
}

/// Reads a shard; every error names the file.
pub fn read(path: &Path) -> Result<Shard> {
    let npz = gud_io::npz::read(path)?;
    let bad =
        |why: String| crate::Error::Invalid(format!("{}: not a gud shard ({why})", path.display()));
    let prov = npz
        .bytes
        .get("provenance")
        .ok_or_else(|| bad("no `provenance`".into()))?;
    let provenance: ShardProvenance =
        serde_json::from_slice(prov).map_err(|e| bad(format!("`provenance`: {e}")))?;
    let (n, l) = (provenance.count, provenance.l);
    let take = |name: &str, shape: Vec<usize>| -> Result<Vec<f64>> {
        match npz.floats.get(name) {
            Some((s, v)) if *s == shape => Ok(v.clone()),
            Some((s, _)) => Err(bad(format!("`{name}` has shape {s:?}, expected {shape:?}"))),
            None => Err(bad(format!("no `{name}`"))),
        }
    };
    Ok(Shard {
        fields: take("fields", vec![n, l, l])?,
        log_q: take("log_q", vec![n])?,
        log_p: take("log_p", vec![n])?,
        provenance,
    })
}

/// The name of a known sampler or score (the report's names are static).
fn known(name: &str) -> &'static str {
    const NAMES: [&str; 14] = [
        "exp",
        "ode",
        "sde",
        "ancestral",
        "ode-adaptive",
        "flow",
        "local-couplings",
        "neural",
        "gaussian",
        "mixture",
        "empirical",
        "smoothed",
        "els",
        "callable",
    ];
    NAMES
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("unknown")
}

/// The chain, weights and report of the run whose pieces are `shards` (any order): the same,
/// bit for bit, as one run of all the proposals, but for the timings (the shards' proposing
/// seconds add up). Shards of another run, and ranges with gaps, overlaps or duplicates, are
/// errors that name the shard.
pub fn mcmc_from_shards(
    shards: Vec<(PathBuf, Shard)>,
    hmc_reference: usize,
    monitor: &dyn Monitor,
) -> Result<Mcmc> {
    let mut shards = shards;
    shards.sort_by_key(|(_, s)| s.provenance.first);
    let Some((first_path, head)) = shards.first() else {
        bail!("no shards to merge");
    };
    let h = head.provenance.clone();
    let mut next = 0u64;
    for (path, s) in &shards {
        let p = &s.provenance;
        let same = p.fingerprint == h.fingerprint
            && p.seed == h.seed
            && p.l == h.l
            && p.m2.to_bits() == h.m2.to_bits()
            && p.lam.to_bits() == h.lam.to_bits();
        if !same {
            bail!(
                "{} is a shard of another run than {} (fingerprint {} / {}, seed {} / {}, L {} / {}, \
                 m2 {} / {}, lam {} / {}): merge only the shards of one config, network, seed and target",
                path.display(),
                first_path.display(),
                p.fingerprint,
                h.fingerprint,
                p.seed,
                h.seed,
                p.l,
                h.l,
                p.m2,
                h.m2,
                p.lam,
                h.lam
            );
        }
        if p.first != next {
            let what = if p.first < next {
                "overlaps or repeats"
            } else {
                "leaves a gap before"
            };
            bail!(
                "{} holds proposals {}..{}, which {what} the range so far (0..{next}): give \
                 shards that tile 0..N exactly once",
                path.display(),
                p.first,
                p.first + p.count as u64
            );
        }
        next += p.count as u64;
    }
    let total = next as usize;
    let lattice = Lattice::new(h.l, Couplings::new(h.m2, h.lam)?)?;
    let mut fields = Vec::with_capacity(total * h.l * h.l);
    let (mut log_q, mut log_p) = (Vec::with_capacity(total), Vec::with_capacity(total));
    let (mut wall_s, mut non_injective) = (0.0, 0);
    let (mut nfe, mut evals, mut evals_full) = (0, 0, 0);
    for (_, s) in &shards {
        fields.extend_from_slice(&s.fields);
        log_q.extend_from_slice(&s.log_q);
        log_p.extend_from_slice(&s.log_p);
        wall_s += s.provenance.wall_s;
        non_injective += s.provenance.non_injective;
        nfe += s.provenance.nfe;
        evals += s.provenance.component_evals;
        evals_full += s.provenance.component_evals_full;
    }
    // the adaptive solve reports totals; every other sampler the same per-sample cost
    let adaptive = h.sampler == "ode-adaptive";
    let report = SampleReport {
        sampler: known(&h.sampler),
        score: known(&h.score),
        grid_points: h.grid_points,
        nfe: if adaptive { nfe } else { h.nfe },
        component_evals: if adaptive { evals } else { h.component_evals },
        component_evals_full: if adaptive {
            evals_full
        } else {
            h.component_evals_full
        },
        samples: total,
    };
    let proposals = Proposals {
        fields,
        log_q,
        report,
        non_injective,
    };
    let target = crate::exact::Phi4 {
        lattice: &lattice,
        hmc_reference,
    };
    crate::exact::finish(&target, proposals, log_p, h.seed, wall_s, None, monitor)
        .context("merging the shards")
}

/// Reads every shard file.
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Shard)>> {
    paths.iter().map(|p| Ok((p.clone(), read(p)?))).collect()
}
