"""The 1-D conditional UNet of Diffusion Policy: temporal convolutions over the action window, conditioned by FiLM on
[diffusion-step embedding, global observation condition] in every residual block."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SinusoidalStepEmbedding(nn.Module):
    """Transformer-style sin/cos features of the (integer) diffusion step."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        frequencies = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.frequencies: Tensor
        self.register_buffer("frequencies", frequencies, persistent=False)
        self.dim = dim

    def forward(self, timesteps: Tensor) -> Tensor:
        angles = timesteps.float().unsqueeze(-1) * self.frequencies
        embedding = torch.cat([angles.sin(), angles.cos()], dim=-1)
        if embedding.shape[-1] < self.dim:  # odd dim: pad one zero column
            embedding = nn.functional.pad(embedding, (0, 1))
        return embedding


class ConvGroupNormMish(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int):
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_channels),
            nn.Mish(),
        )


class ConditionalResidualBlock(nn.Module):
    """Two conv blocks; between them the condition sets a per-channel bias (and scale, with FiLM scale modulation)."""

    def __init__(
        self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int, n_groups: int, film_scale: bool
    ):
        super().__init__()
        self.out_channels = out_channels
        self.film_scale = film_scale
        self.conv_in = ConvGroupNormMish(in_channels, out_channels, kernel_size, n_groups)
        self.conv_out = ConvGroupNormMish(out_channels, out_channels, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, out_channels * (2 if film_scale else 1)))
        self.residual = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """x (B, C_in, T), cond (B, cond_dim) -> (B, C_out, T)."""
        hidden = self.conv_in(x)
        film = self.film(cond).unsqueeze(-1)
        if self.film_scale:
            scale, bias = film.split(self.out_channels, dim=1)
            hidden = scale * hidden + bias
        else:
            hidden = hidden + film
        return self.conv_out(hidden) + self.residual(x)


class ConditionalUnet1d(nn.Module):
    """Input (B, T, action_dim) noisy actions, (B,) diffusion steps and (B, global_cond_dim) -> (B, T, action_dim).

    Down path: for each width in `down_dims`, two residual blocks then a stride-2 conv (except at the last level); the
    block outputs are kept as skips. Middle: two residual blocks. Up path: for each level above the last, concatenate
    the matching skip, two residual blocks, then a transposed conv doubling T. T must be divisible by
    2 ** (len(down_dims) - 1).
    """

    def __init__(
        self,
        action_dim: int,
        global_cond_dim: int,
        down_dims: tuple[int, ...],
        kernel_size: int,
        n_groups: int,
        step_embed_dim: int,
        film_scale: bool,
    ):
        super().__init__()
        self.step_encoder = nn.Sequential(
            SinusoidalStepEmbedding(step_embed_dim),
            nn.Linear(step_embed_dim, step_embed_dim * 4),
            nn.Mish(),
            nn.Linear(step_embed_dim * 4, step_embed_dim),
        )
        cond_dim = step_embed_dim + global_cond_dim

        def block(c_in: int, c_out: int) -> ConditionalResidualBlock:
            return ConditionalResidualBlock(c_in, c_out, cond_dim, kernel_size, n_groups, film_scale)

        widths = [action_dim, *down_dims]
        levels = len(down_dims)
        self.down = nn.ModuleList()
        for level in range(levels):
            c_in, c_out = widths[level], widths[level + 1]
            is_last = level == levels - 1
            self.down.append(
                nn.ModuleList(
                    [
                        block(c_in, c_out),
                        block(c_out, c_out),
                        nn.Identity() if is_last else nn.Conv1d(c_out, c_out, 3, stride=2, padding=1),
                    ]
                )
            )
        self.middle = nn.ModuleList([block(down_dims[-1], down_dims[-1]), block(down_dims[-1], down_dims[-1])])
        self.up = nn.ModuleList()
        # From the deepest level upwards; level `level` receives the skip of the same width and upsamples to the
        # resolution of the level below it.
        for level in reversed(range(1, levels)):
            c_skip = down_dims[level]
            c_out = down_dims[level - 1]
            self.up.append(
                nn.ModuleList(
                    [
                        block(c_skip * 2, c_out),
                        block(c_out, c_out),
                        nn.ConvTranspose1d(c_out, c_out, 4, stride=2, padding=1),
                    ]
                )
            )
        self.final = nn.Sequential(
            ConvGroupNormMish(down_dims[0], down_dims[0], kernel_size, n_groups),
            nn.Conv1d(down_dims[0], action_dim, 1),
        )

    def forward(self, sample: Tensor, timesteps: Tensor, global_cond: Tensor) -> Tensor:
        cond = torch.cat([self.step_encoder(timesteps), global_cond], dim=-1)
        x = sample.transpose(1, 2)  # (B, A, T): channels first for Conv1d
        skips = []
        for level in self.down:
            assert isinstance(level, nn.ModuleList)
            first, second, downsample = level[0], level[1], level[2]
            x = second(first(x, cond), cond)
            skips.append(x)
            x = downsample(x)
        for middle_block in self.middle:
            x = middle_block(x, cond)
        # The finest-level skip is never concatenated: the up path has one level fewer than the down path.
        for level, skip in zip(self.up, reversed(skips[1:]), strict=True):
            assert isinstance(level, nn.ModuleList)
            first, second, upsample = level[0], level[1], level[2]
            x = torch.cat([x, skip], dim=1)
            x = upsample(second(first(x, cond), cond))
        return self.final(x).transpose(1, 2)
