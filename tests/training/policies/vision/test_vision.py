"""The vision building blocks: the ResNet-18 is laid out exactly as torchvision's (so its ImageNet state_dict loads
unchanged), crops, spatial-softmax keypoints, 2-D positions, and the ImageNet weights are never fetched in a job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.errors import TrainingError
from training.policies.vision import weights as weights_module
from training.policies.vision.encoders import (
    CameraGeometry,
    SpatialSoftmax,
    center_crop,
    random_crop,
    sinusoidal_positions_2d,
)
from training.policies.vision.geometry import crop_size, input_size
from training.policies.vision.resnet import ResNet18
from training.policies.vision.weights import IMAGENET_WEIGHTS_FILE, load_imagenet_weights


def torchvision_resnet18_layout() -> dict[str, tuple[int, ...]]:
    """torchvision.models.resnet18().state_dict(): names and shapes, written out from its published architecture
    (conv1/bn1, layer1..layer4 of two BasicBlocks, a 1x1 downsample where the width or stride changes, fc)."""

    def bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
        return {
            f"{prefix}.weight": (channels,),
            f"{prefix}.bias": (channels,),
            f"{prefix}.running_mean": (channels,),
            f"{prefix}.running_var": (channels,),
            f"{prefix}.num_batches_tracked": (),
        }

    layout: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    in_channels = 64
    for stage, channels in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            first_in = in_channels if block == 0 else channels
            layout[f"{prefix}.conv1.weight"] = (channels, first_in, 3, 3)
            layout.update(bn(f"{prefix}.bn1", channels))
            layout[f"{prefix}.conv2.weight"] = (channels, channels, 3, 3)
            layout.update(bn(f"{prefix}.bn2", channels))
            if block == 0 and stage > 1:
                layout[f"{prefix}.downsample.0.weight"] = (channels, in_channels, 1, 1)
                layout.update(bn(f"{prefix}.downsample.1", channels))
        in_channels = channels
    layout["fc.weight"] = (1000, 512)
    layout["fc.bias"] = (1000,)
    return layout


def test_resnet18_has_torchvisions_names_and_shapes_without_the_classifier():
    expected = torchvision_resnet18_layout()
    assert len(expected) == 122  # torchvision's resnet18 state_dict has 122 entries
    backbone = ResNet18("frozen_batch")
    ours = {name: tuple(value.shape) for name, value in backbone.state_dict().items()}
    without_counters = {k: v for k, v in expected.items() if not k.startswith("fc.") and "num_batches" not in k}
    assert ours == without_counters


def test_a_torchvision_state_dict_loads_unchanged():
    generator = torch.Generator().manual_seed(0)
    state = {name: torch.randn(shape, generator=generator) for name, shape in torchvision_resnet18_layout().items()}
    state = {k: (v.abs() + 0.5 if k.endswith("running_var") else v) for k, v in state.items()}
    backbone = ResNet18("frozen_batch")
    backbone.load_torchvision_state_dict(state)
    assert torch.equal(backbone.layer3[0].downsample[0].weight, state["layer3.0.downsample.0.weight"])
    assert torch.equal(backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    with pytest.raises(ValueError, match="do not fit ResNet-18"):
        backbone.load_torchvision_state_dict({**state, "layer1.0.conv1.weight": torch.zeros(3, 3)})


def test_group_norm_resnet_uses_channels_over_16_groups():
    backbone = ResNet18("group")
    assert backbone.bn1.num_groups == 4 and backbone.layer4[0].bn1.num_groups == 32
    assert backbone(torch.zeros(2, 3, 28, 28)).shape == (2, 512, 1, 1)


def test_pretrained_weights_are_read_from_the_weights_directory_only(tmp_path):
    with pytest.raises(TrainingError, match="no weights directory was given"):
        load_imagenet_weights(None)
    with pytest.raises(TrainingError, match=f"needs {IMAGENET_WEIGHTS_FILE} in the weights directory"):
        load_imagenet_weights(tmp_path)
    torch.save({"conv1.weight": torch.ones(1)}, tmp_path / IMAGENET_WEIGHTS_FILE)
    assert torch.equal(load_imagenet_weights(tmp_path)["conv1.weight"], torch.ones(1))


def test_geometry_derives_from_the_camera():
    assert input_size((96, 96), None) == (96, 96)
    assert input_size((480, 640), None) == (192, 256)
    assert input_size((480, 640), (120, 160)) == (120, 160)
    assert crop_size((96, 96), 0.875) == (84, 84)
    assert crop_size((32, 32), 0.875) == (28, 28)
    with pytest.raises(ValueError, match="different sizes"):
        CameraGeometry({"a": (3, 32, 32), "b": (3, 64, 64)}, None, 0.875)


def test_crops_keep_content_and_random_crops_differ_per_frame():
    frames = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8).repeat(8, 1, 1, 1)
    torch.manual_seed(0)
    cropped = random_crop(frames, (6, 6))
    assert cropped.shape == (16, 3, 6, 6)
    for i in range(16):  # each crop is a window of its own frame
        top = int((cropped[i, 0, 0, 0] - frames[i, 0, 0, 0]).item()) // 8
        left = int((cropped[i, 0, 0, 0] - frames[i, 0, 0, 0]).item()) % 8
        assert torch.equal(cropped[i], frames[i, :, top : top + 6, left : left + 6])
    assert len({float(c[0, 0, 0]) for c in cropped[::2]}) > 1
    assert torch.equal(center_crop(frames, (6, 6)), frames[..., 1:7, 1:7])


def test_spatial_softmax_finds_a_peak():
    layer = SpatialSoftmax(1, (5, 5), 1)
    with torch.no_grad():
        layer.keypoints.weight.fill_(1.0)
        layer.keypoints.bias.zero_()
    features = torch.zeros(1, 1, 5, 5)
    features[0, 0, 4, 0] = 50.0  # bottom-left
    assert torch.allclose(layer(features), torch.tensor([[[-1.0, 1.0]]]), atol=1e-3)


def test_2d_positions_are_distinct_per_location():
    table = sinusoidal_positions_2d(3, 4, 16)
    assert table.shape == (12, 16)
    assert torch.cdist(table, table).add(torch.eye(12)).min() > 0.1


def test_the_weights_file_runs_on_its_own_without_torch_as_the_image_build_runs_it() -> None:
    # modal_app.py copies this one file into the image and runs it before the packages are installed there.
    path = Path(weights_module.__file__)
    probe = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('fetch_weights', {str(path)!r}); "
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
        "print(sorted(name for name in sys.modules if name == 'torch' or name.startswith('training')))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    assert loaded.stdout.strip() == "[]"
    usage = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd="/")
    assert usage.returncode != 0 and "usage" in usage.stderr
