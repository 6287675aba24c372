"""`python -m training`: train, evaluate and make datasets from the command line.

    python -m training run CONFIG.json --out DIR [--cache-dir DIR] [--file-root DIR ...]   (rerun on DIR resumes)
    python -m training eval CHECKPOINT_DIR --env push2d|pusht --episodes 50 [--device auto] [--videos DIR]
    python -m training make-dataset push2d|pusht --episodes 200 --out DIR [--seed 0] [--images | --video]
        [--obs-type pixels|pixels_agent_pos] [--image-size 64]

`run` reads ImageNet weights for policy.pretrained_backbone from $ROBOTRAIN_WEIGHTS_DIR.

A bad spec, dataset or checkpoint prints one line to stderr, without a traceback, and exits with status 2.

`run` reads datasets under the service's rules (training.data.access): file:// only under a --file-root or a
directory in ROBOTRAIN_FILE_DATASET_ROOTS, s3:// only for buckets in ROBOTRAIN_S3_BUCKETS, hf:// anonymously unless
the organisation is in ROBOTRAIN_HF_ORGS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from training.errors import TrainingError

EXIT_USAGE = 2


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def describe_validation_error(exc: ValidationError) -> str:
    """All of a pydantic error's problems on one line, each led by the dotted field it concerns."""
    problems = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(spec)"
        problems.append(f"{location}: {error['msg']}")
    return "; ".join(problems)


def _read_spec(path: Path):
    from training.spec import TrainSpec

    try:
        text = path.read_text()
    except OSError as exc:
        raise TrainingError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrainingError(f"config {path} is not valid JSON: {exc}") from exc
    try:
        return TrainSpec.model_validate(data)
    except ValidationError as exc:
        raise TrainingError(f"invalid spec in {path}: {describe_validation_error(exc)}") from exc


