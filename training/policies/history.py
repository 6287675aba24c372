"""Inference-time state shared by the policies: the observation history and the queue of actions to execute."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import torch
from torch import Tensor


class ObservationHistory:
    """The last `n_steps` observations of each feature. After a reset the first observation fills the whole window,
    which matches how the sampler pads the history at an episode's start (by repeating the first frame)."""

    def __init__(self, n_steps: int):
        self.n_steps = n_steps
        self._frames: dict[str, deque[Tensor]] = {}

    def reset(self) -> None:
        self._frames = {}

    def push(self, observation: Mapping[str, Tensor], keys: list[str], device: torch.device) -> dict[str, Tensor]:
        """Add one time step ({key: (B, dim)}, or (B, C, H, W) for a camera; moved to `device`) and return the
        window {key: (B, n_steps, ...)}, oldest first."""
        for key in keys:
            if key not in observation:
                raise KeyError(f"observation lacks feature {key!r} (got {sorted(observation)})")
            frame = torch.as_tensor(observation[key]).to(device=device, dtype=torch.float32)
            if frame.ndim not in (2, 4):
                raise ValueError(
                    f"observation {key!r} must have shape (batch, dim) or, for a camera, (batch, channels, height, "
                    f"width), got {tuple(frame.shape)}"
                )
            if key not in self._frames:
                self._frames[key] = deque([frame] * self.n_steps, maxlen=self.n_steps)
            else:
                self._frames[key].append(frame)
        return {key: torch.stack(list(self._frames[key]), dim=1) for key in keys}


class ActionQueue:
    """Actions still to execute, each (B, action_dim)."""

    def __init__(self) -> None:
        self._actions: deque[Tensor] = deque()

    def __len__(self) -> int:
        return len(self._actions)

    def reset(self) -> None:
        self._actions.clear()

    def extend(self, actions: Tensor) -> None:
        """Enqueue a (B, n, action_dim) block, first step first."""
        self._actions.extend(actions.unbind(dim=1))

    def pop(self) -> Tensor:
        return self._actions.popleft()
