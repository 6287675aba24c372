"""Optimisation pieces a run needs: AdamW with the policy's preset, a warmup + cosine learning-rate schedule, and an
exponential moving average (EMA) of the parameters for the policies that evaluate with EMA weights."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]) -> AdamW:
    return AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, betas=betas, weight_decay=weight_decay)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at `step`: linear warmup from ~0 to 1 over `warmup_steps`, then a cosine
    decay to 0 at `total_steps` (Diffusion Policy's / LeRobot's `cosine` schedule with warmup)."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_constant_factor(step: int, warmup_steps: int) -> float:
    """Linear warmup from ~0 to 1 over `warmup_steps`, then 1 (LeRobot's ACT trains at a constant rate)."""
    return (step + 1) / (warmup_steps + 1) if step < warmup_steps else 1.0


def make_scheduler(optimizer: Optimizer, warmup_steps: int, total_steps: int, kind: str = "cosine") -> LambdaLR:
    if kind not in ("cosine", "constant"):
        raise ValueError(f"unknown scheduler {kind!r} (known: cosine, constant)")

    # A closure, not an object: LambdaLR then keeps only counters in its state_dict, which is what we checkpoint.
    def factor(step: int) -> float:
        if kind == "constant":
            return warmup_constant_factor(step, warmup_steps)
        return warmup_cosine_factor(step, warmup_steps, total_steps)

    return LambdaLR(optimizer, factor)


def scheduler_state_to_json(scheduler: LambdaLR) -> dict:
    state = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in state.items()}


def scheduler_state_from_json(scheduler: LambdaLR, state: dict) -> None:
    full = scheduler.state_dict()
    full.update(state)
    scheduler.load_state_dict(full)


class Ema:
    """An EMA of a module's floating-point parameters with Diffusion Policy's power-law warmup of the decay:
    decay(step) = min(max_decay, 1 - (1 + step) ** -power), so the first update copies the weights and the average
    lengthens as training goes on. Buffers (normalisation stats) are not averaged; they are copied from the model."""

    def __init__(self, model: nn.Module, power: float, max_decay: float):
        self.power = power
        self.max_decay = max_decay
        self.updates = 0
        self.shadow: dict[str, Tensor] = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.dtype.is_floating_point
        }

    def decay(self) -> float:
        return min(self.max_decay, 1.0 - (1.0 + self.updates) ** -self.power)

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        decay = self.decay()
        for name, p in model.named_parameters():
            shadow = self.shadow.get(name)
            if shadow is not None:
                shadow.lerp_(p.detach(), 1.0 - decay)
        self.updates += 1
        return decay

    def averaged_state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """The model's state_dict with the averaged parameters in place of the raw ones."""
        state = model.state_dict()
        return {k: self.shadow.get(k, v) for k, v in state.items()}

    def state_dict(self) -> dict[str, Tensor]:
        return {**{f"shadow.{k}": v for k, v in self.shadow.items()}, "updates": torch.tensor(self.updates)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for name in self.shadow:
            key = f"shadow.{name}"
            if key not in state:
                raise KeyError(f"EMA state lacks {name}")
            self.shadow[name].copy_(state[key])
        self.updates = int(state["updates"])
