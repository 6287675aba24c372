"""How well each policy trains with its defaults: a spec naming only the policy type and the dataset (plus the step
count and device given here), on push2d from state and from pixels only, and optionally PushT (gym-pusht) against
random actions. Prints success rates with Wilson 95% intervals and the average max reward (with a 95% interval for
PushT); the numbers in the README come from this script.

    .venv/bin/python bench/policy_quality.py [--steps 5000] [--episodes 200] [--eval-episodes 50] [--device auto]
        [--policies mlp act diffusion] [--obs state pixels] [--image-size 64] [--cpu-scale] [--candidates]
        [--executions] [--pusht] [--set key=json ...]

--cpu-scale shrinks the networks to what one CPU core trains in minutes (CPU_SCALE below: narrower transformers and
UNet, the small CNN) and keeps every other default. --candidates trains each policy with its preset and with the
alternatives in CANDIDATES, per observation kind, so the presets can be chosen from the printed numbers.
--executions also evaluates each trained ACT and diffusion checkpoint with the executions in EXECUTIONS: re-planning
every step, and for ACT temporal ensembling with positive and negative coefficients. --pusht trains an mlp on each builtin
PushT dataset (keypoints, camera) and evaluates it against uniform random actions on the same seeds.
`--set policy.vision_backbone='"small_cnn"'` (repeatable) overrides a spec field. Times are CPU seconds of this
process (the machine may be shared) and wall seconds.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.checkpoint import load_policy  # noqa: E402
from training.data.dataset import PolicyFeatures  # noqa: E402
from training.evaluate import evaluate, mean_interval  # noqa: E402
from training.policies import make_policy  # noqa: E402
from training.spec import TrainSpec  # noqa: E402
from training.trainer import run  # noqa: E402

# Network sizes one CPU core trains in minutes (0.05-0.2 CPU seconds a step at batch 64); optimizer settings,
# diffusion's horizons and the execution of whole chunks stay at their defaults.
CPU_SCALE: dict[str, dict] = {
    "mlp": {},
    # A 20-step chunk (2 s at 10 fps) instead of 100: the CVAE encoder and the decoder cost grows with the chunk.
    "act": {
        "dim_model": 64,
        "n_heads": 4,
        "dim_feedforward": 256,
        "n_encoder_layers": 2,
        "n_vae_encoder_layers": 2,
        "latent_dim": 16,
        "chunk_size": 20,
        "n_action_steps": 20,
    },
    "diffusion": {"down_dims": [32, 64, 128], "diffusion_step_embed_dim": 32},
}
CPU_SCALE_CAMERA = {"vision_backbone": "small_cnn"}

# Optimizer settings compared with each policy's preset by --candidates (policy fields; a missing one is the preset).
CANDIDATES: dict[str, dict[str, dict]] = {
    "mlp": {
        "lr 3e-4 cosine": {"optimizer_lr": 3e-4},
        "lr 3e-3 cosine": {"optimizer_lr": 3e-3},
    },
    "act": {
        "lr 1e-4 cosine": {"scheduler": "cosine"},
        "lr 1e-3 cosine, warmup 100": {"optimizer_lr": 1e-3, "scheduler": "cosine", "scheduler_warmup_steps": 100},
    },
    "diffusion": {
        "lr 3e-4 cosine, warmup 500": {"optimizer_lr": 3e-4},
        "lr 1e-3 cosine, warmup 200": {"optimizer_lr": 1e-3, "scheduler_warmup_steps": 200},
    },
}
# Executions compared by --executions on the same trained checkpoint (config fields applied over it): for ACT,
# re-planning every step and temporal ensembling with weights exp(-k * i), i = 0 the oldest prediction (k > 0 favours
# old predictions, k < 0 new ones; ACT's paper and LeRobot use k = 0.01); for diffusion, re-planning every step.
EXECUTIONS: dict[str, dict[str, dict]] = {
    "act": {
        "re-plan every step": {"n_action_steps": 1},
        "ensemble k=+0.01": {"n_action_steps": 1, "temporal_ensemble_coeff": 0.01},
        "ensemble k=-0.01": {"n_action_steps": 1, "temporal_ensemble_coeff": -0.01},
        "ensemble k=-0.1": {"n_action_steps": 1, "temporal_ensemble_coeff": -0.1},
        "ensemble k=-1": {"n_action_steps": 1, "temporal_ensemble_coeff": -1.0},
    },
    "diffusion": {"re-plan every step": {"n_action_steps": 1}},
}


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


def _line(label: str, results: dict, cpu_s: float, wall_s: float) -> str:
    rewards = [e["max_reward"] for e in results["per_episode"]]
    _, low, high = mean_interval(rewards)
    return (
        f"{label:<52} success {results['pc_success']:5.1f}% (95% CI {results['pc_success_ci_low']:5.1f}-"
        f"{results['pc_success_ci_high']:5.1f})  avg max reward {results['avg_max_reward']:.3f} "
        f"({low:.3f}-{high:.3f})  [{results['n_episodes']} ep, {cpu_s:.0f} cpu-s, {wall_s:.0f} s]"
    )


def _train_and_evaluate(spec_data: dict, env: str, episodes: int, cache: Path, label: str, executions: bool) -> dict:
    spec = TrainSpec.model_validate(spec_data)
    cpu, wall = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        run(spec, Path(out), cache_dir=cache)
        policy = load_policy(Path(out))
        results = evaluate(policy, env, episodes)
        print(_line(label, results, time.process_time() - cpu, time.perf_counter() - wall), flush=True)
        if executions:
            for name, update in EXECUTIONS.get(spec.policy.type, {}).items():
                config = policy.config.model_copy(update=update)
                variant = make_policy(config, policy.features, None)
                variant.load_state_dict(policy.state_dict())
                cpu, wall = time.process_time(), time.perf_counter()
                variant_results = evaluate(variant.eval(), env, episodes)
                print(_line(f"  same checkpoint, {name}", variant_results, time.process_time() - cpu,
                            time.perf_counter() - wall), flush=True)  # fmt: skip
    return results


def _policy_spec(policy_type: str, obs: str, args: argparse.Namespace) -> dict:
    policy: dict = {"type": policy_type}
    if args.cpu_scale:
        policy.update(CPU_SCALE[policy_type])
        if obs != "state":
            policy.update(CPU_SCALE_CAMERA)
    return policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--episodes", type=int, default=200, help="demonstrations in the dataset")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--policies", nargs="+", default=["mlp", "act", "diffusion"])
    parser.add_argument("--obs", nargs="*", default=["state", "pixels"], choices=["state", "pixels"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--cpu-scale", action="store_true", help="networks one CPU core trains in minutes")
    parser.add_argument("--candidates", action="store_true", help="also train each policy's CANDIDATES")
    parser.add_argument("--executions", action="store_true", help="evaluate each checkpoint with each EXECUTIONS")
    parser.add_argument("--pusht", action="store_true", help="PushT trained vs random actions")
    parser.add_argument("--set", action="append", default=[], help="spec override key=json (repeatable)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (one core: the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cache = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="policy-quality-"))
    print(
        f"device {args.device}, {args.steps} steps, {args.episodes} demonstrations, {args.eval_episodes} evaluation "
        f"episodes, {'CPU-scale networks, ' if args.cpu_scale else ''}overrides {args.set or 'none'}, torch threads "
        f"{torch.get_num_threads()}",
        flush=True,
    )
    training = {"steps": args.steps, "device": args.device, "log_every": 500, "checkpoint_every": 10**6}
    for obs in args.obs:
        query = f"episodes={args.episodes}&seed=0"
        if obs == "pixels":
            query += f"&obs_type=pixels&image_size={args.image_size}"
        for policy_type in args.policies:
            candidates = {"preset": {}}
            if args.candidates:
                candidates.update(CANDIDATES[policy_type])
            for name, fields in candidates.items():
                spec_data = {
                    "policy": {**_policy_spec(policy_type, obs, args), **fields},
                    "dataset": {"uri": f"builtin://push2d?{query}"},
                    "training": dict(training),
                    "eval": {"env": None},
                }
                spec_data = _apply_overrides(copy.deepcopy(spec_data), args.set)
                label = f"push2d {obs:<6} {policy_type:<9} {name}"
                _train_and_evaluate(spec_data, "push2d", args.eval_episodes, cache, label, args.executions)
    if args.pusht:
        cpu, wall = time.process_time(), time.perf_counter()
        # The random policy looks at nothing, so it runs in the keypoint env: same seeds and physics, no render.
        random_features = PolicyFeatures(observation={"observation.state": 2}, action_dim=2)
        random_eval = evaluate(RandomPushT(random_features), "pusht", args.eval_episodes)
        print(_line("pusht random actions", random_eval, time.process_time() - cpu, time.perf_counter() - wall))
        # The same policy on both of LeRobot's PushT layouts, so the observation is the only difference: mlp with one
        # observation step (the controller is Markovian in the agent and block poses).
        for obs_type in ("environment_state_agent_pos", "pixels_agent_pos"):
            camera = obs_type == "pixels_agent_pos"
            policy = {**_policy_spec("mlp", "pixels" if camera else "state", args), "n_obs_steps": 1}
            if camera and args.cpu_scale:
                policy["image_size"] = [args.image_size, args.image_size]
            spec_data = {
                "policy": policy,
                "dataset": {"uri": f"builtin://pusht?episodes={args.episodes}&seed=0&obs_type={obs_type}"},
                "training": dict(training),
                "eval": {"env": None},
            }
            spec_data = _apply_overrides(copy.deepcopy(spec_data), args.set)
            label = f"pusht {'camera' if camera else 'keypoints'} mlp (trained)"
            trained = _train_and_evaluate(spec_data, "pusht", args.eval_episodes, cache, label, False)
            differences = [
                t["max_reward"] - r["max_reward"]
                for t, r in zip(trained["per_episode"], random_eval["per_episode"], strict=True)
            ]
            mean, low, high = mean_interval(differences)
            print(f"  trained - random, paired by seed: avg max reward {mean:+.3f} (95% CI {low:+.3f} to {high:+.3f})")


if __name__ == "__main__":
    main()