def _cmd_run(args: argparse.Namespace) -> int:
    from training.console import ConsoleReporter
    from training.data.access import DatasetAccess
    from training.policies.vision.weights import WEIGHTS_DIR_ENV
    from training.trainer import run

    spec = _read_spec(Path(args.config))
    access = DatasetAccess.from_environ(os.environ).with_file_roots(Path(root).absolute() for root in args.file_root)
    reporter = ConsoleReporter()
    weights_dir = os.environ.get(WEIGHTS_DIR_ENV)
    with reporter.stop_on_interrupt():
        result = run(
            spec,
            Path(args.out),
            reporter,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            weights_dir=Path(weights_dir) if weights_dir else None,
            access=access,
        )
    loss = result.final_metrics.get("train/loss")
    summary = [f"steps {result.steps_done}/{result.total_steps}"]
    if loss is not None:
        summary.append(f"loss {loss:.4f}")
    if "val/loss" in result.final_metrics:
        summary.append(f"val/loss {result.final_metrics['val/loss']:.4f}")
    if result.eval is not None:
        summary.append(
            f"success {result.eval['pc_success']:.1f}% (95% CI {result.eval['pc_success_ci_low']:.1f}-"
            f"{result.eval['pc_success_ci_high']:.1f}, {int(result.eval['n_episodes'])} episodes)"
        )
    summary.append(f"checkpoint {Path(args.out) / result.checkpoint}" if result.checkpoint else "no checkpoint")
    print(("stopped: " if result.stopped else "done: ") + ", ".join(summary))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from training.checkpoint import load_policy
    from training.device import resolve_device
    from training.envs import EVAL_SEED_BASE
    from training.evaluate import evaluate
    from training.trainer import check_eval_env

    device = resolve_device(args.device)
    policy = load_policy(Path(args.checkpoint), device)
    check_eval_env(args.env, policy.features)
    seed_base = EVAL_SEED_BASE if args.seed_base is None else args.seed_base
    results = evaluate(
        policy,
        args.env,
        args.episodes,
        device=device,
        seed_base=seed_base,
        batch_size=args.batch_size,
        video_dir=Path(args.videos) if args.videos else None,
        videos=args.num_videos,
    )
    print(
        f"success {results['pc_success']:.1f}% (95% CI {results['pc_success_ci_low']:.1f}-"
        f"{results['pc_success_ci_high']:.1f}) over {results['n_episodes']} episodes of {args.env}; "
        f"avg max reward {results['avg_max_reward']:.3f}, avg sum reward {results['avg_sum_reward']:.2f}, "
        f"{results['eval_s']:.1f} s"
    )
    if results["videos"]:
        print(f"rollout videos: {', '.join(results['videos'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


def _cmd_make_dataset(args: argparse.Namespace) -> int:
    from training.data.sources import write_builtin_dataset

    obs_type = args.obs_type or ("pixels_agent_pos" if args.name == "pusht" or args.images or args.video else "state")
    cameras = obs_type in ("pixels", "pixels_agent_pos")
    if (args.images or args.video) and not cameras:
        return _fail("--images / --video need --obs-type pixels or pixels_agent_pos")
    root = write_builtin_dataset(
        args.name,
        Path(args.out),
        episodes=args.episodes,
        seed=args.seed,
        obs_type=obs_type,
        image_size=args.image_size,
        video=args.video,
    )
    stored = "video" if args.video else "images" if cameras else "no camera"
    print(
        f"wrote {args.episodes} {args.name} episodes (seed {args.seed}, {obs_type}, {stored}) "
        f"as a LeRobot v3.0 dataset in {root}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description="Train and evaluate robot policies.")
    commands = parser.add_subparsers(dest="command", required=True)

    run_parser = commands.add_parser("run", help="train from a JSON spec; rerunning on the same --out resumes")
    run_parser.add_argument("config", help="TrainSpec JSON file (see examples/)")
    run_parser.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl, result.json)")
    run_parser.add_argument("--cache-dir", help="dataset cache (default ~/.cache/robotrain/datasets)")
    run_parser.add_argument(
        "--file-root",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory file:// datasets may be read from (repeatable; adds to ROBOTRAIN_FILE_DATASET_ROOTS)",
    )
    run_parser.set_defaults(handler=_cmd_run)

    eval_parser = commands.add_parser("eval", help="evaluate a saved checkpoint by seeded rollouts")
    eval_parser.add_argument("checkpoint", help="run dir, checkpoints/<step> dir, or its pretrained_model dir")
    eval_parser.add_argument("--env", default="push2d", choices=("push2d", "pusht"))
    eval_parser.add_argument("--videos", help="save the first rollouts as WebM videos in this directory")
    eval_parser.add_argument("--num-videos", type=int, default=4, help="how many rollouts --videos saves")
    eval_parser.add_argument("--episodes", type=int, default=50)
    eval_parser.add_argument("--batch-size", type=int, default=50, help="episodes rolled out together")
    eval_parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    eval_parser.add_argument("--seed-base", type=int, default=None, help="first episode seed (default: eval seeds)")
    eval_parser.add_argument("--json", help="also write the full results (per episode) to this file")
    eval_parser.set_defaults(handler=_cmd_eval)

    data_parser = commands.add_parser("make-dataset", help="write a builtin task's expert demonstrations")
    data_parser.add_argument("name", choices=("push2d", "pusht"))
    camera = data_parser.add_mutually_exclusive_group()
    camera.add_argument("--images", action="store_true", help="store the camera as PNG images in the Parquet")
    camera.add_argument("--video", action="store_true", help="store the camera as AV1 MP4 video")
    data_parser.add_argument(
        "--obs-type",
        choices=("state", "pixels", "pixels_agent_pos", "environment_state_agent_pos"),
        default=None,
        help="push2d: state (default), pixels, pixels_agent_pos; pusht: pixels_agent_pos (default, lerobot/pusht) or "
        "environment_state_agent_pos (the T's keypoints, lerobot/pusht_keypoints)",
    )
    data_parser.add_argument("--image-size", type=int, default=None, help="camera side in pixels (push2d: 64)")
    data_parser.add_argument("--episodes", type=int, default=200)
    data_parser.add_argument("--seed", type=int, default=0)
    data_parser.add_argument("--out", required=True, help="directory to write the LeRobot v3.0 dataset into")
    data_parser.set_defaults(handler=_cmd_make_dataset)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "episodes", 1) < 1:
        return _fail("--episodes must be at least 1")
    try:
        return args.handler(args)
    except TrainingError as exc:
        return _fail(exc.message)
