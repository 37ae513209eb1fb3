"""Adam and gradient clipping for one member: torch's fused kernels, called directly.

`torch.optim.Adam(fused=True)` runs one kernel (`torch._fused_adam_`) for every parameter, but
its wrapper imports `torch._dynamo` on first use (about 1.1 s per process after torch,
`benchmarks/import_time.py`: every run's start, on the critical path) and adds Python to each
step. `FusedAdam` calls the same kernel the same way
(bit-identical moments and weights, `tests/test_optim.py`) and keeps torch's `state_dict`
layout, so agent files and checkpoints are unchanged. `clip_grad_norm` is
`nn.utils.clip_grad_norm_`'s arithmetic without its argument handling.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

Tensor = torch.Tensor

BETAS = (0.9, 0.999)
_CLIP_EPS = 1e-6  # nn.utils.clip_grad_norm_'s
_GROUP_FLAGS = {"weight_decay": 0, "amsgrad": False, "maximize": False, "foreach": None,
                "capturable": False, "differentiable": False, "fused": True,
                "decoupled_weight_decay": False}
"""torch's Adam group keys beyond lr, betas and eps, as its fused Adam writes them: files keep
them, and `file_schema` accepts only these values."""


class FusedAdam:
    """Adam over one group of parameters, state keyed by parameter like `torch.optim.Adam`."""

    def __init__(self, params: Iterable[Tensor], lr: float, eps: float) -> None:
        self.param_groups: list[dict[str, Any]] = [
            {"lr": lr, "betas": BETAS, "eps": eps, **_GROUP_FLAGS, "params": list(params)}]
        self.state: dict[Tensor, dict[str, Tensor]] = {}

    @property
    def params(self) -> list[Tensor]:
        return self.param_groups[0]["params"]

    def zero_grad(self) -> None:
        """Drops the gradients (what torch's `zero_grad(set_to_none=True)` does)."""
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One step for the parameters that have a gradient (lazy state, as torch's)."""
        group = self.param_groups[0]
        params = [p for p in self.params if p.grad is not None]
        if not params:
            return
        for p in params:
            if p not in self.state:  # lazy, as torch's: the first step a parameter takes
                self.state[p] = _zero_slots(p)
        slots = [self.state[p] for p in params]
        steps = [s["step"] for s in slots]
        torch._foreach_add_(steps, 1)
        beta1, beta2 = group["betas"]
        torch._fused_adam_(
            params, [p.grad for p in params], [s["exp_avg"] for s in slots],
            [s["exp_avg_sq"] for s in slots], [], steps, lr=group["lr"], beta1=beta1,
            beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False,
            maximize=False)

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: state by parameter index, the group with indices for params."""
        index = {id(p): i for i, p in enumerate(self.params)}
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"state": {index[id(p)]: dict(s) for p, s in self.state.items()},
                "param_groups": [{**group, "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Loads `state_dict()` output (or torch's Adam's): copies, the moments in each
        parameter's dtype and device, the step counts in float32 there (as fused Adam keeps
        them)."""
        groups = state["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError("loaded optimizer state does not match this optimizer's parameters")
        self.param_groups[0].update({k: v for k, v in groups[0].items() if k != "params"})
        self.param_groups[0]["betas"] = tuple(self.param_groups[0]["betas"])
        self.state = {}
        for idx, slots in state["state"].items():
            param = self.params[int(idx)]
            self.state[param] = {
                key: torch.as_tensor(value).to(
                    param.device, torch.float32 if key == "step" else param.dtype, copy=True)
                for key, value in slots.items()}


def _zero_slots(param: Tensor) -> dict[str, Tensor]:
    return {"step": torch.zeros((), dtype=torch.float32, device=param.device),
            "exp_avg": torch.zeros_like(param), "exp_avg_sq": torch.zeros_like(param)}


@torch.no_grad()
def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """Scales the gradients so that their joint 2-norm is at most `max_norm`; returns the norm
    before clipping (`nn.utils.clip_grad_norm_`'s result, to the bit)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + _CLIP_EPS), max=1.0))
    return total
