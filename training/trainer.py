"""`training.run`: one training run from a TrainSpec to checkpoints, metrics and an evaluated result.

Reproducibility and exact resume: every random draw of the training loop comes from the global torch RNG (parameter
init, dropout, diffusion noise) or from the sampler's own CPU generator, and both are saved in every checkpoint with
numpy's and Python's. Validation and evaluation run under `isolated_rng` with their own fixed seeds, so they neither
consume nor depend on the training RNG: N steps, stop, resume to 2N gives the same parameters as 2N uninterrupted.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel
from torch import Tensor

from training.checkpoint import (
    CHECKPOINTS_DIR,
    TrainingState,
    find_resume_checkpoint,
    load_policy,
    load_train_spec,
    load_training_state,
    prune_checkpoints,
    remove_stale_temporaries,
    save_checkpoint,
)
from training.data.access import DatasetAccess
from training.data.dataset import ACTION_KEY, EpisodeDataset, PolicyFeatures
from training.data.frame_cache import decode_cameras
from training.data.placement import CameraFrames
from training.data.sampler import WindowSampler, split_episodes
from training.data.sources import DEFAULT_CACHE_DIR, load_dataset
from training.device import resolve_device
from training.envs import make_env
from training.errors import CheckpointError, DatasetError, EnvironmentError_, LimitExceeded, TrainingError
from training.evaluate import evaluate, isolated_rng
from training.optim import (
    Ema,
    make_optimizer,
    make_scheduler,
    scheduler_state_from_json,
    scheduler_state_to_json,
)
from training.policies import make_policy
from training.policies.base import Policy
from training.policies.configuration_base import ObservationKind
from training.policies.diffusion.configuration_diffusion import DiffusionConfig
from training.policies.size import size_problems
from training.policies.vision.geometry import input_size
from training.policies.vision.weights import IMAGENET_MEAN, IMAGENET_STD, load_imagenet_weights
from training.reporter import NullReporter, Reporter
from training.spec import Limits, TrainSpec, limit_problems

RESULT_FILE = "result.json"
METRICS_FILE = "metrics.jsonl"
# val/loss is the mean over at most this many batches drawn (with a fixed seed) from the held-out episodes.
MAX_VAL_BATCHES = 8
_VAL_SEED_OFFSET = 1
_EVAL_TORCH_SEED_OFFSET = 2
# Spec fields a resumed run must share with the checkpoint; others (steps, log/checkpoint cadence, eval, compute,
# device, name) may change between attempts.
_RESUME_MUST_MATCH = (
    ("policy",),
    ("dataset", "uri"),
    ("dataset", "val_fraction"),
    ("training", "batch_size"),
    ("training", "seed"),
    ("training", "lr"),
    ("training", "weight_decay"),
    ("training", "warmup_steps"),
    ("training", "grad_clip"),
)


class TrainResult(BaseModel):
    """What a run returns and writes to out_dir/result.json. eval["pc_success"] is a percentage (0..100)."""

    steps_done: int
    total_steps: int
    stopped: bool
    resumed_from_step: int | None = None
    final_metrics: dict[str, float]
    eval: dict[str, float] | None = None
    checkpoint: str | None  # relative to out_dir, e.g. "checkpoints/005000"
    device: str
    samples_per_s: float
    train_s: float
    num_parameters: int
    videos: list[str] = []  # rollout videos of the last evaluation, relative to out_dir


class _Running:
    """Sums of per-step metrics since the last read; tensors stay on the device so the hot loop never syncs."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.floats: dict[str, float] = {}
        self.steps = 0
        self.samples = 0
        self.update_s = 0.0
        self.data_s = 0.0
        self.started = time.perf_counter()

    def add(
        self, tensors: dict[str, Tensor], floats: dict[str, float], samples: int, data_s: float, update_s: float
    ) -> None:
        for k, v in tensors.items():
            self.tensors[k] = self.tensors[k] + v if k in self.tensors else v.clone()
        for k, number in floats.items():
            self.floats[k] = self.floats.get(k, 0.0) + float(number)
        self.steps += 1
        self.samples += samples
        self.data_s += data_s
        self.update_s += update_s

    def means(self) -> dict[str, float]:
        if not self.steps:
            return {}
        out: dict[str, float] = {k: float(v) / self.steps for k, v in self.tensors.items()}
        out.update({k: v / self.steps for k, v in self.floats.items()})
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        out["train/samples_per_s"] = self.samples / elapsed
        out["train/update_s"] = self.update_s / self.steps
        out["train/data_s"] = self.data_s / self.steps
        return out


