#!/usr/bin/env bash
# Issue 16's measurement: exact sampling with a trained phi^4 run (by default L = 8, m2 = -4,
# lam = 8; SIZE, M2 and LAM in the environment for others): `gud phi4 mcmc` at K grid points
# of the exp sampler, each observable of the chain and of the reweighted proposals against an
# independent HMC reference (16384 configurations, seed 1000), with acceptance, ESS/N, tau_int
# and the cost beside HMC's.
# Usage: [SIZE=L M2=M LAM=G] scripts/measure-exact.sh RUN OUTDIR PROPOSALS K...
#        (e.g. out/base/phi4 out/exact 1024 5 10; K with a suffix t, e.g. 10t: on the grid of
#        `gud tune-grid --steps K`, written to OUTDIR/grid_KK.json; `ode` or e.g. `ode1e-3`: the
#        continuous probability-flow ODE at that tolerance, default 1e-4)
set -euo pipefail
run=$1 out=$2 n=$3
shift 3
gud=${GUD:-target/release/gud}
mkdir -p "$out"
size=${SIZE:-8} m2=${M2:--4} lam=${LAM:-8}
ref="$out/hmc_L${size}_m2${m2}_lam${lam}_n16384_seed1000.npy"
[ -f "$ref" ] || "$gud" phi4 sample --size "$size" --m2="$m2" --lam "$lam" --samples 16384 --seed 1000 --out "$ref" > /dev/null
"$gud" phi4 observe "$ref" --m2="$m2" --lam "$lam" --json > "$ref.json"
for k in "$@"; do
  grid=(--steps "$k")
  if [[ $k == ode* ]]; then
    tol=${k#ode}
    grid=(--tol "${tol:-1e-4}")
  elif [[ $k == *t ]]; then
    "$gud" tune-grid --run "$run" --steps "${k%t}" > "$out/grid_K$k.json"
    grid=(--times "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["times_arg"])' "$out/grid_K$k.json")")
  fi
  "$gud" phi4 mcmc --run "$run" "${grid[@]}" --proposals "$n" --seed 1 --hmc 4096 --json \
    --out "$out/chain_K$k.npy" > "$out/mcmc_K$k.json"
  python3 - "$out/mcmc_K$k.json" "$ref.json" "$k" <<'PY'
import json, math, sys
r, ref, k = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
names = [("<|M|>", "abs_m"), ("<M^2>", "m2"), ("chi", "chi"), ("chi_2pt", "chi_2pt"),
         ("Binder", "binder"), ("<phi^2>", "phi2"), ("<phi^4>", "phi4"), ("S/V", "action_density")]
def z(o, key):
    a, b = o[key], ref[key]
    return (a["value"] - b["value"]) / math.hypot(a["error"], b["error"])
h = r["hmc"]
print(f"K = {k:>2} ({r['sampling'].get('nfe')} NFE), {r['proposals']} proposals: acceptance {r['acceptance']:.3f}, "
      f"ESS/N {r['ess_fraction']:.3f}, std log w {r['log_w_std']:.3f}, longest rejection run "
      f"{r['longest_rejection_run']}, tau_int(|M|) {r['tau_int_abs_m']['tau']:.2f}, "
      f"log Z {r['log_z']:.3f} +- {r['log_z_error']:.3f}")
print(f"       cost {r['s_per_proposal']:.3f} s/proposal, {r['s_per_effective_sample']:.3f} s per effective "
      f"sample; HMC {h['s_per_effective_sample']:.2e} s per effective sample")
for label, o in [("raw", r["raw"]), ("chain", r["chain"]), ("reweighted", r["reweighted"])]:
    zs = [(n, z(o, key)) for n, key in names]
    print(f"       {label:>10}: max|z| {max(abs(v) for _, v in zs):.2f}  " + " ".join(f"{n}={v:+.2f}" for n, v in zs))
PY
done
