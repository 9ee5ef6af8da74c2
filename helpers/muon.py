"""Muon: momentum SGD whose every step is orthogonalised, for the convolution filters (Keller Jordan's, as in
airbench94_muon, which reaches airbench's 94% in 8 epochs instead of 9.9).

A filter bank of shape (out, in, k, k) is a matrix of out rows. Plain SGD moves it along the gradient, which is
dominated by a few directions; Muon replaces the (momentum) gradient G = U S V^T by about U V^T, so that every
direction the batch found moves by the same amount. The filters are renormalised before each step: BatchNorm
follows every conv, so only their direction matters, and a fixed norm keeps the step's relative size fixed.
"""
import torch

MOMENTUM = 0.6  # airbench94_muon's
NEWTON_SCHULZ_STEPS = 3


def orthogonalise(g: torch.Tensor, steps: int = NEWTON_SCHULZ_STEPS, eps: float = 1e-7) -> torch.Tensor:
    """About U V^T of the matrix g = U S V^T, by a quintic Newton-Schulz iteration (a few matrix products, no
    SVD). Its coefficients push small singular values up fast rather than converge: the result has singular values
    between about 0.5 and 1.5, which trains as well as exact orthogonalisation. Computed in fp32 on every device."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.float() / (g.float().norm() + eps)  # every singular value at most 1
    wide = x.T if x.shape[0] > x.shape[1] else x  # the iteration works on the smaller Gram matrix
    for _ in range(steps):
        gram = wide @ wide.T
        wide = a * wide + (b * gram + c * gram @ gram) @ wide
    return wide.T if x.shape[0] > x.shape[1] else wide


class Muon(torch.optim.Optimizer):
    """Nesterov momentum, then orthogonalise the update of each filter bank viewed as (out, in * k * k); no weight
    decay: each bank is scaled back to norm sqrt(out) (filters of norm 1 on average) before its step."""

    def __init__(self, params, lr: float, momentum: float = MOMENTUM):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                momentum = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                momentum.mul_(group["momentum"]).add_(p.grad)
                update = p.grad.add(momentum, alpha=group["momentum"])  # Nesterov: look ahead along the momentum
                p.mul_(len(p) ** 0.5 / p.norm())
                p.add_(orthogonalise(update.reshape(len(p), -1)).view_as(p).to(p.dtype), alpha=-group["lr"])


def is_filter_bank(p: torch.Tensor) -> bool:
    """The weights Muon trains: convolution filters that mix channels. A depthwise filter (out, 1, k, k) mixes
    none, and its matrix of k * k columns would take steps far smaller than the rest; it stays with SGD."""
    return p.ndim == 4 and p.shape[1] > 1 and p.requires_grad
