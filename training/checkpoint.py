"""Checkpoints in LeRobot's layout, written atomically, and the loaders for resuming and deploying.

    <run>/checkpoints/<step:06d>/pretrained_model/{config.json, model.safetensors, normalization_stats.safetensors,
                                                   train_config.json}
                                /training_state/{optimizer_state.pt, scheduler_state.json, rng_state.pt,
                                                 training_step.json[, raw_model.safetensors, ema_state.safetensors]}
                                /manifest.json      (size and sha256 of every file above; written last)
    <run>/checkpoints/last -> <step:06d>            (relative symlink, or a text file naming the step)

`model.safetensors` holds the weights to deploy: the EMA weights when the policy trains with EMA, whose raw weights
then live in `training_state/raw_model.safetensors`. A checkpoint is built in a temporary directory inside
`checkpoints/`, fsynced, renamed to its step, and only then is `last` repointed (os.replace), so a crash at any point
leaves `last` naming a complete checkpoint. `prune_checkpoints` bounds what a run keeps: the newest N, the one `last`
names, and the best by evaluation (users pick earlier checkpoints when success peaks before the end of training;
robomimic reports the best checkpoint). Without it every checkpoint is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import TypeAdapter, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from training.data.dataset import PolicyFeatures
from training.errors import CheckpointError
from training.paths import remove_inside
from training.policies import make_policy
from training.policies.act.configuration_act import ActConfig
from training.policies.base import Policy
from training.policies.diffusion.configuration_diffusion import DiffusionConfig
from training.policies.mlp.configuration_mlp import MlpConfig
from training.spec import PolicyConfig, TrainSpec

CHECKPOINTS_DIR = "checkpoints"
LAST = "last"
PRETRAINED_DIR = "pretrained_model"
TRAINING_STATE_DIR = "training_state"
MANIFEST = "manifest.json"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
STATS_FILE = "normalization_stats.safetensors"
TRAIN_CONFIG_FILE = "train_config.json"
OPTIMIZER_FILE = "optimizer_state.pt"
SCHEDULER_FILE = "scheduler_state.json"
RNG_FILE = "rng_state.pt"
STEP_FILE = "training_step.json"
RAW_MODEL_FILE = "raw_model.safetensors"
EMA_FILE = "ema_state.safetensors"
_TMP_PREFIX = ".tmp-"
EVAL_DIR = "eval"
_EVAL_INFO = re.compile(r"^eval_info_(\d+)\.json$")  # eval/eval_info_<step:06d>.json, written by the trainer
# The spec's discriminated union of policy configs, validated as the spec does.
_POLICY_CONFIG: TypeAdapter[MlpConfig | ActConfig | DiffusionConfig] = TypeAdapter(PolicyConfig)


def checkpoint_name(step: int) -> str:
    return f"{step:06d}"


@dataclass
class TrainingState:
    """Everything beyond the deployable weights that a resumed run restores."""

    step: int
    model: dict[str, Tensor]  # raw (non-EMA) weights
    ema: dict[str, Tensor] | None
    optimizer: dict
    scheduler: dict
    rng: dict
    batch_size: int
    seed: int


# ---------------------------------------------------------------------------------------------------------- writing


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")  # key order matters: features concatenate in it


def _save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    # safetensors refuses shared or non-contiguous storage; copies on the CPU are small for these models.
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, str(path))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stats_to_flat(stats: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
    return {f"{feature}/{name}": value for feature, values in stats.items() for name, value in values.items()}


def stats_from_flat(flat: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    stats: dict[str, dict[str, Tensor]] = {}
    for key, value in flat.items():
        feature, _, name = key.rpartition("/")
        stats.setdefault(feature, {})[name] = value
    return stats


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    spec: TrainSpec,
    policy: Policy,
    stats: dict[str, dict[str, Tensor]],
    optimizer_state: dict,
    scheduler_state: dict,
    rng_state: dict,
    deploy_state: dict[str, Tensor] | None = None,
    ema_state: dict[str, Tensor] | None = None,
) -> Path:
    """Write checkpoint `step` atomically and repoint `last` to it; return its directory.

    `deploy_state` is the state_dict to ship in model.safetensors (the EMA weights); None ships the raw weights."""
    checkpoints = Path(run_dir) / CHECKPOINTS_DIR
    checkpoints.mkdir(parents=True, exist_ok=True)
    final = checkpoints / checkpoint_name(step)
    tmp = checkpoints / f"{_TMP_PREFIX}{checkpoint_name(step)}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        pretrained = tmp / PRETRAINED_DIR
        state_dir = tmp / TRAINING_STATE_DIR
        pretrained.mkdir(parents=True)
        state_dir.mkdir()

        raw_state = policy.state_dict()
        _write_json(
            pretrained / CONFIG_FILE,
            {
                "type": policy.config.type,
                "config": policy.config.model_dump(mode="json"),
                "features": policy.features.to_dict(),
            },
        )
        _save_tensors(pretrained / MODEL_FILE, deploy_state if deploy_state is not None else raw_state)
        _save_tensors(pretrained / STATS_FILE, stats_to_flat(stats))
        _write_json(pretrained / TRAIN_CONFIG_FILE, spec.model_dump(mode="json"))

        torch.save(optimizer_state, state_dir / OPTIMIZER_FILE)
        _write_json(state_dir / SCHEDULER_FILE, scheduler_state)
        torch.save(rng_state, state_dir / RNG_FILE)
        _write_json(
            state_dir / STEP_FILE,
            {
                "step": step,
                "batch_size": spec.training.batch_size,
                "seed": spec.training.seed,
                "total_steps": spec.training.steps,
            },
        )
        if deploy_state is not None:
            _save_tensors(state_dir / RAW_MODEL_FILE, raw_state)
        if ema_state is not None:
            _save_tensors(state_dir / EMA_FILE, ema_state)

        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        for path in files:
            _fsync_file(path)
        manifest = {
            "step": step,
            "files": {str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files},
        }
        _write_json(tmp / MANIFEST, manifest)
        _fsync_file(tmp / MANIFEST)
        for directory in (pretrained, state_dir, tmp):
            _fsync_dir(directory)

        if final.exists():  # the same step saved again (e.g. stop requested right after a periodic save)
            stale = checkpoints / f"{_TMP_PREFIX}old-{checkpoint_name(step)}-{os.getpid()}"
            os.replace(final, stale)
            os.replace(tmp, final)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(checkpoints)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    point_last(checkpoints, final.name)
    return final


def point_last(checkpoints: Path, name: str) -> None:
    """Repoint checkpoints/last to `name` atomically: a relative symlink where the filesystem has them, else a text
    file holding the name."""
    tmp = checkpoints / f"{_TMP_PREFIX}{LAST}-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    try:
        os.symlink(name, tmp)
    except OSError:
        tmp.write_text(name + "\n")
        _fsync_file(tmp)
    os.replace(tmp, checkpoints / LAST)
    _fsync_dir(checkpoints)


def remove_stale_temporaries(checkpoints: Path) -> None:
    """Delete what an interrupted save left behind (never a completed checkpoint)."""
    if checkpoints.is_dir():
        for path in checkpoints.glob(f"{_TMP_PREFIX}*"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def best_evaluated(run_dir: Path) -> str | None:
    """The checkpoint (by name) with the highest evaluated success rate among those still on disk; a tie goes to
    the later step. None when no existing checkpoint was evaluated."""
    run_dir = Path(run_dir)
    existing = {path.name for path in _step_dirs(run_dir / CHECKPOINTS_DIR)}
    best: tuple[float, int] | None = None
    eval_dir = run_dir / EVAL_DIR
    for path in eval_dir.iterdir() if eval_dir.is_dir() else ():
        match = _EVAL_INFO.match(path.name)
        if match is None or checkpoint_name(int(match.group(1))) not in existing:
            continue
        try:
            success = float(json.loads(path.read_text())["pc_success"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a results file cut short by a crash ranks nowhere
        candidate = (success, int(match.group(1)))
        if best is None or candidate > best:
            best = candidate
    return checkpoint_name(best[1]) if best is not None else None


def prune_checkpoints(run_dir: Path, keep_last: int) -> list[str]:
    """Delete the run's checkpoints except the newest `keep_last`, the one `last` names and the best evaluated one;
    return the names deleted. Deletions stay inside the run's checkpoints directory."""
    if keep_last < 1:
        raise ValueError("keep_last must be at least 1")
    checkpoints = Path(run_dir) / CHECKPOINTS_DIR
    steps = _step_dirs(checkpoints)
    keep = {path.name for path in steps[-keep_last:]} | {read_last(checkpoints), best_evaluated(run_dir)}
    removed = []
    for path in steps:
        if path.name not in keep:
            remove_inside(checkpoints, path)
            removed.append(path.name)
    return removed


