//! What proposes in exact sampling from Python: a `Score` with the design's deterministic
//! sampler (or the continuous ODE at `tol`), or a `gud.phi4.Flow`; one place that turns either
//! into a [`Proposer`] for `gud.phi4.mcmc`, `gud.phi4.propose_shard` and `gud.mcmc`.

use crate::design::PyDesign;
use crate::phi4::PyFlow;
use crate::score::{CallableScore, PyScore};
use crate::value_error;
use gud::exact::Proposal;
use gud_core::exact::Proposer;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A proposal's source, resolved and checked: the library's [`Proposal`] and, for a callable
/// score, the callable (its exception is raised after a call).
pub(crate) struct Source<'a> {
    pub(crate) proposal: Proposal<'a>,
    callable: Option<&'a CallableScore>,
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
        let couplings = &flow.get().file.couplings;
        return Ok(Source {
            proposal: Proposal::Flow(couplings),
            callable: None,
        });
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
    let config = design.config_with(design.proposal_config(sampler, keys)?);
    Ok(Source {
        proposal: Proposal::Score {
            score: score.model.as_ref(),
            config: Box::new(config),
            tol,
        },
        callable: score.callable(),
    })
}

impl Source<'_> {
    /// The callable behind a score, if it is one.
    pub(crate) fn callable(&self) -> Option<&CallableScore> {
        self.callable
    }

    /// The proposer as a person reads it, and the bytes that identify its weights.
    pub(crate) fn describe(&self) -> (String, Vec<u8>) {
        let weights = match &self.proposal {
            Proposal::Flow(c) => c.params.iter().flat_map(|p| p.to_le_bytes()).collect(),
            Proposal::Score { .. } => Vec::new(),
        };
        (self.proposal.describe(), weights)
    }

    /// The resolved config of a score's proposals (the design's alone for a flow).
    pub(crate) fn config<'c>(&'c self, design: &'c PyDesign) -> &'c gud::config::Config {
        match &self.proposal {
            Proposal::Score { config, .. } => config,
            Proposal::Flow(_) => &design.config,
        }
    }

    /// Calls `f` with the proposer on `design`.
    pub(crate) fn with<T>(
        &self,
        design: &gud_core::Design,
        f: impl FnOnce(&dyn Proposer) -> gud::Result<T>,
    ) -> gud::Result<T> {
        self.proposal.with(design, f)
    }
}
