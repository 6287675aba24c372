"""Which torch device a run uses: "auto" picks CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch

from training.errors import TrainingError


def resolve_device(name: str) -> torch.device:
    """Turn the spec's `training.device` into a torch device, refusing one this machine does not have."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("training.device is 'cuda' but no CUDA device is available here; use 'auto' or 'cpu'")
    if name == "mps" and not torch.backends.mps.is_available():
        raise TrainingError("training.device is 'mps' but MPS is not available here; use 'auto' or 'cpu'")
    if name not in ("cpu", "cuda", "mps"):
        raise TrainingError(f"unknown device {name!r}; allowed: auto, cpu, cuda, mps")
    return torch.device(name)


def free_memory(device: torch.device) -> int | None:
    """Bytes the device can still allocate, or None for the CPU (whose RAM the frame cache has already budgeted)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        # Unified memory: what Metal recommends for this process, less what it already holds.
        return max(0, int(torch.mps.recommended_max_memory()) - int(torch.mps.driver_allocated_memory()))
    return None