def _stats_tensors(
    dataset: EpisodeDataset, features: PolicyFeatures, imagenet_cameras: bool
) -> dict[str, dict[str, Tensor]]:
    """The stats the policy normalises with; cameras use ImageNet's when the backbone is pretrained (as LeRobot's
    use_imagenet_stats), the dataset's per-channel stats otherwise."""
    stats = {}
    for key in [*features.observation, *features.images, ACTION_KEY]:
        if key in features.images and imagenet_cameras:
            mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
            stats[key] = {"mean": mean, "std": std, "min": torch.zeros(3), "max": torch.ones(3)}
            continue
        if key not in dataset.stats:
            raise DatasetError(f"the dataset has no stats for feature {key!r} in meta/stats.json")
        stats[key] = {
            name: torch.as_tensor(np.asarray(value, dtype=np.float32))
            for name, value in dataset.stats[key].items()
            if name in ("mean", "std", "min", "max")
        }
    return stats


def check_eval_env(env_name: str, features: PolicyFeatures) -> None:
    """The eval env must observe the features the policy is trained on and take actions of the dataset's width."""
    image_size = None
    if features.images:
        _, height, width = next(iter(features.images.values()))
        image_size = (height, width)
    env = make_env(env_name, 1, image_size)
    env_features = dict(env.observation_features)
    problems = []
    for key, dim in features.observation.items():
        if key not in env_features:
            problems.append(f"the env has no {key!r} observation (it has {sorted(env_features)})")
        elif env_features[key] != dim:
            problems.append(f"{key!r} is {env_features[key]}-dimensional in the env but {dim} in the dataset")
    for key, shape in features.images.items():
        if key not in env.image_features:
            problems.append(f"the env has no {key!r} camera (it has {sorted(env.image_features) or 'none'})")
        elif tuple(env.image_features[key]) != tuple(shape):
            problems.append(f"camera {key!r} is {env.image_features[key]} in the env but {shape} in the dataset")
    if env.action_dim != features.action_dim:
        problems.append(f"the env takes {env.action_dim}-dimensional actions but the dataset has {features.action_dim}")
    if problems:
        raise EnvironmentError_(f"eval env {env_name!r} does not match the dataset: " + "; ".join(problems))


