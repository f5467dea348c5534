"""The PyTorch module gud.unet against the gud binary's network (`gud export`).

Needs an importable torch (`make python` installs it into .venv; skipped otherwise) and the
gud binary built with the network.
"""

import pathlib
import subprocess

import numpy as np
import pytest

import gud

torch = pytest.importorskip(
    "torch", reason="torch is not importable here (`make python` installs it into .venv)"
)
unet = pytest.importorskip("gud.unet")

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = ROOT / "target" / "debug" / "gud"

# Two architectures that between them use every part of the network: the Fourier basis with
# the global head and circular padding; the pixel basis (gamma channel) with zero padding,
# two blocks per level and three levels.
CONFIGS = {
    "fourier-global": """
[data]
kind = "free-field"
size = 4
m2 = 0.5
samples = 256
seed = 1
[design]
basis = { kind = "fourier" }
prior = { kind = "free" }
schedule = { kind = "rg" }
[network]
width = 8
multipliers = [1, 2]
groups = 4
embedding = 16
global = true
[train]
steps = 30
batch = 32
lr = 0.01
warmup = 2
ema = 0.5
""",
    "pixel-gamma": """
[data]
kind = "free-field"
size = 8
m2 = 1.0
samples = 256
seed = 2
[design]
basis = { kind = "pixel" }
prior = { kind = "white" }
schedule = { kind = "cosine" }
[network]
width = 8
multipliers = [1, 2, 2]
blocks = 2
groups = 4
embedding = 16
padding = "zeros"
[train]
steps = 30
batch = 32
lr = 0.01
warmup = 2
ema = 0.5
""",
}


def gud_cli(*args):
    r = subprocess.run([str(BINARY), *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0 and "built without" in r.stderr:
        pytest.skip("the gud binary was built without the network (feature nn)")
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def exported(request, tmp_path_factory):
    if not BINARY.exists():
        pytest.skip("the gud binary is not built (cargo build)")
    tmp = tmp_path_factory.mktemp(request.param)
    cfg = tmp / "config.toml"
    cfg.write_text(CONFIGS[request.param])
    gud_cli("train", "--config", cfg, "--out", tmp / "run")
    gud_cli("export", "--run", tmp / "run", "--out", tmp / "w.safetensors",
            "--check", tmp / "check.safetensors", "--check-rows", 24)
    check, meta = unet.read_safetensors(tmp / "check.safetensors")
    assert meta["format"] == "gud-export-check/1"
    return tmp, check


def test_the_module_reproduces_the_network(exported):
    tmp, check = exported
    net, info = unet.load(tmp / "w.safetensors")
    with torch.no_grad():
        y = net(torch.from_numpy(check["x"]), torch.from_numpy(check["gamma"])).numpy()
    assert y.shape == check["y"].shape
    scale = np.abs(check["y"]).max()
    assert scale > 1e-3, "the trained correction is not trivially zero"
    # float32 precision: a few ulps of the output's scale, summed over the layers
    np.testing.assert_allclose(y, check["y"], rtol=0, atol=2e-5 * scale)


def test_inputs_and_eps_hat_from_the_design(exported):
    tmp, check = exported
    _, info = unet.load(tmp / "w.safetensors")
    design = gud.Design.from_config(info["config"])
    x, g = unet.inputs(design, info, check["chi_t"], check["gamma_t"])
    np.testing.assert_allclose(x, check["x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(g, check["gamma"])
    score = unet.score(design, tmp / "w.safetensors")
    eps = score.eps_hat(check["chi_t"], check["gamma_t"])
    np.testing.assert_allclose(eps, check["eps_hat"], rtol=0, atol=1e-5)


def test_the_weights_file_holds_the_ema_weights_only(exported):
    tmp, _ = exported
    arrays, meta = unet.read_safetensors(tmp / "w.safetensors")
    assert meta["format"] == "gud-weights/1"
    assert not any(k.startswith(("ema.", "net.", "adam")) for k in arrays)
    net, _ = unet.load(tmp / "w.safetensors")
    assert set(net.state_dict()) == set(arrays)


def test_python_samples_of_the_exported_network_equal_the_binarys(exported):
    # issue 35: the same weights through PyTorch in this process (gud.unet.score, a callable
    # score) and through gud-nn in the binary (`gud sample --run`): the same samples to float32
    # precision (both evaluate float32 networks; 6 exp steps carry the differences along)
    tmp, _ = exported
    out = tmp / "binary.npy"
    gud_cli("sample", "--run", tmp / "run", "--sampler", "exp", "--steps", 6, "--samples", 32,
            "--seed", 3, "--out", out)
    binary = np.load(out)  # (n, h, w) for one channel
    _, info = unet.load(tmp / "w.safetensors")
    design = gud.Design.from_config(info["config"])
    ours, _ = gud.sample(design, unet.score(design, tmp / "w.safetensors"), 32, seed=3,
                         kind="exp", steps=6)
    ours = ours.reshape(binary.shape)
    scale = np.abs(binary).max()
    np.testing.assert_allclose(ours, binary, rtol=0, atol=1e-4 * scale)
