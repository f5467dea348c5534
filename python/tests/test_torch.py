"""Your network in PyTorch, end to end (issue 35): trained from Python on Design.training_batch,
then sampled, its likelihood and its exact densities through gud, with torch.autograd for the
Jacobians. `make python` installs PyTorch (pinned) into .venv; without it these tests are skipped.
"""

import numpy as np
import pytest
from framework_checks import check_bad_callables, check_exact_densities, circulant, free_field_design

import gud

torch = pytest.importorskip("torch", reason="torch is not installed (make python installs it)")


@pytest.fixture(scope="module")
def design():
    return free_field_design()


class TorchConv(torch.nn.Module):
    """eps_hat = sqrt(sigmoid(gamma)) chi + U^T conv(field, gamma image): a convolutional
    correction to the Gaussian denoiser of unit-variance components, circular padding."""

    def __init__(self, design, width=8):
        super().__init__()
        to_field, gamma_image, from_field = circulant(design)
        self.shape = tuple(design.shape)
        for name, m in (("to_field", to_field), ("gamma_image", gamma_image), ("from_field", from_field)):
            self.register_buffer(name, torch.tensor(m, dtype=torch.float32))
        c = self.shape[0]
        self.c1 = torch.nn.Conv2d(2 * c, width, 3, padding=1, padding_mode="circular")
        self.c2 = torch.nn.Conv2d(width, c, 3, padding=1, padding_mode="circular")

    def forward(self, chi, gamma):
        n = chi.shape[0]
        x = torch.cat([(chi @ self.to_field).view(n, *self.shape),
                       (gamma @ self.gamma_image / 10).view(n, *self.shape)], 1)
        y = self.c2(torch.nn.functional.silu(self.c1(x))).reshape(n, -1)
        return torch.sqrt(torch.sigmoid(gamma)) * chi + y @ self.from_field


@pytest.fixture(scope="module")
def torch_net(design):
    import gud.torch

    torch.manual_seed(0)
    net = TorchConv(design)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    held_out = gud.torch.batch(design, 512, step=10**6, seed=9)

    def loss(b):
        return ((net(b["chi_t"], b["gamma_t"]) - b["eps"]) ** 2).mean()

    with torch.no_grad():
        before = loss(held_out).item()
    for step in range(60):
        opt.zero_grad()
        loss(gud.torch.batch(design, 128, step=step, seed=1)).backward()
        opt.step()
    with torch.no_grad():
        after = loss(held_out).item()
    # 512 held-out rows: the loss's sampling error is ~ 0.1 / sqrt(512 x 16) of its value
    assert after < 0.97 * before, (before, after)
    return net


def test_torch_network_samples_like_its_own_float64_copy(design, torch_net):
    import copy

    import gud.torch

    f32, _ = gud.sample(design, gud.torch.score(torch_net, design), 64, seed=4, kind="exp", steps=8)
    net64 = copy.deepcopy(torch_net).double()
    f64, _ = gud.sample(design, gud.torch.score(net64, design, dtype=torch.float64), 64, seed=4,
                        kind="exp", steps=8)
    # float32 evaluations of a unit-scale network over 8 steps: a few 1e-6 of the field's scale
    np.testing.assert_allclose(f32, f64, rtol=0, atol=1e-4 * np.abs(f64).max())
    assert np.abs(f32 - f64).max() > 0, "the float32 path was not float32"


def test_torch_vjp_gives_the_exact_densities_of_central_differences(design, torch_net):
    import gud.torch

    import copy

    net64 = copy.deepcopy(torch_net).double()
    # float64 both ways: the central differences' truncation (h^2 f''') and rounding
    # (1e-16 / h) leave ~1e-10 per Jacobian entry (measured: 3e-11 nats in log q)
    check_exact_densities(design, gud.torch.score(net64, design, dtype=torch.float64),
                          gud.torch.score(net64, design, dtype=torch.float64, vjp=False), 1e-8)
    # the float32 network with autograd against float64 differences: float32's 6e-8 relative
    # error of every Jacobian entry, summed into log det (measured: 1.2e-6 nats in log q)
    check_exact_densities(design, gud.torch.score(torch_net, design),
                          gud.torch.score(net64, design, dtype=torch.float64, vjp=False), 2e-5)


def test_torch_bad_networks_are_clear_errors(design):
    import gud.torch

    def wrap(fn):
        return gud.torch.score(lambda chi, gamma: fn(chi, gamma), design)

    check_bad_callables(design, wrap)
    with pytest.raises(TypeError, match="torch.Tensor"):
        gud.sample(design, gud.torch.score(lambda c, g: c.numpy(), design), 4, steps=3)


def test_a_cpu_tensor_returned_as_it_is_crosses_without_a_copy(design, torch_net):
    # CallableScore takes what numpy.asarray reads: a CPU tensor (shared memory), no .numpy()
    def eps_hat(chi, gamma):
        with torch.no_grad():
            return torch_net(torch.from_numpy(chi), torch.from_numpy(gamma))

    import gud.torch

    a, _ = gud.sample(design, gud.CallableScore(eps_hat, design, float32=True), 16, seed=1, steps=5)
    b, _ = gud.sample(design, gud.torch.score(torch_net, design), 16, seed=1, steps=5)
    np.testing.assert_array_equal(a, b)


def test_the_pytorch_example_runs_end_to_end(tmp_path):
    from framework_checks import run_example

    s = run_example("torch_network.py", tmp_path)
    assert s["nfe"] == 4 and np.isfinite(s["nll_bits_per_dim"]) and s["s_per_proposal"] > 0
