"""DDPM forward process (noise schedule, add_noise) and a deterministic DDIM sampler (eta = 0) for epsilon prediction.

Schedules: "squaredcos_cap_v2" takes betas from the cosine alpha-bar curve
alpha_bar(t) = cos(((t + 0.008) / 1.008) * pi / 2) ** 2, as beta_i = min(1 - alpha_bar((i+1)/T) / alpha_bar(i/T), 0.999)
(Nichol & Dhariwal 2021); "linear" spaces betas evenly from beta_start to beta_end (Ho et al. 2020).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

MAX_BETA = 0.999


def make_betas(schedule: str, num_timesteps: int, beta_start: float, beta_end: float) -> Tensor:
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    if schedule == "squaredcos_cap_v2":
        steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        alpha_bar = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=MAX_BETA)
    raise ValueError(f"unknown beta schedule {schedule!r} (known: 'squaredcos_cap_v2', 'linear')")


class DdpmScheduler(nn.Module):
    """Holds alpha_bar_t as a buffer so it follows the policy onto its device."""

    def __init__(self, num_train_timesteps: int, schedule: str, beta_start: float = 1e-4, beta_end: float = 0.02):
        super().__init__()
        self.num_train_timesteps = num_train_timesteps
        betas = make_betas(schedule, num_train_timesteps, beta_start, beta_end)
        # Not persistent: derived from the config, so not part of the checkpoint.
        self.alphas_cumprod: Tensor
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, dim=0).float(), persistent=False)

    def add_noise(self, clean: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """q(x_t | x_0) = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, with timesteps (B,) long."""
        alpha_bar = self.alphas_cumprod[timesteps].view(-1, *([1] * (clean.ndim - 1)))
        return alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise

    def ddim_timesteps(self, num_inference_steps: int) -> list[int]:
        """Evenly spaced ("leading") timesteps, last first: e.g. 100 / 10 -> 90, 80, ..., 0."""
        step = self.num_train_timesteps // num_inference_steps
        return [i * step for i in reversed(range(num_inference_steps))]

    def ddim_sample(
        self,
        predict_noise: Callable[[Tensor, Tensor], Tensor],
        initial_noise: Tensor,
        num_inference_steps: int,
        clip_range: float | None,
    ) -> Tensor:
        """Run DDIM (eta = 0) from x_T = initial_noise. `predict_noise(x_t, t)` gets t as a (B,) long tensor.

        Each step estimates x_0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t), clips it to +-clip_range if given, and moves
        to x_prev = sqrt(a_prev) x_0 + sqrt(1 - a_prev) eps. The step after t = 0 uses a_prev = 1, so the result is the
        (clipped) x_0 estimate.
        """
        timesteps = self.ddim_timesteps(num_inference_steps)
        step = self.num_train_timesteps // num_inference_steps
        sample = initial_noise
        batch_size = sample.shape[0]
        for t in timesteps:
            t_batch = torch.full((batch_size,), t, dtype=torch.long, device=sample.device)
            eps = predict_noise(sample, t_batch)
            alpha_bar = self.alphas_cumprod[t]
            prev_t = t - step
            alpha_bar_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else alpha_bar.new_ones(())
            clean = (sample - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
            if clip_range is not None:
                clean = clean.clamp(-clip_range, clip_range)
            sample = alpha_bar_prev.sqrt() * clean + (1 - alpha_bar_prev).sqrt() * eps
        return sample
