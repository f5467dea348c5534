#!/usr/bin/env bash
# Issue 32's measurement: exact sampling at scale with the local coupling flow. For each
# L:LAM:STEPS[:INIT] it trains `gud phi4 flow` on examples/phi4_L$L.toml (examples/phi4.toml's
# design at L = 8) for STEPS steps (0: none), continuing INIT (a flow file, e.g. the one of a
# smaller L) when given, then runs `gud phi4 mcmc --flow` with PROPOSALS proposals (seed 1)
# beside the project's HMC (--hmc 1024), and compares every observable of the chain and of the
# reweighted proposals with an independent HMC reference (REF configurations, seed 1000).
# FLOW_ARGS: more flags of `gud phi4 flow` (e.g. "--path-gradient --tails").
# Usage: scripts/measure-flow.sh OUTDIR PROPOSALS REF L:LAM:STEPS[:INIT]...
#   e.g. scripts/measure-flow.sh out/flow 4096 4096 8:6.008:4000 16:5.0:4000 32:4.572:300:out/flow/L16.safetensors
set -euo pipefail
out=$1 n=$2 nref=$3
shift 3
gud=${GUD:-target/release/gud}
mkdir -p "$out"
for spec in "$@"; do
  IFS=: read -r size lam steps init <<< "$spec"
  cfg="$out/phi4_L${size}_lam${lam}.toml"
  base=examples/phi4_L${size}.toml
  [ -f "$base" ] || base=examples/phi4.toml
  sed -e "s/^size = .*/size = $size/" -e "s/^lam = .*/lam = $lam/" -e "s/^samples = .*/samples = 4096/" "$base" > "$cfg"
  flow="$out/L${size}_lam${lam}.safetensors"
  train_s=0
  if [ "$steps" -gt 0 ]; then
    t0=$(date +%s.%N)
    "$gud" phi4 flow --config "$cfg" --steps "$steps" ${init:+--init "$init"} ${FLOW_ARGS:-} --json --out "$flow" > "$flow.json"
    train_s=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$t0" "$(date +%s.%N)")
  else
    cp "$init" "$flow"
  fi
  ref="$out/hmc_L${size}_lam${lam}_n${nref}_seed1000.npy"
  [ -f "$ref" ] || "$gud" phi4 sample --size "$size" --m2=-4 --lam "$lam" --samples "$nref" --seed 1000 --out "$ref" > /dev/null
  "$gud" phi4 observe "$ref" --m2=-4 --lam "$lam" --json > "$ref.json"
  "$gud" phi4 mcmc --config "$cfg" --flow "$flow" --proposals "$n" --seed 1 --hmc 1024 --json \
    --out "$out/chain_L${size}.npy" > "$out/mcmc_L${size}.json"
  python3 - "$out/mcmc_L${size}.json" "$ref.json" "$spec" "$train_s" <<'PY'
import json, math, sys
r, ref, spec, train_s = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3], sys.argv[4]
names = [("<|M|>", "abs_m"), ("<M^2>", "m2"), ("chi", "chi"), ("chi_2pt", "chi_2pt"),
         ("Binder", "binder"), ("<phi^2>", "phi2"), ("<phi^4>", "phi4"), ("S/V", "action_density")]
def z(o, key):
    a, b = o[key], ref[key]
    return (a["value"] - b["value"]) / math.hypot(a["error"], b["error"])
h, v = r["hmc"], r["l"] ** 2
mz = {label: max(abs(z(o, key)) for _, key in names) for label, o in
      [("raw", r["raw"]), ("chain", r["chain"]), ("reweighted", r["reweighted"])]}
print(f"| {r['l']} | {r['lam']} | {spec} | {train_s} | {r['acceptance']:.3f} | {r['ess_fraction']:.3f} | "
      f"{r['tau_int_abs_m']['tau']:.2f} | {r['log_z'] / v:.6f} +- {r['log_z_error'] / v:.6f} | "
      f"{r['s_per_proposal']:.2e} | {r['s_per_sample_without_log_q']:.2e} | {r['log_q_cost_ratio']:.2f} | "
      f"{r['s_per_effective_sample']:.2e} | {h['s_per_effective_sample']:.2e} | "
      f"{mz['raw']:.2f} | {mz['chain']:.2f} | {mz['reweighted']:.2f} |")
PY
done
