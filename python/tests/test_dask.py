"""Exact sampling on a dask.distributed LocalCluster of 2 worker processes (issue 33): the
shards mapped over the workers and merged give the local run's chain, weights and report bit
for bit (the flow and an analytic score)."""

import functools

import numpy as np
import pytest

distributed = pytest.importorskip("dask.distributed")

import gud  # noqa: E402
import gud.dask  # noqa: E402

CFG = """
[data]
kind = "free-field"
size = 4
m2 = 0.5
samples = 256
seed = 1

[design]
mean = "zero"
basis = { kind = "fourier" }
prior = { kind = "free" }

[sampler]
kind = "exp"
steps = 4
"""

TIMINGS = {"wall_s", "s_per_proposal", "s_per_effective_sample", "s_per_sample_without_log_q",
           "log_q_cost_ratio"}


def same_run(a, b):
    np.testing.assert_array_equal(a["chain"], b["chain"])
    for key in ("proposals", "log_q", "log_p"):
        assert a[key].tobytes() == b[key].tobytes(), key
    ra = {k: v for k, v in a["report"].items() if k not in TIMINGS}
    rb = {k: v for k, v in b["report"].items() if k not in TIMINGS}
    assert ra == rb


def test_issue33_shards_over_a_dask_local_cluster_equal_the_local_run(tmp_path):
    design = gud.Design.from_config(CFG)
    flow = gud.phi4.Flow.train(design, -1.0, 1.0, steps=10, batch=8, stages=2, layers=1, hidden=4)
    flow_path = tmp_path / "f.safetensors"
    flow.save(str(flow_path))
    local_flow = gud.phi4.mcmc(design, flow, -1.0, 1.0, 120, seed=2)
    local_base = gud.phi4.mcmc(design, gud.Score(design, "base"), -1.0, 1.0, 120, seed=2)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster, distributed.Client(cluster) as client:
        make = functools.partial(gud.dask.proposal_from, CFG, str(flow_path))
        run = gud.dask.mcmc(client, make, -1.0, 1.0, 120, shards=5,
                            folder=str(tmp_path / "flow"), seed=2)
        same_run(run, local_flow)
        make = functools.partial(gud.dask.proposal_from, CFG)
        run = gud.dask.mcmc(client, make, -1.0, 1.0, 120, shards=3,
                            folder=str(tmp_path / "base"), seed=2)
        same_run(run, local_base)
    # a missing shard is an error that names the shard after the gap
    paths = [str(tmp_path / "base" / f"shard-{j}.npz") for j in (0, 2)]
    with pytest.raises(ValueError, match="shard-2.npz"):
        gud.phi4.merge_shards(paths)
    with pytest.raises(ValueError, match="shards"):
        gud.dask.mcmc(None, make, -1.0, 1.0, 10, shards=0, folder=str(tmp_path / "x"))
