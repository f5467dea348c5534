"""gud: Generation with Unified Diffusion, from Python.

The diffusion design space of the renormalization-group view of diffusion (bases, priors,
component-wise schedules), analytic scores, every sampler, likelihoods, exact sampling with
Metropolis and importance weights, and lattice phi^4 -- gud's Rust core, with numpy arrays in
and out. Bring your own network as a Python callable (:func:`CallableScore`); the neural
network of the gud binary stays in the binary (one libtorch per process).

    >>> import numpy as np, gud
    >>> data = np.random.default_rng(0).normal(size=(256, 4, 4))
    >>> design = gud.Design.fit(data, basis="fourier", prior="free", schedule="rg")
    >>> fields, report = gud.sample(design, gud.Score(design, "gaussian"), 64, steps=10)
    >>> fields.shape
    (64, 1, 4, 4)

The guide is docs/python.md of the repository; the formulas are SPEC.md's.
"""

from __future__ import annotations

import numbers
from typing import Callable, Optional, Union

from . import _gud
from ._gud import (
    Design,
    Score,
    __version__,
    ess_fraction,
    log_mean_weight,
    log_weights,
    mcmc_target as mcmc,
    metropolis,
    nll,
    propose,
    sample,
    set_threads,
    tune_grid,
)
from . import phi4

__all__ = [
    "CallableScore",
    "Design",
    "Score",
    "__version__",
    "ess_fraction",
    "log_mean_weight",
    "log_weights",
    "mcmc",
    "metropolis",
    "nll",
    "phi4",
    "propose",
    "sample",
    "set_threads",
    "tune_grid",
]


def CallableScore(
    eps_hat: Callable,
    design: Union[Design, int],
    vjp: Optional[Callable] = None,
    float32: bool = False,
    allow_nonfinite: bool = False,
) -> Score:
    """Your own model of eps_hat(chi_t, gamma_t) as a gud score.

    ``eps_hat(chi_t, gamma_t)`` receives two (n, d) arrays in whitened component space
    (``gamma_t`` repeats the step's noising state on every row) and returns eps_hat (n, d),
    a numpy array or anything ``numpy.asarray`` accepts (a CPU torch tensor, a JAX array).
    ``vjp(chi_t, gamma_t, u)``, optional, returns ``u^T d eps_hat / d chi_t`` (n, d): the ODE
    likelihood and the exact densities of :func:`propose` then use it instead of finite
    differences. ``design`` (or the dimension d) fixes the number of components. With
    ``float32=True`` the arrays passed to the callables are float32.

    Every output is checked at every call: a shape other than (n, d) is a ValueError, and so
    is a NaN or an infinity unless ``allow_nonfinite=True``, which lets it through and counts
    such calls in each report (``callable_nonfinite_calls``). An exception raised by the
    callable stops the sampler and is raised again by the call that used the score.
    """
    if isinstance(design, Design):
        dim = design.dim
    elif isinstance(design, numbers.Integral) and not isinstance(design, bool):
        dim = int(design)
    else:
        raise TypeError(
            f"design: expected a Design or the number of components d, got {type(design).__name__}"
        )
    if dim < 1:
        raise ValueError(f"design: expected at least 1 component, got {dim}")
    return Score.from_callable(eps_hat, dim, vjp, float32, allow_nonfinite)
