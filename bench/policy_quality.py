"""How well each policy trains with its defaults: a spec naming only the policy type and the dataset (plus the step
count and device given here), on push2d from state and from pixels only, and optionally PushT (gym-pusht) against
random actions. Prints success rates with Wilson 95% intervals and the average max reward; the numbers in the README
come from this script.

    .venv/bin/python bench/policy_quality.py [--steps 5000] [--episodes 200] [--eval-episodes 50] [--device auto]
        [--policies mlp act diffusion] [--obs state pixels] [--image-size 64] [--pusht] [--set key=json ...]

`--set policy.vision_backbone='"small_cnn"'` (repeatable) overrides a spec field, e.g. for a CPU-sized run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.checkpoint import load_policy  # noqa: E402
from training.evaluate import evaluate  # noqa: E402
from training.spec import TrainSpec  # noqa: E402
from training.trainer import run  # noqa: E402


class RandomPushT(torch.nn.Module):
    """Uniform targets over PushT's 512x512 workspace."""

    def __init__(self, features) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.features = features
        self.generator = torch.Generator().manual_seed(0)

    def reset(self) -> None:
        pass

    def select_action(self, observation: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.rand(observation["observation.state"].shape[0], 2, generator=self.generator) * 512


def _apply_overrides(spec: dict, overrides: list[str]) -> dict:
    for item in overrides:
        path, _, value = item.partition("=")
        node = spec
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = json.loads(value)
    return spec


def _line(label: str, results: dict, seconds: float) -> str:
    return (
        f"{label:<28} success {results['pc_success']:5.1f}% (95% CI {results['pc_success_ci_low']:5.1f}-"
        f"{results['pc_success_ci_high']:5.1f})  avg max reward {results['avg_max_reward']:.3f}  "
        f"[{results['n_episodes']} episodes, {seconds:.0f} s]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--episodes", type=int, default=200, help="demonstrations in the dataset")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--policies", nargs="+", default=["mlp", "act", "diffusion"])
    parser.add_argument("--obs", nargs="+", default=["state", "pixels"], choices=["state", "pixels"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--pusht", action="store_true", help="also train ACT on PushT and compare with random")
    parser.add_argument("--set", action="append", default=[], help="spec override key=json (repeatable)")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()

    cache = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="policy-quality-"))
    print(f"device {args.device}, {args.steps} steps, {args.episodes} demonstrations, overrides {args.set or 'none'}")
    for obs in args.obs:
        query = f"episodes={args.episodes}&seed=0"
        if obs == "pixels":
            query += f"&obs_type=pixels&image_size={args.image_size}"
        for policy_type in args.policies:
            spec_data = {
                "policy": {"type": policy_type},
                "dataset": {"uri": f"builtin://push2d?{query}"},
                "training": {"steps": args.steps, "device": args.device, "log_every": 500, "checkpoint_every": 10**6},
                "eval": {"env": "push2d", "episodes": args.eval_episodes, "videos": 0},
            }
            spec = TrainSpec.model_validate(_apply_overrides(spec_data, args.set))
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                result = run(spec, Path(out), cache_dir=cache)
            assert result.eval is not None
            print(_line(f"push2d {obs:<6} {policy_type}", {**result.eval, "n_episodes": int(result.eval["n_episodes"])},
                        time.perf_counter() - started), flush=True)  # fmt: skip
    if args.pusht:
        spec_data = {
            "policy": {"type": "act"},
            "dataset": {"uri": f"builtin://pusht?episodes={args.episodes}&seed=0"},
            "training": {"steps": args.steps, "device": args.device, "log_every": 500, "checkpoint_every": 10**6},
            "eval": {"env": "pusht", "episodes": args.eval_episodes, "videos": 0},
        }
        spec = TrainSpec.model_validate(_apply_overrides(spec_data, args.set))
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            result = run(spec, Path(out), cache_dir=cache)
            features = load_policy(Path(out)).features
        assert result.eval is not None
        print(
            _line(
                "pusht act (trained)", {**result.eval, "n_episodes": args.eval_episodes}, time.perf_counter() - started
            )
        )
        started = time.perf_counter()
        random_eval = evaluate(RandomPushT(features), "pusht", args.eval_episodes)
        print(_line("pusht random actions", random_eval, time.perf_counter() - started))


if __name__ == "__main__":
    main()
