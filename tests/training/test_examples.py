import json
from pathlib import Path

from training.spec import TrainSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_there_is_one_valid_push2d_example_per_policy_with_evaluation():
    specs = {path.name: TrainSpec.model_validate(json.loads(path.read_text())) for path in EXAMPLES.glob("*.json")}
    assert sorted(spec.policy.type for spec in specs.values()) == ["act", "diffusion", "mlp"]
    for name, spec in specs.items():
        assert spec.dataset.uri.startswith("builtin://push2d"), name
        assert spec.eval.env == "push2d" and spec.eval.episodes >= 50, name
        assert spec.training.device == "auto", name
