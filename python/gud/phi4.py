"""Lattice phi^4 in two dimensions (SPEC section 7).

``S[phi] = sum_x [ sum_mu (phi_{x+mu} - phi_x)^2 + m2 phi_x^2 + lam phi_x^4 ]``, p ~ exp(-S), on
a periodic L x L lattice: HMC ensembles, every observable with binned-jackknife errors and
tau_int, and exact sampling with a diffusion proposal (SPEC section 9) or a local coupling
flow whose exact log q costs O(d) (``Flow``, SPEC section 9.1).
"""

from __future__ import annotations

from ._gud import Flow, action, mcmc, merge_shards, propose_shard
from ._gud import couplings_from_hopping as from_hopping
from ._gud import hmc_sample as hmc
from ._gud import observe as observables

__all__ = [
    "Flow",
    "action",
    "from_hopping",
    "hmc",
    "mcmc",
    "merge_shards",
    "observables",
    "propose_shard",
]
