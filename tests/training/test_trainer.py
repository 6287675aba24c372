import json
import os

import pytest
import torch
from safetensors.torch import load_file

from training.checkpoint import CHECKPOINTS_DIR, read_last
from training.data import lerobot
from training.data.access import DatasetAccess
from training.errors import CheckpointError, DatasetError, EnvironmentError_, LimitExceeded
from training.reporter import NullReporter
from training.spec import Limits, TrainSpec
from training.trainer import METRICS_FILE, RESULT_FILE, run


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # the CI cores are shared


class RecordingReporter(NullReporter):
    """Records every call; asks to stop once `stop_after_steps` steps are done."""

    def __init__(self, stop_after_steps: int | None = None):
        self.stop_after_steps = stop_after_steps
        self.progress_calls: list[tuple[int, int, dict]] = []
        self.checkpoints: list[int] = []
        self.messages: list[str] = []
        self.should_stop_calls = 0

    def progress(self, step, total, metrics):
        self.progress_calls.append((step, total, dict(metrics)))

    def checkpoint(self, step, path):
        assert (path / "manifest.json").is_file()  # reported only once complete on disk
        self.checkpoints.append(step)

    def log(self, message):
        self.messages.append(message)

    def should_stop(self):
        self.should_stop_calls += 1
        # Checked before each step: call k comes after k - 1 steps.
        return self.stop_after_steps is not None and self.should_stop_calls > self.stop_after_steps


def _spec(
    policy: dict,
    *,
    steps: int,
    episodes: int = 20,
    dataset_query: str = "",
    eval_env=None,
    eval_episodes=50,
    eval_every=None,
    **training,
) -> TrainSpec:
    query = f"episodes={episodes}{dataset_query}"
    return TrainSpec.model_validate(
        {
            "policy": policy,
            "dataset": {"uri": f"builtin://push2d?{query}", "val_fraction": training.pop("val", 0.1)},
            "training": {
                "steps": steps,
                "device": "cpu",
                "batch_size": 32,
                "log_every": 5,
                "checkpoint_every": 1000,
                **training,
            },
            "eval": {"env": eval_env, "episodes": eval_episodes, "every": eval_every},
        }
    )


def _rows(out_dir):
    return [json.loads(line) for line in (out_dir / METRICS_FILE).read_text().splitlines()]


TINY_MLP = {"type": "mlp", "hidden_dims": [32, 32], "dropout": 0.1}
TINY_DIFFUSION = {
    "type": "diffusion",
    "down_dims": [16, 32],
    "horizon": 8,
    "n_action_steps": 4,
    "diffusion_step_embed_dim": 16,
    "n_groups": 4,
    "num_inference_steps": 4,
}
# From pixels only (16x16 renders, randomly cropped to 14x14 on the training RNG), the small CNN encoder.
TINY_CAMERA_MLP = {
    "type": "mlp",
    "hidden_dims": [32],
    "vision_backbone": "small_cnn",
    "spatial_softmax_num_keypoints": 8,
    "crop_ratio": 0.875,
}
CAMERA_DATASET = {"episodes": 4, "dataset_query": "&obs_type=pixels&image_size=16"}


# ------------------------------------------------------------------------------------------------ mechanics


def test_metrics_progress_checkpoints_and_result(tmp_path, dataset_cache):
    reporter = RecordingReporter()
    spec = _spec(TINY_MLP, steps=12, checkpoint_every=5, log_every=5)
    result = run(spec, tmp_path, reporter, cache_dir=dataset_cache, report_interval_s=1e9)

    assert result.steps_done == 12 and not result.stopped and result.checkpoint == "checkpoints/000012"
    assert reporter.checkpoints == [5, 10, 12]
    assert read_last(tmp_path / CHECKPOINTS_DIR) == "000012"
    # report_interval_s is huge, so only the last step reports, averaged over every step since the start.
    assert [(s, t) for s, t, _ in reporter.progress_calls] == [(12, 12)]
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == [5, 10, 12]
    for name in (
        "train/loss",
        "train/grad_norm",
        "train/lr",
        "train/samples_per_s",
        "train/update_s",
        "train/data_s",
        "val/loss",
    ):
        assert all(name in r for r in rows), name
    saved = json.loads((tmp_path / RESULT_FILE).read_text())
    assert saved["steps_done"] == 12 and saved["eval"] is None
    assert set(result.final_metrics) >= {"train/loss", "val/loss"}