# ---------------------------------------------------------------------------------------------------------- finding


def read_last(checkpoints: Path) -> str | None:
    """The step name `last` points to, from a symlink or a text file; None when there is no `last`."""
    last = checkpoints / LAST
    if last.is_symlink():
        return Path(os.readlink(last)).name
    if last.is_file():
        name = last.read_text().strip()
        return Path(name).name if name else None
    return None


def verify_checkpoint(path: Path) -> None:
    """Raise CheckpointError unless every file the manifest lists is present with its recorded size and hash."""
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has no readable {MANIFEST}: it is incomplete ({exc})") from exc
    for rel, expected in files.items():
        file = path / rel
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is missing {rel}")
        if file.stat().st_size != expected["size"]:
            raise CheckpointError(f"checkpoint {path}: {rel} is truncated or altered (size differs from manifest)")
        if _sha256(file) != expected["sha256"]:
            raise CheckpointError(f"checkpoint {path}: {rel} is corrupt (checksum differs from manifest)")


def _step_dirs(checkpoints: Path) -> list[Path]:
    if not checkpoints.is_dir():
        return []
    return sorted((p for p in checkpoints.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def find_resume_checkpoint(run_dir: Path, log: Callable[[str], None] = lambda _: None) -> Path | None:
    """The checkpoint a run in `run_dir` resumes from: the one `last` names if it verifies, else the newest complete
    earlier one. None when the run has no checkpoint yet; CheckpointError when there are some but none is complete."""
    checkpoints = Path(run_dir) / CHECKPOINTS_DIR
    candidates = list(reversed(_step_dirs(checkpoints)))
    last_name = read_last(checkpoints)
    if last_name is None and not candidates:
        return None
    if last_name is not None:
        last_path = checkpoints / last_name
        # Only checkpoints no newer than `last` count: a newer one would be from a save that never completed.
        candidates = [last_path] + [
            c for c in candidates if c.name.isdigit() and last_name.isdigit() and int(c.name) < int(last_name)
        ]
    problems = []
    for candidate in candidates:
        try:
            verify_checkpoint(candidate)
        except CheckpointError as exc:
            problems.append(exc.message)
            log(f"skipping checkpoint {candidate.name}: {exc.message}")
            continue
        return candidate
    raise CheckpointError(
        f"no complete checkpoint to resume from in {checkpoints}: " + ("; ".join(problems) or "none found")
    )


def resolve_pretrained_dir(path: Path) -> Path:
    """Accept a run directory (uses `last`), a checkpoint directory, or its pretrained_model directory."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint path {path} does not exist")
    if (path / CONFIG_FILE).is_file() and (path / MODEL_FILE).is_file():
        return path
    if (path / PRETRAINED_DIR).is_dir():
        return path / PRETRAINED_DIR
    if (path / CHECKPOINTS_DIR).is_dir():
        found = find_resume_checkpoint(path)
        if found is None:
            raise CheckpointError(f"run directory {path} has no checkpoint yet")
        return found / PRETRAINED_DIR
    raise CheckpointError(
        f"{path} is not a checkpoint: expected a run directory (with checkpoints/), a checkpoint directory "
        f"(with {PRETRAINED_DIR}/), or a {PRETRAINED_DIR} directory (with {CONFIG_FILE} and {MODEL_FILE})"
    )


# ---------------------------------------------------------------------------------------------------------- reading


def _load_tensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc


def load_policy(path: Path | str, device: str | torch.device = "cpu") -> Policy:
    """Rebuild a trained policy from disk, in eval mode on `device`.

    `path` is a run directory (its `last` checkpoint), a checkpoint directory (checkpoints/<step>) or that
    checkpoint's pretrained_model directory."""
    pretrained = resolve_pretrained_dir(Path(path))
    config_data = _read_json(pretrained / CONFIG_FILE)
    try:
        config = _POLICY_CONFIG.validate_python(config_data["config"])
        features = PolicyFeatures.from_dict(config_data["features"])
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise CheckpointError(f"{pretrained / CONFIG_FILE} does not describe a policy: {exc}") from exc
    stats = stats_from_flat(_load_tensors(pretrained / STATS_FILE)) if (pretrained / STATS_FILE).is_file() else None
    policy = make_policy(config, features, stats)
    state = _load_tensors(pretrained / MODEL_FILE)
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{pretrained / MODEL_FILE} does not fit the policy in {CONFIG_FILE}: {exc}") from exc
    return policy.to(device).eval()


def load_train_spec(checkpoint: Path) -> TrainSpec:
    data = _read_json(checkpoint / PRETRAINED_DIR / TRAIN_CONFIG_FILE)
    try:
        return TrainSpec.model_validate(data)
    except ValidationError as exc:
        raise CheckpointError(f"{checkpoint / PRETRAINED_DIR / TRAIN_CONFIG_FILE} is not a valid spec: {exc}") from exc


def load_training_state(checkpoint: Path) -> TrainingState:
    """Read what a resumed run restores. The checkpoint must have been verified first."""
    pretrained = checkpoint / PRETRAINED_DIR
    state_dir = checkpoint / TRAINING_STATE_DIR
    step_info = _read_json(state_dir / STEP_FILE)
    raw_file = state_dir / RAW_MODEL_FILE
    model = _load_tensors(raw_file if raw_file.is_file() else pretrained / MODEL_FILE)
    ema = _load_tensors(state_dir / EMA_FILE) if (state_dir / EMA_FILE).is_file() else None
    try:
        # weights_only: these files hold only tensors and plain Python values, so nothing executes on load.
        optimizer = torch.load(state_dir / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
        rng = torch.load(state_dir / RNG_FILE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"cannot read the training state in {state_dir}: {exc}") from exc
    return TrainingState(
        step=int(step_info["step"]),
        model=model,
        ema=ema,
        optimizer=optimizer,
        scheduler=_read_json(state_dir / SCHEDULER_FILE),
        rng=rng,
        batch_size=int(step_info["batch_size"]),
        seed=int(step_info["seed"]),
    )
