"""Type stubs of gud's Rust extension (see the docstrings of each item at run time)."""

from typing import Any, Callable, Optional, Union

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike
Array = npt.NDArray[np.float64]
Table = Union[str, dict[str, Any], None]

__version__: str

def set_threads(threads: int) -> None: ...

class Design:
    @staticmethod
    def fit(data: ArrayLike, design: Table = None, **keys: Any) -> "Design": ...
    @staticmethod
    def from_config(config: str, data: Optional[ArrayLike] = None) -> "Design": ...
    @property
    def shape(self) -> tuple[int, int, int]: ...
    @property
    def dim(self) -> int: ...
    @property
    def basis(self) -> str: ...
    @property
    def mean(self) -> Array: ...
    @property
    def scale(self) -> Array: ...
    @property
    def sigma_data(self) -> Array: ...
    @property
    def component_variance(self) -> Array: ...
    @property
    def data(self) -> Optional[Array]: ...
    @property
    def config(self) -> str: ...
    def gamma(self, t: ArrayLike) -> Array: ...
    def dgamma_dt(self, t: ArrayLike) -> Array: ...
    def alpha_sq(self, t: ArrayLike) -> Array: ...
    def sigma_sq(self, t: ArrayLike) -> Array: ...
    def snr(self, t: ArrayLike) -> Array: ...
    def to_components(self, phi: ArrayLike) -> Array: ...
    def from_components(self, comp: ArrayLike) -> Array: ...
    def whiten(self, comp: ArrayLike) -> Array: ...
    def unwhiten(self, chi: ArrayLike) -> Array: ...
    def to_whitened(self, phi: ArrayLike) -> Array: ...
    def to_fields(self, chi: ArrayLike) -> Array: ...
    def noise(
        self, chi0: ArrayLike, t: ArrayLike, seed: int = 0, first: int = 0
    ) -> tuple[Array, Array]: ...
    def training_batch(self, batch: int, step: int, seed: int = 0) -> dict[str, Any]: ...

class Score:
    def __init__(
        self,
        design: Design,
        kind: str = "gaussian",
        data: Optional[ArrayLike] = None,
        **options: Any,
    ) -> None: ...
    @staticmethod
    def from_callable(
        eps_hat: Callable[[Any, Any], Any],
        dim: int,
        vjp: Optional[Callable[[Any, Any, Any], Any]] = None,
        float32: bool = False,
        allow_nonfinite: bool = False,
    ) -> "Score": ...
    @property
    def name(self) -> str: ...
    @property
    def dim(self) -> int: ...
    def eps_hat(self, chi_t: ArrayLike, gamma_t: ArrayLike) -> Array: ...

def sample(
    design: Design,
    score: Score,
    n: int,
    seed: int = 0,
    first: int = 0,
    sampler: Table = None,
    **keys: Any,
) -> tuple[Array, dict[str, Any]]: ...
def tune_grid(
    design: Design,
    score: Score,
    steps: int = 10,
    pilot: int = 256,
    reference_steps: int = 200,
    max_trials: int = 200,
    seed: int = 0,
    sampler: Table = None,
    **keys: Any,
) -> dict[str, Any]: ...
def propose(
    design: Design,
    score: Score,
    n: int,
    seed: int = 0,
    first: int = 0,
    tol: Optional[float] = None,
    sampler: Table = None,
    **keys: Any,
) -> tuple[Array, Array, dict[str, Any]]: ...
def nll(
    design: Design,
    score: Score,
    data: Union[ArrayLike, str],
    method: str = "elbo",
    steps: int = 100,
    tol: float = 1e-5,
    divergence: Optional[str] = None,
    probes: int = 1,
    seed: int = 0,
    batch: int = 64,
    grid: str = "uniform-t",
    posterior_variance: Optional[str] = None,
    samples: Optional[int] = None,
) -> dict[str, Any]: ...
def log_weights(log_p: ArrayLike, log_q: ArrayLike) -> Array: ...
def ess_fraction(log_w: ArrayLike) -> float: ...
def log_mean_weight(log_w: ArrayLike) -> tuple[float, float]: ...
def metropolis(log_w: ArrayLike, seed: int = 0) -> dict[str, Any]: ...
def couplings_from_hopping(kappa: float, lambda_: float) -> tuple[float, float]: ...
def hmc_sample(
    l: int,
    m2: float,
    lam: float,
    n: int,
    seed: int = 0,
    chains: int = 64,
    leapfrog_steps: int = 10,
    target_acceptance: float = 0.8,
    therm: Optional[int] = None,
    sep: Optional[int] = None,
) -> tuple[Array, dict[str, Any]]: ...
def observe(
    configs: ArrayLike,
    m2: Optional[float] = None,
    lam: Optional[float] = None,
    log_weights: Optional[ArrayLike] = None,
) -> dict[str, Any]: ...
def action(configs: ArrayLike, m2: float, lam: float) -> Array: ...
def mcmc(
    design: Design,
    score: Union[Score, "Flow"],
    m2: float,
    lam: float,
    proposals: int,
    seed: int = 0,
    tol: Optional[float] = None,
    hmc_reference: int = 0,
    sampler: Table = None,
    **keys: Any,
) -> dict[str, Any]: ...

class Flow:
    @staticmethod
    def train(
        design: Design,
        m2: float,
        lam: float,
        steps: int = 1000,
        batch: int = 64,
        lr: float = 0.01,
        seed: int = 0,
        stages: int = 4,
        layers: int = 2,
        hidden: int = 16,
        radius: int = 2,
        init: Optional["Flow"] = None,
        clip: Optional[float] = None,
        dilations: Optional[list[int]] = None,
        tails: bool = False,
        levels: Optional[list[int]] = None,
        path_gradient: bool = False,
    ) -> "Flow": ...
    @staticmethod
    def load(path: str) -> "Flow": ...
    def save(self, path: str) -> None: ...
    def propose(self, design: Design, n: int, seed: int = 0, first: int = 0) -> tuple[Array, Array]: ...
    @property
    def provenance(self) -> dict[str, Any]: ...

def propose_shard(
    design: Design,
    proposal: Union[Score, Flow],
    m2: float,
    lam: float,
    first: int,
    count: int,
    out: str,
    seed: int = 0,
    tol: Optional[float] = None,
    sampler: Table = None,
    **keys: Any,
) -> dict[str, Any]: ...
def merge_shards(paths: list[str], hmc_reference: int = 0) -> dict[str, Any]: ...
def mcmc_target(
    design: Design,
    proposal: Union[Score, Flow],
    log_p: Callable[[Any], Any],
    n: int,
    seed: int = 0,
    tol: Optional[float] = None,
    chunk: int = 1024,
    observables: Optional[Callable[[Any], dict[str, Any]]] = None,
    sampler: Table = None,
    **keys: Any,
) -> dict[str, Any]: ...