def test_evaluation_runs_on_the_saved_checkpoint_every_n_steps_and_at_the_end(tmp_path, dataset_cache):
    reporter = RecordingReporter()
    spec = _spec(TINY_MLP, steps=8, eval_env="push2d", eval_episodes=3, eval_every=4)
    result = run(spec, tmp_path, reporter, cache_dir=dataset_cache, report_interval_s=1e9)
    eval_rows = [r for r in _rows(tmp_path) if "eval/pc_success" in r]
    assert [r["step"] for r in eval_rows] == [4, 8]
    assert reporter.checkpoints == [4, 8]  # evaluation loads what is on disk, so step 4 was saved first
    assert (tmp_path / "eval" / "eval_info_000004.json").is_file()
    assert set(result.eval) >= {
        "pc_success",
        "pc_success_ci_low",
        "pc_success_ci_high",
        "avg_max_reward",
        "avg_sum_reward",
        "n_episodes",
    }
    assert 0.0 <= result.eval["pc_success_ci_low"] <= result.eval["pc_success"] <= result.eval["pc_success_ci_high"]
    step, total, last_metrics = reporter.progress_calls[-1]
    assert (step, total) == (8, 8) and last_metrics["eval/n_episodes"] == 3


def test_should_stop_saves_a_checkpoint_and_returns_stopped(tmp_path, dataset_cache):
    reporter = RecordingReporter(stop_after_steps=3)
    result = run(_spec(TINY_MLP, steps=50), tmp_path, reporter, cache_dir=dataset_cache)
    assert result.stopped and result.steps_done == 3
    assert result.checkpoint == "checkpoints/000003" and reporter.checkpoints == [3]
    assert read_last(tmp_path / CHECKPOINTS_DIR) == "000003"
    assert json.loads((tmp_path / RESULT_FILE).read_text())["stopped"] is True


def test_a_bad_dataset_fails_before_any_training(tmp_path, dataset_cache):
    spec = _spec(TINY_MLP, steps=5).model_copy(
        update={
            "dataset": TrainSpec.model_validate(
                {"policy": TINY_MLP, "dataset": {"uri": f"file://{tmp_path}/missing"}}
            ).dataset
        }
    )
    with pytest.raises(DatasetError, match="missing"):
        run(spec, tmp_path / "out", cache_dir=dataset_cache, access=DatasetAccess(file_roots=(tmp_path,)))
    assert not (tmp_path / "out" / CHECKPOINTS_DIR).exists()


def test_a_spec_over_the_operators_limits_fails_before_any_training(tmp_path, dataset_cache):
    with pytest.raises(LimitExceeded, match=r"the policy has [\d,]+ parameters; this service allows at most 1,000"):
        run(_spec(TINY_MLP, steps=5), tmp_path / "out", cache_dir=dataset_cache, limits=Limits(max_parameters=1000))
    with pytest.raises(LimitExceeded, match="training.steps is 5; this service allows at most 4"):
        run(_spec(TINY_MLP, steps=5), tmp_path / "out", cache_dir=dataset_cache, limits=Limits(max_steps=4))
    assert not (tmp_path / "out" / CHECKPOINTS_DIR).exists()


def test_checkpoints_beyond_the_kept_number_are_pruned_as_training_goes(tmp_path, dataset_cache):
    run(
        _spec(TINY_MLP, steps=8, checkpoint_every=2),
        tmp_path,
        cache_dir=dataset_cache,
        limits=Limits(checkpoints_kept=2),
    )
    assert sorted(p.name for p in (tmp_path / CHECKPOINTS_DIR).iterdir() if p.name.isdigit()) == ["000006", "000008"]


def test_an_eval_env_that_does_not_match_the_dataset_is_refused(tmp_path, dataset_cache):
    episodes = [{"observation.state": torch.rand(6, 3).numpy(), "action": torch.rand(6, 2).numpy()}] * 2
    features = {
        "observation.state": {"dtype": "float32", "shape": [3], "names": None},
        "action": {"dtype": "float32", "shape": [2], "names": None},
    }
    root = lerobot.write_v3(tmp_path / "ds", episodes, fps=10, features=features, task="t")
    spec = TrainSpec.model_validate(
        {
            "policy": TINY_MLP,
            "dataset": {"uri": f"file://{root}"},
            "eval": {"env": "push2d"},
            "training": {"device": "cpu"},
        }
    )
    with pytest.raises(EnvironmentError_, match="'observation.state' is 2-dimensional in the env but 3"):
        run(spec, tmp_path / "out", cache_dir=dataset_cache, access=DatasetAccess(file_roots=(tmp_path,)))