def _spec_field(spec_data: dict, path: tuple[str, ...]) -> object:
    value: object = spec_data
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def check_resume_compatible(stored: TrainSpec, spec: TrainSpec, checkpoint: Path) -> None:
    stored_data, new_data = stored.model_dump(mode="json"), spec.model_dump(mode="json")
    differences = [
        ".".join(path) for path in _RESUME_MUST_MATCH if _spec_field(stored_data, path) != _spec_field(new_data, path)
    ]
    if differences:
        raise CheckpointError(
            f"cannot resume from {checkpoint}: the spec differs in {', '.join(differences)}; "
            "use a new output directory for a different run"
        )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _capture_rng(generator: torch.Generator, device: torch.device) -> dict:
    # Plain Python values and tensors only, so the file loads with torch.load(weights_only=True).
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "sampler": generator.get_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict, generator: torch.Generator, device: torch.device) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state(
        ("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    generator.set_state(state["sampler"])
    if device.type == "cuda" and "cuda" in state and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class _Run:
    """The state of one run() call; methods are the phases of the loop."""

    def __init__(
        self,
        spec: TrainSpec,
        out_dir: Path,
        reporter: Reporter,
        cache_dir: Path | None,
        report_interval_s: float,
        weights_dir: Path | None = None,
        access: DatasetAccess | None = None,
        limits: Limits | None = None,
    ):
        self.spec = spec
        self.access = access if access is not None else DatasetAccess()
        self.limits = limits if limits is not None else Limits()
        self.out_dir = out_dir
        self.reporter = reporter
        self.cache_dir = cache_dir
        self.weights_dir = weights_dir
        self.report_interval_s = report_interval_s
        self.total = spec.training.steps
        self.step = 0
        self.last_saved_step: int | None = None
        self.last_checkpoint: Path | None = None
        self.pending: dict[str, float] = {}  # val/eval metrics not yet sent with progress()
        self.latest_val: dict[str, float] = {}
        self.latest_eval: dict[str, float] | None = None
        self.latest_videos: list[str] = []

    # ----------------------------------------------------------------------------------------------- setup
    def setup(self) -> None:
        spec = self.spec
        self.device = resolve_device(spec.training.device)
        self.load_data()
        if spec.eval.env is not None:
            check_eval_env(spec.eval.env, self.features)

        checkpoints = self.out_dir / CHECKPOINTS_DIR
        remove_stale_temporaries(checkpoints)
        self.resume_from = find_resume_checkpoint(self.out_dir, self.reporter.log)
        if self.resume_from is not None:
            check_resume_compatible(load_train_spec(self.resume_from), spec, self.resume_from)

        seed = spec.training.seed
        _seed_everything(seed)
        self.train_episodes, self.val_episodes = split_episodes(
            self.dataset.num_episodes, spec.dataset.val_fraction, seed
        )
        self.build_policy()
        obs_deltas = self.policy.observation_delta_indices
        action_deltas = self.policy.action_delta_indices
        # One placement of the camera frames for both samplers (on a GPU: once, within a share of its free memory).
        frames = CameraFrames(self.dataset, self.device)
        if frames.placements:
            self.reporter.log(frames.describe())
        self.sampler = WindowSampler(
            self.dataset, self.train_episodes, obs_deltas, action_deltas, self.device, cameras=frames
        )
        self.val_sampler = (
            WindowSampler(self.dataset, self.val_episodes, obs_deltas, action_deltas, self.device, cameras=frames)
            if len(self.val_episodes)
            else None
        )
        self.build_optimizer()
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

        if self.resume_from is not None:
            self._restore(load_training_state(self.resume_from))
            self._drop_rows_after(self.step)
            self.reporter.log(f"resumed from {self.resume_from} at step {self.step}")
        cameras = f", cameras {', '.join(self.features.images)}" if self.features.images else ""
        self.reporter.log(
            f"training {spec.policy.type} on {spec.dataset.uri}: {self.dataset.num_episodes} episodes "
            f"({len(self.train_episodes)} train, {len(self.val_episodes)} val), {self.dataset.num_frames} frames"
            f"{cameras}, {self.num_parameters():,} parameters, device {self.device}"
        )

    def load_data(self) -> None:
        """Read the dataset, and decode its cameras at the policy's input size (once per dataset: cached)."""
        spec = self.spec
        problems = limit_problems(spec, self.limits)
        if problems:
            raise LimitExceeded("; ".join(problems))
        cache = self.cache_dir if self.cache_dir is not None else DEFAULT_CACHE_DIR
        self.dataset = load_dataset(  # cache_dir None: ~/.cache/robotrain/datasets
            spec.dataset.uri, self.cache_dir, self.access, max_bytes=self.limits.max_dataset_bytes
        )
        self.features = self.dataset.policy_features()
        try:
            problems = size_problems(spec, self.limits, self.features)
        except ValueError as exc:  # the policy cannot use these features (e.g. no observation at all)
            raise DatasetError(f"this dataset cannot train a {spec.policy.type} policy: {exc}") from exc
        if problems:
            raise LimitExceeded("; ".join(problems))
        image_size = self.spec.policy.image_size
        sizes = {key: input_size((shape[1], shape[2]), image_size) for key, shape in self.features.images.items()}
        decode_cameras(self.dataset, sizes, Path(cache), log=self.reporter.log)
        self.observation_kind: ObservationKind = "camera" if self.features.images else "state"

    def build_policy(self) -> None:
        config = self.spec.policy
        self.stats = _stats_tensors(self.dataset, self.features, config.pretrained_backbone)
        try:
            self.policy: Policy = make_policy(config, self.features, self.stats)
        except ValueError as exc:  # the policy cannot use these features (e.g. no observation at all)
            raise DatasetError(f"the dataset cannot train a {config.type} policy: {exc}") from exc
        if config.pretrained_backbone and self.features.images:
            try:
                self.policy.load_backbone_weights(load_imagenet_weights(self.weights_dir))
            except ValueError as exc:
                raise TrainingError(f"cannot load the ImageNet weights: {exc}") from exc
        self.policy.to(self.device).train()

    def build_optimizer(self) -> None:
        spec, kind = self.spec, self.observation_kind
        self.optimizer = make_optimizer(
            self.policy, spec.resolved_lr(kind), spec.resolved_weight_decay(kind), spec.policy.optimizer_betas
        )
        self.scheduler = make_scheduler(
            self.optimizer, spec.resolved_warmup_steps(kind), self.total, spec.resolved_scheduler(kind)
        )
        config = spec.policy
        self.ema = None
        if isinstance(config, DiffusionConfig) and config.use_ema:
            self.ema = Ema(self.policy, config.ema_power, config.ema_max_decay)

    def _restore(self, state: TrainingState) -> None:
        try:
            self.policy.load_state_dict(state.model, strict=True)
            self.optimizer.load_state_dict(state.optimizer)
            scheduler_state_from_json(self.scheduler, state.scheduler)
            if self.ema is not None:
                if state.ema is None:
                    raise CheckpointError(f"checkpoint {self.resume_from} has no EMA state but the policy uses EMA")
                self.ema.load_state_dict({k: v.to(self.device) for k, v in state.ema.items()})
            _restore_rng(state.rng, self.generator, self.device)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {self.resume_from} does not fit this run: {exc}") from exc
        self.step = state.step
        self.last_saved_step = state.step
        self.last_checkpoint = self.resume_from

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.policy.parameters())

    # ----------------------------------------------------------------------------------------------- pieces
    def save(self) -> Path:
        if self.last_saved_step == self.step and self.last_checkpoint is not None:
            return self.last_checkpoint
        path = save_checkpoint(
            self.out_dir,
            self.step,
            spec=self.spec,
            policy=self.policy,
            stats=self.stats,
            optimizer_state=self.optimizer.state_dict(),
            scheduler_state=scheduler_state_to_json(self.scheduler),
            rng_state=_capture_rng(self.generator, self.device),
            deploy_state=self.ema.averaged_state_dict(self.policy) if self.ema is not None else None,
            ema_state=self.ema.state_dict() if self.ema is not None else None,
        )
        self.last_saved_step, self.last_checkpoint = self.step, path
        if self.limits.checkpoints_kept is not None:
            prune_checkpoints(self.out_dir, self.limits.checkpoints_kept)
        self.reporter.checkpoint(self.step, path)
        return path

    @torch.no_grad()
    def validation_loss(self) -> float | None:
        if self.val_sampler is None:
            return None
        self.policy.eval()
        losses = []
        try:
            with isolated_rng(self.spec.training.seed + _VAL_SEED_OFFSET, self.device):
                generator = torch.Generator(device="cpu").manual_seed(self.spec.training.seed + _VAL_SEED_OFFSET)
                for _ in range(MAX_VAL_BATCHES):
                    loss, _ = self.policy(self.val_sampler.sample(self.spec.training.batch_size, generator))
                    losses.append(float(loss))
        finally:
            self.policy.train()
        return sum(losses) / len(losses)

    def evaluate_checkpoint(self) -> dict[str, float]:
        """Evaluate the checkpoint as saved on disk, as a user deploying it would load it; save a few rollouts as
        videos under eval/videos/step_<step>/."""
        env_name = self.spec.eval.env
        assert env_name is not None
        checkpoint = self.save()
        policy = load_policy(checkpoint, self.device)
        video_dir = self.out_dir / "eval" / "videos" / f"step_{self.step:06d}"
        results = evaluate(
            policy,
            env_name,
            self.spec.eval.episodes,
            device=self.device,
            video_dir=video_dir if self.spec.eval.videos else None,
            videos=self.spec.eval.videos,
        )
        self.latest_videos = [str(Path(path).relative_to(self.out_dir)) for path in results.pop("videos")]
        eval_dir = self.out_dir / "eval"
        eval_dir.mkdir(exist_ok=True)
        (eval_dir / f"eval_info_{self.step:06d}.json").write_text(json.dumps(results, indent=1) + "\n")
        scalars = {f"eval/{k}": float(v) for k, v in results.items() if k != "per_episode"}
        self.reporter.log(
            f"eval at step {self.step}: success {results['pc_success']:.1f}% "
            f"(95% CI {results['pc_success_ci_low']:.1f}-{results['pc_success_ci_high']:.1f}) over "
            f"{results['n_episodes']} episodes, avg max reward {results['avg_max_reward']:.3f}"
        )
        self._write_row({"step": self.step, **scalars})
        self.pending.update(scalars)
        self.latest_eval = {k.removeprefix("eval/"): v for k, v in scalars.items()}
        return scalars

    def _drop_rows_after(self, step: int) -> None:
        """Forget metric rows logged after the checkpoint being resumed: those steps run again."""
        path = self.out_dir / METRICS_FILE
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except ValueError:  # a line cut short by a crash
                continue
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)

    def _write_row(self, row: dict) -> None:
        with open(self.out_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(row) + "\n")

    # ----------------------------------------------------------------------------------------------- loop
    def update(self, params: list[torch.nn.Parameter]) -> tuple[dict[str, Tensor], dict[str, float], float, float]:
        """One optimisation step on one batch: (tensor metrics, float metrics, data seconds, update seconds)."""
        t0 = time.perf_counter()
        batch = self.sampler.sample(self.spec.training.batch_size, self.generator)
        t1 = time.perf_counter()
        loss, policy_metrics = self.policy(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.spec.training.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        ema_decay = self.ema.update(self.policy) if self.ema is not None else None
        self.step += 1
        t2 = time.perf_counter()
        floats = {f"train/{k}": v for k, v in policy_metrics.items()}
        floats["train/lr"] = lr
        if ema_decay is not None:
            floats["ema/decay"] = ema_decay
        tensors = {"train/loss": loss.detach(), "train/grad_norm": grad_norm.detach()}
        return tensors, floats, t1 - t0, t2 - t1

    def log_row(self, window: _Running) -> dict[str, float]:
        """The mean metrics since the last log, plus val/loss, written to metrics.jsonl; a diverged loss stops."""
        row = window.means()
        window.reset()
        if not math.isfinite(row["train/loss"]):
            raise TrainingError(
                f"the training loss became {row['train/loss']} by step {self.step}; "
                "try a lower training.lr or a smaller training.grad_clip"
            )
        val = self.validation_loss()
        if val is not None:
            row["val/loss"] = val
            self.pending["val/loss"] = val
            self.latest_val = {"val/loss": val}
        self._write_row({"step": self.step, **row})
        return row

    def report(self, window: _Running | None = None) -> None:
        metrics = {**(window.means() if window is not None else {}), **self.pending}
        self.reporter.progress(self.step, self.total, metrics)
        if window is not None:
            window.reset()
        self.pending = {}

    def train(self) -> TrainResult:
        spec = self.spec
        start_step = self.step
        resumed_from = self.step if self.resume_from is not None else None
        report_window, log_window = _Running(), _Running()
        last_report = time.perf_counter()
        started = time.perf_counter()
        stopped = False
        log_row: dict[str, float] = {}
        params = [p for p in self.policy.parameters() if p.requires_grad]

        while self.step < self.total:
            if self.reporter.should_stop():
                stopped = True
                if report_window.steps:
                    self.report(report_window)
                break
            tensors, floats, data_s, update_s = self.update(params)
            for window in (report_window, log_window):
                window.add(tensors, floats, spec.training.batch_size, data_s, update_s)
            last = self.step == self.total
            if self.step % spec.training.log_every == 0 or last:
                log_row = self.log_row(log_window)
            if self.step % spec.training.checkpoint_every == 0 or last:
                self.save()
            if spec.eval.env is not None and spec.eval.every and self.step % spec.eval.every == 0 and not last:
                self.evaluate_checkpoint()
            now = time.perf_counter()
            if now - last_report >= self.report_interval_s or last:
                self.report(report_window)
                last_report = now

        train_s = time.perf_counter() - started
        steps_run = self.step - start_step
        self.finish(stopped, steps_run)
        final = dict(log_row) or report_window.means()
        final.update(self.latest_val)
        return TrainResult(
            steps_done=self.step,
            total_steps=self.total,
            stopped=stopped,
            resumed_from_step=resumed_from,
            final_metrics=final,
            eval=self.latest_eval if not stopped else None,
            checkpoint=str(self.last_checkpoint.relative_to(self.out_dir)) if self.last_checkpoint else None,
            device=str(self.device),
            samples_per_s=steps_run * spec.training.batch_size / train_s if train_s > 0 and steps_run else 0.0,
            train_s=train_s,
            num_parameters=self.num_parameters(),
            videos=self.latest_videos if not stopped else [],
        )

    def finish(self, stopped: bool, steps_run: int) -> None:
        """Save the last checkpoint and, unless stopped, evaluate it and report once more."""
        if steps_run == 0 and not stopped:
            # Resumed at (or past) the last step: still report where the run stands.
            self.report()
        self.save()
        if not stopped and self.spec.eval.env is not None:
            self.evaluate_checkpoint()
            # One more report at the last step, so the final eval/* metrics reach the reporter too.
            self.report()
        if stopped:
            self.reporter.log(f"stopped at step {self.step}; checkpoint saved, rerun on {self.out_dir} to resume")


def run(
    spec: TrainSpec,
    out_dir: Path,
    reporter: Reporter | None = None,
    *,
    cache_dir: Path | None = None,
    report_interval_s: float = 2.0,
    weights_dir: Path | None = None,
    access: DatasetAccess | None = None,
    limits: Limits | None = None,
) -> TrainResult:
    """Train `spec` in `out_dir` (resuming from out_dir/checkpoints/last when it exists), evaluate the final
    checkpoint when spec.eval.env is set, write out_dir/result.json and return the result.

    Raises DatasetError (before any training) for a bad dataset, EnvironmentError_ when the eval env does not match
    the dataset, CheckpointError when out_dir holds a checkpoint of a different run or none that is complete, and
    TrainingError for other failures worth telling the user (e.g. an unavailable device, a diverging loss).

    `cache_dir` holds generated and downloaded datasets and decoded camera frames (default
    ~/.cache/robotrain/datasets); `weights_dir` holds resnet18-f37072fd.pth for policy.pretrained_backbone.

    `access` decides which dataset sources may be read (default: builtin datasets and public Hub repos only);
    `limits` bounds the job (default: none) and raises LimitExceeded, before training, for a spec or dataset over
    them; `limits.checkpoints_kept` prunes older checkpoints as new ones land."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_state = _Run(
        spec, out_dir, reporter or NullReporter(), cache_dir, report_interval_s, weights_dir, access, limits
    )
    run_state.setup()
    result = run_state.train()
    tmp = out_dir / f".{RESULT_FILE}.tmp"
    tmp.write_text(result.model_dump_json(indent=2) + "\n")
    tmp.replace(out_dir / RESULT_FILE)
    return result
