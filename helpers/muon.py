"""Muon: momentum SGD whose every step is orthogonalised, for the convolution filters (Keller Jordan's, as in
airbench94_muon, which reaches airbench's accuracy in fewer epochs).

A filter bank of shape (out, in, k, k) is a matrix of out rows. Plain SGD moves it along the gradient, which is
dominated by a few directions; Muon replaces the (momentum) gradient G = U S V^T by about U V^T, so that every
direction the batch found moves by the same amount. The filters are renormalised before each step: BatchNorm
follows every conv, so only their direction matters, and a fixed norm keeps the step's relative size fixed.
"""
from collections import defaultdict

import torch

MOMENTUM = 0.6  # airbench94_muon's
NEWTON_SCHULZ_STEPS = 3
NEWTON_SCHULZ_DTYPES = {"bf16": torch.bfloat16}  # a run in bf16 orthogonalises in bf16 (airbench does), others fp32


def orthogonalise(g: torch.Tensor, steps: int = NEWTON_SCHULZ_STEPS, eps: float = 1e-7,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """About U V^T of each matrix g = U S V^T (g: (..., rows, cols), a batch of matrices of one shape), by a quintic
    Newton-Schulz iteration in `dtype` (a few matrix products, no SVD). Its coefficients push small singular values
    up fast rather than converge: the result has singular values between about 0.5 and 1.5, which trains as well as
    exact orthogonalisation."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.to(dtype)
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)  # every singular value at most 1
    tall = x.shape[-2] > x.shape[-1]
    wide = x.mT if tall else x  # the iteration works on the smaller Gram matrix
    for _ in range(steps):
        gram = wide @ wide.mT
        wide = a * wide + (b * gram + c * gram @ gram) @ wide
    return wide.mT if tall else wide


def newton_schulz_flops(shape, steps: int = NEWTON_SCHULZ_STEPS) -> int:
    """Floating-point operations of orthogonalise on one bank of this shape: per iteration the Gram matrix
    (2 m^2 n), its square (2 m^3) and the product with the bank (2 m^2 n), m <= n the matrix's sides."""
    rows, cols = shape[0], shape[1:].numel()
    m, n = min(rows, cols), max(rows, cols)
    return steps * (4 * m * m * n + 2 * m ** 3)


class Muon(torch.optim.Optimizer):
    """Nesterov momentum, then orthogonalise the update of each filter bank viewed as (out, in * k * k); no weight
    decay: each bank is scaled back to norm sqrt(out) (filters of norm 1 on average) before its step.

    Banks of the same shape are orthogonalised together, one batched matrix product per iteration instead of one
    per bank. Under fp16's GradScaler it unscales the gradients and skips a step with an infinite gradient itself
    (_step_supports_amp_scaling), so the scaler needs no host sync for it.
    """

    _step_supports_amp_scaling = True

    def __init__(self, params, lr: float, momentum: float = MOMENTUM, precision: str = "fp32"):
        super().__init__(params, dict(lr=lr, momentum=momentum))
        self.dtype = NEWTON_SCHULZ_DTYPES.get(precision, torch.float32)

    @torch.no_grad()
    def step(self, closure=None):
        grad_scale, found_inf = getattr(self, "grad_scale", None), getattr(self, "found_inf", None)  # GradScaler's
        for group in self.param_groups:
            banks = defaultdict(list)
            for p in group["params"]:
                if p.grad is not None:
                    banks[p.shape].append(p)
            for same_shape in banks.values():
                self.step_banks(same_shape, group["lr"], group["momentum"], grad_scale, found_inf)

    def step_banks(self, params, lr: float, momentum: float, grad_scale=None, found_inf=None):
        grads = torch.stack([p.grad for p in params])
        if grad_scale is not None:
            grads = grads / grad_scale
        buffers = [self.state[p].setdefault("momentum_buffer", torch.zeros_like(p)) for p in params]
        velocity = torch.stack(buffers).mul_(momentum).add_(grads)
        update = grads.add(velocity, alpha=momentum)  # Nesterov: look ahead along the momentum
        weights = torch.stack(params)
        weights *= len(params[0]) ** 0.5 / weights.flatten(1).norm(dim=1).view(-1, *[1] * params[0].ndim)
        weights -= lr * orthogonalise(update.flatten(2), dtype=self.dtype).view_as(weights).to(weights.dtype)
        if found_inf is not None:  # an infinite gradient: the scaler lowers its scale, nothing else changes
            skip = found_inf > 0
            weights = torch.where(skip, torch.stack(params), weights)
            velocity = torch.where(skip, torch.stack(buffers), velocity)
        for p, buffer, new_weight, new_velocity in zip(params, buffers, weights, velocity):
            p.copy_(new_weight)
            buffer.copy_(new_velocity)


def is_filter_bank(p: torch.Tensor) -> bool:
    """The weights Muon trains: convolution filters that mix channels. A depthwise filter (out, 1, k, k) mixes
    none, and its matrix of k * k columns would take steps far smaller than the rest; it stays with SGD."""
    return p.ndim == 4 and p.shape[1] > 1 and p.requires_grad
