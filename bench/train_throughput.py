"""Training throughput per policy: the device-resident WindowSampler against a per-sample DataLoader baseline.

Both paths train the same model with the same optimizer on the same push2d data in the same process; only how a
batch is produced differs. The baseline is what a torch project usually writes (and LeRobot does): a Dataset whose
__getitem__ builds one window (observation history + action chunk + padding masks) in Python, batched by
torch.utils.data.DataLoader's collate and copied to the device. Each measurement runs for --seconds after a warmup.

With --images it measures the default image config instead: a push2d dataset rendered at --image-size (96, PushT's
camera) stored as video, decoded once into the frame cache, and a policy given only its type (ResNet-18, crops on
the device); it prints the mean data_s (drawing a batch) and update_s (forward, backward, optimizer step) and their
ratio, which should stay under 0.1.

    .venv/bin/python bench/train_throughput.py [--device auto|cpu|cuda] [--seconds 6] [--batch-size 64]
    .venv/bin/python bench/train_throughput.py --images [--policies diffusion,act,mlp] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from training.data.dataset import EpisodeDataset
from training.data.frame_cache import decode_cameras
from training.data.sampler import WindowSampler
from training.data.sources import load_dataset
from training.device import resolve_device
from training.optim import make_optimizer
from training.policies import make_policy
from training.policies.vision.geometry import input_size
from training.spec import TrainSpec
from training.trainer import _stats_tensors

# Low-dimensional-sized models (the test gates' sizes): small enough that the data path matters, as it does for
# vector observations; the default CPU run takes about a minute.
POLICIES = {
    "mlp": {"type": "mlp", "hidden_dims": [256, 256]},
    "act": {
        "type": "act",
        "chunk_size": 8,
        "n_action_steps": 1,
        "dim_model": 64,
        "n_heads": 4,
        "dim_feedforward": 128,
        "n_encoder_layers": 1,
        "n_decoder_layers": 1,
        "n_vae_encoder_layers": 1,
        "latent_dim": 8,
    },
    "diffusion": {
        "type": "diffusion",
        "down_dims": [32, 64],
        "diffusion_step_embed_dim": 32,
        "horizon": 8,
        "n_action_steps": 1,
        "num_inference_steps": 5,
    },
}


class PerSampleWindows(Dataset):
    """One window per __getitem__, assembled in Python/numpy from the frames (the baseline)."""

    def __init__(self, dataset: EpisodeDataset, observation_deltas: list[int], action_deltas: list[int]):
        self.frames = {k: dataset.frames[k] for k in (*dataset.observation_keys, dataset.action_key)}
        self.observation_keys = list(dataset.observation_keys)
        self.action_key = dataset.action_key
        self.ranges = [(int(a), int(b)) for a, b in dataset.episode_ranges]
        self.anchors = [(t, a, b) for a, b in self.ranges for t in range(a, b)]
        self.observation_deltas = observation_deltas
        self.action_deltas = action_deltas

    def __len__(self) -> int:
        return len(self.anchors)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        t, first, end = self.anchors[index]
        item = {}
        for deltas, keys in ((self.observation_deltas, self.observation_keys), (self.action_deltas, [self.action_key])):
            wanted = [t + d for d in deltas]
            rows = [min(max(w, first), end - 1) for w in wanted]
            is_pad = torch.tensor([w < first or w >= end for w in wanted])
            for key in keys:
                item[key] = torch.from_numpy(self.frames[key][rows])
                item[f"{key}_is_pad"] = is_pad
        return item


def _train_step(policy, optimizer, batch) -> None:
    loss, _ = policy(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
    optimizer.step()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(next_batch, policy, optimizer, device, batch_size: int, seconds: float, warmup: int = 3) -> float:
    for _ in range(warmup):
        _train_step(policy, optimizer, next_batch())
    _synchronize(device)
    steps = 0
    started = time.perf_counter()
    while True:
        _train_step(policy, optimizer, next_batch())
        steps += 1
        if steps % 5 == 0:
            _synchronize(device)
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                return steps * batch_size / elapsed


def image_config(args: argparse.Namespace, device: torch.device) -> int:
    """data_s against update_s for each policy's defaults on a camera dataset."""
    cache = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="throughput-"))
    uri = f"builtin://push2d?episodes={args.episodes}&obs_type=pixels&image_size={args.image_size}&video=1"
    print(f"device {device}, batch {args.batch_size}, {uri}, {args.steps} measured steps after 2 warmup steps")
    header = f"{'policy':<10} {'params':>11} {'data_s':>9} {'update_s':>9} {'data_s / update_s':>18}"
    print(header)
    print("-" * len(header))
    for name in args.policies.split(","):
        dataset = load_dataset(uri, cache)
        features = dataset.policy_features()
        spec = TrainSpec.model_validate({"policy": {"type": name}, "dataset": {"uri": uri}})
        sizes = {k: input_size(shape[1:], spec.policy.image_size) for k, shape in features.images.items()}
        decode_cameras(dataset, sizes, cache)
        torch.manual_seed(0)
        policy = make_policy(spec.policy, features, _stats_tensors(dataset, features, False)).to(device).train()
        optimizer = make_optimizer(policy, spec.resolved_lr("camera"), 0.0, spec.policy.optimizer_betas)
        episodes = np.arange(dataset.num_episodes)
        sampler = WindowSampler(
            dataset, episodes, policy.observation_delta_indices, policy.action_delta_indices, device
        )
        generator = torch.Generator().manual_seed(0)
        data_s = update_s = 0.0
        for step in range(args.steps + 2):
            t0 = time.perf_counter()
            batch = sampler.sample(args.batch_size, generator)
            _synchronize(device)
            t1 = time.perf_counter()
            _train_step(policy, optimizer, batch)
            _synchronize(device)
            t2 = time.perf_counter()
            if step >= 2:
                data_s, update_s = data_s + t1 - t0, update_s + t2 - t1
        data_s, update_s = data_s / args.steps, update_s / args.steps
        params = sum(p.numel() for p in policy.parameters())
        print(f"{name:<10} {params:>11,} {data_s:>9.4f} {update_s:>9.3f} {data_s / update_s:>18.4f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", action="store_true", help="measure data_s / update_s on the default image config")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=10, help="measured steps per policy with --images")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per policy and path")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, (os.cpu_count() or 2) // 2),
        help="DataLoader worker processes for the baseline",
    )
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    if args.images:
        if args.policies == ",".join(POLICIES):
            args.policies = "diffusion,act,mlp"
        return image_config(args, device)
    dataset = load_dataset(
        f"builtin://push2d?episodes={args.episodes}", Path(args.cache_dir) if args.cache_dir else None
    )
    features = dataset.policy_features()
    stats = {
        k: {
            n: torch.as_tensor(np.asarray(v, dtype=np.float32))
            for n, v in dataset.stats[k].items()
            if n in ("mean", "std", "min", "max")
        }
        for k in (*features.observation, dataset.action_key)
    }
    all_episodes = np.arange(dataset.num_episodes)
    print(
        f"device {device}, batch {args.batch_size}, {dataset.num_frames} frames, {args.seconds:g} s per path, "
        f"DataLoader workers {args.workers}, torch threads {torch.get_num_threads()}"
    )
    header = f"{'policy':<10} {'params':>9} {'sampler smpl/s':>15} {'DataLoader smpl/s':>18} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for name in args.policies.split(","):
        torch.manual_seed(0)
        spec = TrainSpec.model_validate({"policy": POLICIES[name], "dataset": {"uri": "builtin://push2d"}})
        policy = make_policy(spec.policy, features, stats).to(device).train()
        optimizer = make_optimizer(
            policy, spec.resolved_lr(), spec.resolved_weight_decay(), spec.policy.optimizer_betas
        )
        obs_deltas, action_deltas = policy.observation_delta_indices, policy.action_delta_indices

        sampler = WindowSampler(dataset, all_episodes, obs_deltas, action_deltas, device)
        generator = torch.Generator().manual_seed(0)
        fast = _measure(
            lambda s=sampler, g=generator: s.sample(args.batch_size, g),
            policy,
            optimizer,
            device,
            args.batch_size,
            args.seconds,
        )

        windows = PerSampleWindows(dataset, obs_deltas, action_deltas)
        loader = DataLoader(
            windows,
            batch_size=args.batch_size,
            num_workers=args.workers,
            pin_memory=device.type == "cuda",
            sampler=RandomSampler(
                windows, replacement=True, num_samples=10**9, generator=torch.Generator().manual_seed(0)
            ),
            persistent_workers=args.workers > 0,
            drop_last=True,
        )
        iterator = iter(loader)

        def next_loader_batch(it=iterator):
            return {k: v.to(device, non_blocking=True) for k, v in next(it).items()}

        slow = _measure(next_loader_batch, policy, optimizer, device, args.batch_size, args.seconds)
        del iterator, loader
        params = sum(p.numel() for p in policy.parameters())
        print(f"{name:<10} {params:>9,} {fast:>15,.0f} {slow:>18,.0f} {fast / slow:>6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
