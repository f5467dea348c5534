"""Exact sampling on a ``dask.distributed`` cluster (issue 33): shards of proposals mapped over
the workers, merged into the single run's chain bit for bit.

Proposal k always comes from stream k of the seed, so each task proposes an index range on its
own (:func:`gud.phi4.propose_shard`) and the client merges the shard files
(:func:`gud.phi4.merge_shards`). The workers build the design and the proposal themselves from
what pickles: ``proposal_from(config_text, flow_path)`` (module level, importable on every
worker) or any picklable function returning ``(design, proposal)``. The shard files go to a
folder every worker and the client can read (a shared file system on a cluster;
``dask-jobqueue``'s ``SLURMCluster`` puts the workers on Slurm).

    >>> from dask.distributed import Client, LocalCluster
    >>> import functools, gud.dask
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))
    >>> make = functools.partial(gud.dask.proposal_from, open("C.toml").read(), "F.safetensors")
    >>> run = gud.dask.mcmc(client, make, -4.0, 4.572, 4096, shards=8, folder="shards")

Importing this module does not import dask; :func:`mcmc` needs ``dask.distributed``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from . import _gud


def proposal_from(config_text: str, flow_path: Optional[str] = None, score: str = "base"):
    """(design, proposal) on a worker: the design of ``config_text`` (fitted to its data; phi^4
    data are generated once and cached) and the flow at ``flow_path``, or else the analytic
    score ``score`` of the design."""
    design = _gud.Design.from_config(config_text)
    if flow_path is not None:
        return design, _gud.Flow.load(flow_path)
    return design, _gud.Score(design, score)


def _propose(make, m2, lam, first, count, path, seed, keys):
    design, proposal = make()
    return _gud.propose_shard(design, proposal, m2, lam, first, count, path, seed=seed, **keys)


def mcmc(
    client: Any,
    make: Callable[[], Any],
    m2: float,
    lam: float,
    proposals: int,
    shards: int,
    folder: str,
    seed: int = 0,
    hmc_reference: int = 0,
    **keys: Any,
) -> dict:
    """:func:`gud.phi4.mcmc` on a Dask cluster: ``shards`` tasks of about ``proposals / shards``
    proposals each (task j: proposals [first_j, first_j + count_j)), written to ``folder`` as
    ``shard-j.npz``, then merged here. ``make()`` runs on the workers and returns (design,
    proposal); ``keys`` are sampler settings as in :func:`gud.phi4.mcmc`. Returns the dict of
    :func:`gud.phi4.mcmc`, bit for bit the single run's but for the timings."""
    if not isinstance(proposals, int) or proposals < 2:
        raise ValueError(f"proposals: expected an integer of at least 2, got {proposals!r}")
    if not isinstance(shards, int) or not 1 <= shards <= proposals:
        raise ValueError(f"shards: expected an integer from 1 to proposals, got {shards!r}")
    os.makedirs(folder, exist_ok=True)
    bounds = [proposals * j // shards for j in range(shards + 1)]
    paths = [os.path.join(folder, f"shard-{j}.npz") for j in range(shards)]
    futures = [
        client.submit(
            _propose, make, m2, lam, bounds[j], bounds[j + 1] - bounds[j], paths[j], seed, keys,
            pure=False,
        )
        for j in range(shards)
    ]
    client.gather(futures)
    return _gud.merge_shards(paths, hmc_reference=hmc_reference)
