"""Your PyTorch network as a gud score: ``gud.torch.score(net, design)``.

``net(chi_t, gamma_t) -> eps_hat`` maps (n, d) tensors to (n, d) tensors in whitened component
space: the layout of :meth:`gud.Design.training_batch`, on which you train it with your own loop
(``loss = ((net(b["chi_t"], b["gamma_t"]) - b["eps"]) ** 2).mean()``). The score evaluates
the network without gradients for the samplers, and gives gud the vector-Jacobian products of
``torch.autograd`` for the exact densities (:func:`gud.propose`, ``gud.nll(method="ode")``):
one backward pass per row of u, all rows of a batch in one call.

Arrays move to the network's device and back. On the CPU nothing is copied: the tensors share
numpy's memory both ways. On a GPU each call copies its inputs to the device and the result
back once (``Tensor.cpu()``), which a device-to-host transfer cannot avoid.

Only this module (and :mod:`gud.unet`) imports torch; ``import gud`` does not.
"""

from __future__ import annotations

import numpy as np
import torch

import gud


def _device(net, device):
    if device is not None:
        return torch.device(device)
    for p in net.parameters() if isinstance(net, torch.nn.Module) else ():
        return p.device
    return torch.device("cpu")


def score(net, design, *, device=None, dtype=torch.float32, vjp=True, allow_nonfinite=False):
    """A :class:`gud.CallableScore` of the torch module (or function) ``net(chi_t, gamma_t)``.

    ``device``: where the inputs go (default: the device of the module's parameters, else the
    CPU). ``dtype``: torch.float32 (gud passes float32 arrays, no conversion) or torch.float64.
    ``vjp``: give gud torch.autograd's vector-Jacobian products (True) or let it take central
    differences (False: 2d extra evaluations per sample for a Jacobian).
    """
    dev = _device(net, device)
    float32 = dtype == torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")

    def to(x):
        return torch.from_numpy(np.ascontiguousarray(x)).to(device=dev, dtype=dtype)

    def back(y):
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"net: expected a torch.Tensor of shape (n, d), got {type(y).__name__}")
        # CPU: a view of the tensor's memory (no copy); GPU: the one copy to the host
        return y.detach().cpu().numpy()

    def eps_hat(chi_t, gamma_t):
        with torch.no_grad():
            return back(net(to(chi_t), to(gamma_t)))

    def eps_vjp(chi_t, gamma_t, u):
        with torch.enable_grad():
            x = to(chi_t).requires_grad_(True)
            y = net(x, to(gamma_t))
            (g,) = torch.autograd.grad(y, x, to(u))
        return back(g)

    return gud.CallableScore(eps_hat, design, vjp=eps_vjp if vjp else None, float32=float32,
                             allow_nonfinite=allow_nonfinite)


def batch(design, size, step, seed=0, device="cpu", dtype=torch.float32):
    """:meth:`gud.Design.training_batch` as tensors on ``device``: chi_t, gamma_t, eps (n, d)
    and t (n,), the batch gud's own trainer would draw at ``step``."""
    b = design.training_batch(size, step=step, seed=seed)
    return {k: torch.as_tensor(np.asarray(b[k]), device=device, dtype=dtype)
            for k in ("chi_t", "gamma_t", "eps", "t")}
