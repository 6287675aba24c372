"""A builtin dataset's features are known at submit without generating it: they are exactly what the reader selects
from the dataset the generator writes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from training.data.inspect import builtin_policy_features
from training.data.sources import load_dataset


@pytest.mark.parametrize(
    "uri",
    [
        "builtin://push2d?episodes=2",
        "builtin://push2d?episodes=2&obs_type=pixels&image_size=32",
        "builtin://push2d?episodes=2&obs_type=pixels_agent_pos&image_size=16&video=1",
    ],
)
def test_builtin_features_known_at_submit_match_the_generated_dataset(uri: str, tmp_path: Path) -> None:
    parts = urlsplit(uri)

    assert builtin_policy_features(parts.netloc, parts.query) == load_dataset(uri, tmp_path).policy_features()


def test_pushts_features_are_lerobots_pusht_layout() -> None:
    features = builtin_policy_features("pusht")

    assert (features.observation, features.action_dim, features.images) == (
        {"observation.state": 2},
        2,
        {"observation.image": (3, 96, 96)},
    )
