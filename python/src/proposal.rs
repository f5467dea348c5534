//! What proposes in exact sampling from Python: a `Score` with the design's deterministic
//! sampler (or the continuous ODE at `tol`), or a `gud.phi4.Flow`; one place that turns either
//! into a [`Proposer`] for `gud.phi4.mcmc`, `gud.phi4.propose_shard` and `gud.mcmc`.

use crate::design::PyDesign;
use crate::phi4::PyFlow;
use crate::score::{CallableScore, PyScore};
use crate::value_error;
use gud_core::exact::{OdeProposer, Proposer, SamplerProposer};
use gud_core::flow::Couplings;
use gud_core::score::ScoreModel;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A proposal's source, resolved and checked.
pub(crate) enum Source<'a> {
    /// A flow's couplings.
    Flow(&'a Couplings),
    /// A score with the config of its sampler.
    Score {
        model: &'a dyn ScoreModel,
        callable: Option<&'a CallableScore>,
        cfg: Box<gud::config::Config>,
        tol: Option<f64>,
    },
}

/// `proposal` (a Score or a Flow) on `design`; `tol`, `sampler` and `keys` apply to a Score only.
pub(crate) fn source<'a>(
    design: &PyDesign,
    proposal: &'a Bound<'_, PyAny>,
    tol: Option<f64>,
    sampler: Option<&Bound<'_, PyAny>>,
    keys: Option<&Bound<'_, PyDict>>,
    what: &str,
) -> PyResult<Source<'a>> {
    if let Ok(flow) = proposal.cast::<PyFlow>() {
        if tol.is_some() || sampler.is_some() || keys.is_some_and(|k| !k.is_empty()) {
            return Err(value_error(
                "tol, sampler: a flow proposes by its own map; drop them",
            ));
        }
        return Ok(Source::Flow(&flow.get().file.couplings));
    }
    let score = proposal.cast::<PyScore>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "{what}: expected a gud.Score or a gud.phi4.Flow"
        ))
    })?;
    let score: &'a PyScore = score.get();
    score.check_dim(design)?;
    if let Some(t) = tol {
        if !(t > 0.0 && t < 1.0) {
            return Err(value_error(format!("tol: expected 0 < tol < 1, got {t}")));
        }
    }
    let cfg = design.config_with(design.proposal_config(sampler, keys)?);
    Ok(Source::Score {
        model: score.model.as_ref(),
        callable: score.callable(),
        cfg: Box::new(cfg),
        tol,
    })
}

impl Source<'_> {
    /// The callable behind a score, if it is one (its exception is raised after a call).
    pub(crate) fn callable(&self) -> Option<&CallableScore> {
        match self {
            Source::Score { callable, .. } => *callable,
            Source::Flow(_) => None,
        }
    }

    /// The proposer as a person reads it, and the bytes that identify its weights.
    pub(crate) fn describe(&self) -> (String, Vec<u8>) {
        match self {
            Source::Flow(c) => (
                "flow".into(),
                c.params.iter().flat_map(|p| p.to_le_bytes()).collect(),
            ),
            Source::Score {
                model, cfg, tol, ..
            } => {
                let what = match tol {
                    Some(t) => format!("ode-adaptive, tol {t}, {}", model.name()),
                    None => format!(
                        "{}, {} points, {}",
                        format!("{:?}", cfg.sampler.kind).to_lowercase(),
                        cfg.sampler.points(),
                        model.name()
                    ),
                };
                (what, Vec::new())
            }
        }
    }

    /// The resolved config of a score's proposals (the design's alone for a flow).
    pub(crate) fn config<'c>(&'c self, design: &'c PyDesign) -> &'c gud::config::Config {
        match self {
            Source::Score { cfg, .. } => cfg,
            Source::Flow(_) => &design.config,
        }
    }

    /// Calls `f` with the proposer on `design`.
    pub(crate) fn with<T>(
        &self,
        design: &gud_core::Design,
        f: impl FnOnce(&dyn Proposer) -> gud::Result<T>,
    ) -> gud::Result<T> {
        match self {
            Source::Flow(c) => {
                gud::flow::check_design(design)?;
                f(&gud_core::flow::LocalFlow::new(design, c)?)
            }
            Source::Score {
                model, cfg, tol, ..
            } => match tol {
                Some(tol) => f(&OdeProposer {
                    design,
                    score: *model,
                    tol: *tol,
                    batch: cfg.sampler.batch,
                }),
                None => {
                    let plan = gud::sample::plan(cfg, design)?;
                    f(&SamplerProposer {
                        design,
                        plan: &plan,
                        score: *model,
                        config: &cfg.sampler,
                    })
                }
            },
        }
    }
}
