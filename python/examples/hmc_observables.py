"""HMC ensembles of lattice phi^4 and every observable with jackknife errors, from numpy.

    python examples/hmc_observables.py [--size 8] [--samples 4096]
"""

import argparse

import gud

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--size", type=int, default=8, help="lattice size L")
p.add_argument("--samples", type=int, default=4096, help="configurations")
p.add_argument("--m2", type=float, default=-4.0, help="bare mass squared")
p.add_argument("--lam", type=float, default=8.0, help="quartic coupling")
a = p.parse_args()

configs, summary = gud.phi4.hmc(a.size, a.m2, a.lam, a.samples, seed=0)
print(f"{configs.shape[0]} configurations of {a.size} x {a.size} in {summary['wall_s']:.2f} s "
      f"(acceptance {summary['acceptance']:.2f}, tau_int(|M|) "
      f"{summary['tau_int_abs_m_trajectories']['tau']:.2f} trajectories, separation {summary['sep']})")
obs = gud.phi4.observables(configs, a.m2, a.lam)
for name in ["abs_m", "m2", "chi", "chi_2pt", "binder", "phi2", "phi4", "action_density"]:
    o = obs[name]
    print(f"{name:>15} = {o['value']:.5f} +- {o['error']:.5f}")
print(f"tau_int of |M| along the saved configurations: {obs['tau_int_abs_m']['tau']:.2f}")
