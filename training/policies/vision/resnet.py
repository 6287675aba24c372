"""ResNet-18 (He et al. 2016: BasicBlock, [2, 2, 2, 2]) as a feature-map backbone.

Module and parameter names are torchvision's (`conv1`, `bn1`, `layer1.0.conv1`, ..., `layer4.1.bn2`), so
torchvision's ImageNet state_dict (resnet18-f37072fd.pth) loads into it unchanged once its classifier (`fc.*`) is
left out: the average pool and `fc` are dropped, as ACT and Diffusion Policy drop them. The normalisation layers
are frozen batch norm (ACT's choice: fixed affine from the stored statistics) or GroupNorm with channels // 16
groups (Diffusion Policy's replacement of BatchNorm, which does not mix samples and has no running statistics).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn

Norm = Literal["frozen_batch", "group"]
STAGE_WIDTHS = (64, 128, 256, 512)


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters, all buffers (torchvision's FrozenBatchNorm2d)."""

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A BatchNorm2d state_dict also counts its updates; a frozen one has nothing to count.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


def make_norm(norm: Norm, channels: int) -> nn.Module:
    if norm == "group":
        return nn.GroupNorm(max(1, channels // 16), channels)
    return FrozenBatchNorm2d(channels)


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int, norm: Norm):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(norm, channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = make_norm(norm, channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), make_norm(norm, channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """(B, 3, H, W) -> feature map (B, 512, ceil(H/32), ceil(W/32))."""

    out_channels = STAGE_WIDTHS[-1]

    def __init__(self, norm: Norm = "frozen_batch"):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = 64
        for stage, channels in enumerate(STAGE_WIDTHS, start=1):
            stride = 1 if stage == 1 else 2
            blocks = nn.Sequential(
                BasicBlock(in_channels, channels, stride, norm), BasicBlock(channels, channels, 1, norm)
            )
            setattr(self, f"layer{stage}", blocks)
            in_channels = channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        # Zero the last norm of each residual branch where it is trainable, so every block starts as the identity.
        for module in self.modules():
            if isinstance(module, BasicBlock) and isinstance(module.bn2, nn.GroupNorm):
                nn.init.zeros_(module.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(1, len(STAGE_WIDTHS) + 1):
            x = getattr(self, f"layer{stage}")(x)
        return x

    def load_torchvision_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load a torchvision resnet18 state_dict (e.g. IMAGENET1K_V1); its classifier `fc.*` is left out. Raises
        ValueError when anything else is missing, unexpected or of another shape."""
        backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
        try:
            result = self.load_state_dict(backbone, strict=False)
        except RuntimeError as error:  # a shape mismatch
            raise ValueError(f"the weights do not fit ResNet-18: {error}") from None
        missing = list(result.missing_keys)
        unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(f"the weights do not fit ResNet-18: missing {missing[:5]}, unexpected {unexpected[:5]}")
