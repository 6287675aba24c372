"""ImageNet weights for the ResNet-18 backbone: torchvision's IMAGENET1K_V1 state_dict, downloaded once when the
production image is built (`fetch_imagenet_weights`), then read from a local directory by training jobs, which never
download anything.

The download needs only the standard library, so the image build runs this file on its own, before the packages are
added (`python weights.py DEST_DIR`): the layer holding the weights then changes only when this file does."""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

IMAGENET_WEIGHTS_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
IMAGENET_WEIGHTS_FILE = "resnet18-f37072fd.pth"
# torchvision names its files after the first hex digits of the file's sha256.
IMAGENET_WEIGHTS_SHA256_PREFIX = "f37072fd"
# Read by `python -m training` only; library callers pass weights_dir to training.run.
WEIGHTS_DIR_ENV = "ROBOTRAIN_WEIGHTS_DIR"
# ImageNet's per-channel statistics, which pretrained backbones expect their inputs normalised with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def fetch_imagenet_weights(dest_dir: Path | str) -> Path:
    """Download resnet18-f37072fd.pth into `dest_dir` (a build step: the Modal image calls it once) and check its
    hash; return its path. Skips the download when a good copy is there."""
    dest = Path(dest_dir) / IMAGENET_WEIGHTS_FILE
    if dest.is_file() and _sha256(dest).startswith(IMAGENET_WEIGHTS_SHA256_PREFIX):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        urllib.request.urlretrieve(IMAGENET_WEIGHTS_URL, tmp)  # noqa: S310 - a fixed https URL
        if not _sha256(tmp).startswith(IMAGENET_WEIGHTS_SHA256_PREFIX):
            raise RuntimeError(f"{IMAGENET_WEIGHTS_URL} did not match its published hash")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def load_imagenet_weights(weights_dir: Path | str | None) -> dict[str, Tensor]:
    """The state_dict in `weights_dir`; TrainingError naming what is missing otherwise."""
    import torch

    from training.errors import TrainingError

    if weights_dir is None:
        raise TrainingError(
            "policy.pretrained_backbone needs ImageNet weights, but no weights directory was given "
            f"(training.run(..., weights_dir=...) or {WEIGHTS_DIR_ENV} for python -m training)"
        )
    path = Path(weights_dir) / IMAGENET_WEIGHTS_FILE
    if not path.is_file():
        raise TrainingError(
            f"policy.pretrained_backbone needs {IMAGENET_WEIGHTS_FILE} in the weights directory, which lacks it; "
            "the image build downloads it with training.policies.vision.weights.fetch_imagenet_weights"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as error:
        raise TrainingError(f"cannot read the ImageNet weights {IMAGENET_WEIGHTS_FILE}: {error}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python weights.py DEST_DIR")
    print(fetch_imagenet_weights(sys.argv[1]))
