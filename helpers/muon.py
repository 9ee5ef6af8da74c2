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
    x = g.to(dtype=dtype, memory_format=torch.contiguous_format, copy=True)
    return orthogonalise_stacks([x], steps, eps)[0]


def orthogonalise_stacks(stacks: list[torch.Tensor], steps: int = NEWTON_SCHULZ_STEPS,
                         eps: float = 1e-7) -> list[torch.Tensor]:
    """orthogonalise for several batches of matrices at once, each (..., rows, cols) of its own shape, contiguous;
    they are normalised in place, and the results are contiguous too. Each matrix product runs per batch, every
    element-wise step as one torch._foreach_ op over all of them, whose lists keep equal sizes and strides at each
    position: one CUDA kernel per op (ATen's ForeachUtils.h), not one per tensor. Each matrix gets the same
    arithmetic, in the same order, as it would alone."""
    a, b, c = 3.4445, -4.7750, 2.0315
    matrices = [m for x in stacks for m in x.view(-1, *x.shape[-2:]).unbind()]
    norms = torch._foreach_norm(matrices)
    torch._foreach_add_(norms, eps)
    for matrix, norm in zip(matrices, norms):  # every singular value at most 1; a scalar each: no _foreach_ op
        matrix.div_(norm)
    tall = [x.shape[-2] > x.shape[-1] for x in stacks]
    # The iteration works on the smaller Gram matrix: a tall stack's transpose, made contiguous so that every list
    # keeps one layout (a transposed view beside the products' contiguous results would not).
    wides = [x.mT.contiguous() if t else x for x, t in zip(stacks, tall)]
    n = len(wides)
    for _ in range(steps):
        grams = [w @ w.mT for w in wides]
        scaled = torch._foreach_mul(grams + grams + list(wides), [b] * n + [c] * n + [a] * n)
        polynomials = scaled[:n]  # b * gram + c * gram @ gram
        torch._foreach_add_(polynomials, [c_gram @ gram for c_gram, gram in zip(scaled[n:2 * n], grams)])
        wides = torch._foreach_add(scaled[2 * n:], [p @ w for p, w in zip(polynomials, wides)])
    return [w.mT.contiguous() if t else w for w, t in zip(wides, tall)]


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
    per bank, and every element-wise step is one torch._foreach_ op over all banks: a step on a GPU is bound by
    its kernel launches, not its arithmetic. On CUDA such an op is one kernel only when its lists' tensors share
    sizes and strides at each position, so there the work tensors are laid out like the parameters (Workspace).
    The momentum buffers and the work tensors are made once (tests/test_muon.py counts the ops of a step and
    checks every _foreach_ op's layouts). Under fp16's GradScaler it unscales the
    gradients and skips a step with an infinite gradient itself (_step_supports_amp_scaling), so the scaler needs
    no host sync for it.
    """

    _step_supports_amp_scaling = True

    def __init__(self, params, lr: float, momentum: float = MOMENTUM, precision: str = "fp32"):
        super().__init__(params, dict(lr=lr, momentum=momentum))
        self.dtype = NEWTON_SCHULZ_DTYPES.get(precision, torch.float32)
        self.workspaces = {}
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p)

    @torch.no_grad()
    def step(self, closure=None):
        grad_scale, found_inf = getattr(self, "grad_scale", None), getattr(self, "found_inf", None)  # GradScaler's
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self.step_banks(self.workspace(params), group["lr"], group["momentum"], grad_scale, found_inf)

    def workspace(self, params) -> "Workspace":
        """The work tensors of these banks, made on their first step."""
        key = tuple(id(p) for p in params)
        if key not in self.workspaces:
            self.workspaces[key] = Workspace(params, self.dtype, like_params=multi_tensor_kernels(params[0].device))
        return self.workspaces[key]

    def step_banks(self, work: "Workspace", lr: float, momentum: float, grad_scale=None, found_inf=None):
        params = work.params
        grads = [p.grad for p in params]
        if grad_scale is not None:
            grads = torch._foreach_div(grads, grad_scale)
        buffers = [self.state[p]["momentum_buffer"] for p in params]
        if found_inf is None:  # the buffers move in place; under fp16's scaler a copy, as the step may be skipped
            velocity = buffers
            torch._foreach_mul_(velocity, momentum)
        else:
            velocity = torch._foreach_mul(buffers, momentum)
        torch._foreach_add_(velocity, grads)
        updates = torch._foreach_add(grads, velocity, alpha=momentum)  # Nesterov: look ahead along the momentum
        torch._foreach_copy_(work.weights, params)
        scales = torch._foreach_reciprocal(torch._foreach_norm(work.weights))
        torch._foreach_mul_(scales, work.target_norms)
        for weight, scale in zip(work.weights, scales):  # a scalar each: no _foreach_ op takes it in one kernel
            weight.mul_(scale)
        torch._foreach_copy_(work.matrices, updates)
        orthogonal = orthogonalise_stacks(work.stacks)
        torch._foreach_copy_(work.steps, work.per_bank(orthogonal))
        torch._foreach_mul_(work.steps, lr)
        torch._foreach_sub_(work.weights, work.steps)
        new_weights = work.weights
        if found_inf is not None:  # an infinite gradient: the scaler lowers its scale, nothing else changes
            skip = found_inf > 0
            new_weights = [torch.where(skip, p, w) for p, w in zip(params, new_weights)]
            torch._foreach_copy_(buffers, [torch.where(skip, b, v) for b, v in zip(buffers, velocity)])
        torch._foreach_copy_(params, new_weights)


def multi_tensor_kernels(device: torch.device) -> bool:
    """Whether torch's _foreach_ ops run one kernel over a whole list on this device (CUDA). Elsewhere they loop over
    the tensors, and Muon's work tensors stay contiguous: the order of arithmetic the CPU presets' recorded
    results were computed in (laid out like channels_last parameters, the Newton-Schulz iteration would sum each
    filter's columns in another order, and round differently)."""
    return device.type == "cuda"


class Workspace:
    """Muon's work tensors for a list of banks, made once. Per shape: the stack of its banks' updates as matrices
    (rows, cols) in the orthogonalisation's dtype, which the batched matrix products read, and stacks of weights
    and of steps in the weights' dtype, each a bank after another. A bank's slice of any of them is viewed with the
    strides of bank_strides. Every list holds one view per bank, in the order of `params` (grouped by shape)."""

    def __init__(self, params, dtype: torch.dtype, like_params: bool = False):
        by_shape = defaultdict(list)
        for p in params:
            by_shape[p.shape].append(p)
        self.groups = list(by_shape.values())
        self.params = [p for banks in self.groups for p in banks]
        self.strides = [bank_strides(banks[0], like_params) for banks in self.groups]
        self.stacks = [torch.empty(len(banks), len(banks[0]), banks[0][0].numel(), dtype=dtype,
                                   device=banks[0].device) for banks in self.groups]
        self.matrices = self.per_bank(self.stacks)
        self.weights, self.steps = (self.per_bank([torch.empty(len(banks), banks[0].numel(), dtype=banks[0].dtype,
                                                               device=banks[0].device) for banks in self.groups])
                                    for _ in range(2))
        self.target_norms = [len(p) ** 0.5 for p in self.params]  # sqrt(out): filters of norm 1 on average

    def per_bank(self, stacks: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each bank's slice of contiguous per-shape stacks, viewed in the bank's own shape and work strides."""
        return [bank for stack, banks, strides in zip(stacks, self.groups, self.strides)
                for bank in stack.as_strided((len(banks), *banks[0].shape), (banks[0].numel(), *strides)).unbind()]


def bank_strides(p: torch.Tensor, like_param: bool) -> tuple[int, ...]:
    """The strides of a bank's work tensors: with like_param, the parameter's own where its rows lie one after
    another (a channels_last bank stores each row (in, k, k) as (k, k, in)), so that _foreach_ ops between the two
    keep equal layouts; else contiguous. A row is a matrix row in memory order either way."""
    if like_param and p.stride(0) == p[0].numel():
        return p.stride()
    return torch.empty(p.shape, device="meta").stride()


def is_filter_bank(p: torch.Tensor) -> bool:
    """The weights Muon trains: convolution filters that mix channels. A depthwise filter (out, 1, k, k) mixes
    none, and its matrix of k * k columns would take steps far smaller than the rest; it stays with SGD."""
    return p.ndim == 4 and p.shape[1] > 1 and p.requires_grad
