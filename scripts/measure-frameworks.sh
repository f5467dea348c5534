#!/usr/bin/env bash
# Issue 35's measurement: your own network in PyTorch and in JAX (python/examples/
# torch_network.py, jax_network.py) against gud's own U-Net on the same design
# (examples/images/fashion_mnist_columns.toml, Fashion-MNIST 16 x 16 from `make data`), each
# trained STEPS steps of batch 64: training time, NLL (-ELBO, 100 steps, 1000 test images) in
# bits/dim, the classifier Frechet distance of 2000 samples (config's sampler) against 2000
# test images (one classifier for all three), and the cost per sampler step.
# Usage: scripts/measure-frameworks.sh [OUTDIR] [STEPS]   (defaults: out/frameworks 1500)
set -euo pipefail
out=${1:-out/frameworks} steps=${2:-1500}
gud=${GUD:-target/release/gud}
py=.venv/bin/python
cfg=examples/images/fashion_mnist_columns.toml
test_images=data/fashion-mnist/t10k-images-idx3-ubyte.gz
mkdir -p "$out"
[ -f "$out/clf.safetensors" ] || "$gud" classifier --config "$cfg" --out "$out/clf.safetensors" --steps 1500
"$py" python/examples/torch_network.py --steps "$steps" --out "$out/torch"
"$py" python/examples/jax_network.py --steps "$steps" --out "$out/jax"
if [ ! -f "$out/gud/summary.json" ]; then
  rm -rf "$out/gud"
  t0=$(date +%s.%N)
  "$gud" train --config "$cfg" --steps "$steps" --out "$out/gud"
  t1=$(date +%s.%N)
  "$gud" nll --run "$out/gud" --samples 1000 --posterior-variance none --json > "$out/gud/nll.json"
  "$gud" sample --run "$out/gud" --samples 2000 --seed 1 --out "$out/gud/samples.npy"
  "$py" -c "import json, sys; n = json.load(open(sys.argv[3])); json.dump({'framework': 'gud-nn (the binary)', 'train_s': float(sys.argv[2]) - float(sys.argv[1]), 'nll_bits_per_dim': n['bits_per_dim'], 'nll_bits_per_dim_se': n['bits_per_dim_se']}, open(sys.argv[4], 'w'))" "$t0" "$t1" "$out/gud/nll.json" "$out/gud/summary.json"
fi
for x in torch jax gud; do
  "$gud" eval --generated "$out/$x/samples.npy" --reference "$test_images" --resize 16,16 \
    --limit 2000 --classifier "$out/clf.safetensors" --json > "$out/$x/eval.json"
done
"$py" - "$out" <<'PY'
import json, sys
out = sys.argv[1]
print(f"{'network':<22} {'train s':>8} {'NLL bits/dim':>16} {'Frechet':>8} {'step ms':>8} {'forward ms':>10} {'s/proposal':>10}")
for x in ("torch", "jax", "gud"):
    s = json.load(open(f"{out}/{x}/summary.json"))
    e = json.load(open(f"{out}/{x}/eval.json"))
    fd = e.get("classifier_frechet")
    f = lambda k, fmt: format(s[k], fmt) if k in s else "-"
    print(f"{s['framework']:<22} {s['train_s']:>8.0f} {s['nll_bits_per_dim']:>9.3f} +- {s['nll_bits_per_dim_se']:.3f} "
          f"{fd if fd is None else format(fd, '.1f'):>8} {f('step_ms', '.1f'):>8} {f('forward_ms', '.1f'):>10} {f('s_per_proposal', '.2f'):>10}")
PY
