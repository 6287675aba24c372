"""A small convolutional backbone for CPU-scale work and small cameras: four 3x3 convolutions with GroupNorm, two of
them stride 2, so the feature map keeps a quarter of the input's resolution (a 28x28 crop gives 7x7)."""

from __future__ import annotations

from torch import Tensor, nn

WIDTHS = (32, 32, 64, 64)
STRIDES = (2, 1, 2, 1)


class SmallCnn(nn.Module):
    out_channels = WIDTHS[-1]

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for channels, stride in zip(WIDTHS, STRIDES, strict=True):
            layers += [
                nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1),
                nn.GroupNorm(max(1, channels // 16), channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = channels
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