def test_resume_refuses_a_checkpoint_of_a_different_run(tmp_path, dataset_cache):
    run(_spec(TINY_MLP, steps=2), tmp_path, cache_dir=dataset_cache)
    with pytest.raises(CheckpointError, match="training.batch_size"):
        run(_spec(TINY_MLP, steps=4, batch_size=16), tmp_path, cache_dir=dataset_cache)


def test_resume_skips_a_corrupt_newest_checkpoint(tmp_path, dataset_cache):
    run(_spec(TINY_MLP, steps=4, checkpoint_every=2), tmp_path, cache_dir=dataset_cache)
    newest = tmp_path / CHECKPOINTS_DIR / "000004" / "training_state" / "optimizer_state.pt"
    newest.write_bytes(newest.read_bytes()[:-10])
    reporter = RecordingReporter()
    result = run(_spec(TINY_MLP, steps=6, checkpoint_every=2), tmp_path, reporter, cache_dir=dataset_cache)
    assert result.resumed_from_step == 2 and result.steps_done == 6
    assert any("skipping checkpoint 000004" in m for m in reporter.messages)
    # The row logged at step 4 belonged to the discarded attempt: steps 3-4 ran again.
    assert [row["step"] for row in _rows(tmp_path)] == [5, 6]


def _final_tensors(out_dir, step):
    checkpoint = out_dir / CHECKPOINTS_DIR / f"{step:06d}"
    tensors = {f"model/{k}": v for k, v in load_file(checkpoint / "pretrained_model/model.safetensors").items()}
    for name in ("raw_model", "ema_state"):
        path = checkpoint / "training_state" / f"{name}.safetensors"
        if path.exists():
            tensors.update({f"{name}/{k}": v for k, v in load_file(path).items()})
    optimizer = torch.load(checkpoint / "training_state/optimizer_state.pt", weights_only=True)
    for index, state in optimizer["state"].items():
        tensors.update({f"adam/{index}/{k}": torch.as_tensor(v) for k, v in state.items()})
    return tensors


@pytest.mark.parametrize(
    ("policy", "dataset"),
    [(TINY_MLP, {}), (TINY_DIFFUSION, {}), (TINY_CAMERA_MLP, CAMERA_DATASET)],
    ids=["mlp-dropout", "diffusion-ema", "mlp-camera-crops"],
)
def test_stop_and_resume_gives_exactly_the_uninterrupted_parameters(tmp_path, dataset_cache, policy, dataset):
    n = 6
    straight = tmp_path / "straight"
    run(_spec(policy, steps=2 * n, log_every=2 * n, **dataset), straight, cache_dir=dataset_cache)

    resumed = tmp_path / "resumed"
    first = run(
        _spec(policy, steps=2 * n, log_every=2, **dataset),
        resumed,
        RecordingReporter(stop_after_steps=n),
        cache_dir=dataset_cache,
    )
    assert first.stopped and first.steps_done == n
    # Different logging cadence on purpose: validation must not touch the training RNG.
    second = run(_spec(policy, steps=2 * n, log_every=3, **dataset), resumed, cache_dir=dataset_cache)
    assert second.resumed_from_step == n and second.steps_done == 2 * n

    expected, got = _final_tensors(straight, 2 * n), _final_tensors(resumed, 2 * n)
    assert expected.keys() == got.keys()
    if policy["type"] == "diffusion":
        raw = {k.removeprefix("raw_model/"): v for k, v in expected.items() if k.startswith("raw_model/")}
        assert raw and any(k.startswith("ema_state/") for k in expected)
        # The deployed weights are the EMA, not the raw weights.
        assert any(not torch.equal(expected[f"model/{k}"], v) for k, v in raw.items())
    if "vision_backbone" in policy:
        assert any(k.startswith("model/image_encoder.backbone.") for k in expected)
    for name, tensor in expected.items():
        assert torch.equal(tensor, got[name]), name


def test_rerunning_a_finished_run_resumes_at_its_end_without_training(tmp_path, dataset_cache):
    run(_spec(TINY_MLP, steps=3), tmp_path, cache_dir=dataset_cache)
    before = os.stat(tmp_path / CHECKPOINTS_DIR / "000003" / "manifest.json").st_mtime_ns
    reporter = RecordingReporter()
    result = run(_spec(TINY_MLP, steps=3), tmp_path, reporter, cache_dir=dataset_cache)
    assert result.resumed_from_step == 3 and result.steps_done == 3 and not result.stopped
    assert [(s, t) for s, t, _ in reporter.progress_calls] == [(3, 3)]
    assert os.stat(tmp_path / CHECKPOINTS_DIR / "000003" / "manifest.json").st_mtime_ns == before
