"""What an uploaded dataset is, as stored and as returned by the API."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from training.data.access import UPLOAD_SCHEME
from training.paths import inside, owner_dir_name

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


class Dataset(BaseModel):
    """One upload: a LeRobot dataset that passed the reader, with what the reader found in it."""

    model_config = ConfigDict(frozen=True)

    id: str
    user_id: str
    name: str
    bytes: int = Field(ge=0, description="Bytes of the extracted dataset.")
    episodes: int
    frames: int
    features: dict[str, Any] = Field(description="meta/info.json's features: name -> {dtype, shape, names}.")
    policy_features: dict[str, Any] = Field(
        description="What a policy consumes: {observation: {key: dim}, action_dim}."
    )
    created_at: datetime

    @property
    def uri(self) -> str:
        return f"{UPLOAD_SCHEME}://{self.id}"


class DatasetPage(BaseModel):
    data: list[Dataset]
    next_cursor: str | None = None


def new_dataset_id() -> str:
    """A ULID-style id (48-bit ms timestamp + 80 random bits, lower-case Crockford base32) so ids sort by creation
    time; `ds_` + 26 characters, the form dataset:// URIs accept."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, index = divmod(value, 32)
        chars.append(_CROCKFORD[index])
    return "ds_" + "".join(reversed(chars))


def dataset_dir(root: Path, user_id: str, dataset_id: str) -> Path:
    """Where an upload's files live: <datasets root>/<owner hash>/<dataset id>/, proven to stay inside the root."""
    return inside(root, owner_dir_name(user_id), dataset_id, what="dataset id")
