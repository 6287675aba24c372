# ---
# deploy: true
# cmd: ["modal", "run", "modal_app.py", "--spec", "examples/push2d_mlp.json"]
# ---

# # robotrain on Modal
#
# This file holds two Modal apps, and each Modal command picks the one it is meant for:
#
# - `app`, the production service. `modal deploy modal_app.py` deploys it (the CLI deploys the variable named `app`):
#   - `api`: the FastAPI app that `robotrain serve` runs locally, wired to Supabase (jobs), SQS (the queue), Clerk
#     (sign-in) and this app's `train` function (compute).
#   - `drain`: takes job messages off SQS and launches them. It runs every minute and is also spawned by the API
#     after each submit (for that job) and by `train` when it ends, so dispatch never waits for the schedule. One
#     container at most, so two drains never overlap.
#   - `train`: one attempt of one job on a GPU. It survives preemption: checkpoints are committed to a Volume as
#     they land, Modal retries the input in a fresh container, and the retried input resumes from the last one.
# - `training_app`, ad-hoc training of one spec. `modal run modal_app.py --spec ...` runs it: the CLI runs the app of
#   the file's one local entrypoint, and an ephemeral run creates that app's functions only. So `modal run` starts a
#   single GPU function with no schedule, no web endpoint, no secret and its own Volume: it cannot drain the
#   production queue, write to the job store or keep an API container warm.
#
# Every body below is a call into `robotrain.entrypoints.modal`; the logic lives (and is tested) there.

from pathlib import Path

import modal

from robotrain.settings import Settings

settings = Settings()  # read where `modal deploy` / `modal run` runs: the default GPU and the service's limits

APP_NAME = settings.modal_app_name
ARTIFACTS_MOUNT = "/artifacts"
RUNS_MOUNT = "/runs"
VOLUME_NAME = "robotrain-artifacts"
RUNS_VOLUME_NAME = "robotrain-runs"
HERE = Path(__file__).parent

# Limits and intervals of the service, which every function must agree on. They are not secrets, so they are read
# from the shell that runs `modal deploy` (only the ones set there) and baked into the service image.
TUNABLE = (
    "ROBOTRAIN_MAX_CONCURRENT_JOBS",
    "ROBOTRAIN_MAX_ACTIVE_JOBS_PER_USER",
    "ROBOTRAIN_MAX_RUNNING_JOBS_PER_USER",
    "ROBOTRAIN_SUBMIT_RATE_PER_MINUTE",
    "ROBOTRAIN_MAX_BODY_BYTES",
    "ROBOTRAIN_QUEUE_VISIBILITY_TIMEOUT_S",
    "ROBOTRAIN_QUEUE_MAX_RECEIVES",
    "ROBOTRAIN_HEARTBEAT_INTERVAL_S",
    "ROBOTRAIN_HEARTBEAT_STALE_S",
    "ROBOTRAIN_MAX_ATTEMPTS",
    "ROBOTRAIN_PROGRESS_INTERVAL_S",
    "ROBOTRAIN_DRAIN_RECEIVE_WAIT_S",
    "ROBOTRAIN_DRAIN_KICK_WAIT_S",
    "ROBOTRAIN_API_KEY_CACHE_TTL_S",
    "ROBOTRAIN_LOG_LEVEL",
    # Who may read what, and how big a job may be: the API checks them at submit, the worker again.
    "ROBOTRAIN_S3_BUCKETS",
    "ROBOTRAIN_HF_ORGS",
    "ROBOTRAIN_MAX_UPLOAD_BYTES",
    "ROBOTRAIN_MAX_POLICY_PARAMETERS",
    "ROBOTRAIN_MAX_BATCH_BYTES",
    "ROBOTRAIN_MAX_STEPS",
    "ROBOTRAIN_MAX_EVAL_EPISODES",
    "ROBOTRAIN_MAX_BUILTIN_EPISODES",
    "ROBOTRAIN_MAX_CHECKPOINT_SAVES",
    "ROBOTRAIN_MAX_DATASET_BYTES",
    "ROBOTRAIN_MAX_ARTIFACTS_BYTES_PER_USER",
    "ROBOTRAIN_CHECKPOINTS_KEPT",
    # Live streams and webhooks.
    "ROBOTRAIN_STREAM_POLL_INTERVAL_S",
    "ROBOTRAIN_STREAM_KEEPALIVE_S",
    "ROBOTRAIN_STREAM_MAX_S",
    "ROBOTRAIN_WEBHOOK_TIMEOUT_S",
    "ROBOTRAIN_WEBHOOK_RETRY_BASE_S",
    "ROBOTRAIN_WEBHOOK_RETRY_MAX_S",
    "ROBOTRAIN_WEBHOOK_RETRY_FOR_S",
)
tuning = {
    name: value
    for name, value in settings.as_environ().items()
    if name in TUNABLE and name.removeprefix("ROBOTRAIN_").lower() in settings.model_fields_set
}

# ## The images
#
# The pinned requirements (torch==2.13.0 resolves to a CUDA build on Linux); ImageNet weights for pretrained vision
# backbones, downloaded and hash-checked once here at build time by the one stdlib-only file that knows them (jobs
# never download anything); then our two packages, added last so a code change does not rebuild the layers below.
# The service's image also says it runs on Modal.
WEIGHTS_DIR = "/weights"
WEIGHTS_SCRIPT = HERE / "training" / "policies" / "vision" / "weights.py"
base_image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install_from_requirements(str(HERE / "requirements.txt"))
    .add_local_file(str(WEIGHTS_SCRIPT), "/opt/robotrain/fetch_weights.py", copy=True)
    .run_commands(f"python /opt/robotrain/fetch_weights.py {WEIGHTS_DIR}")
    .env({"ROBOTRAIN_WEIGHTS_DIR": WEIGHTS_DIR})
)
# Python files, plus the dashboard's static files (the API serves them at /).
PACKAGE_FILES = ~modal.FilePatternMatcher("**/*.py", "**/static/**")
image = base_image.env(
    {
        "ROBOTRAIN_LAUNCHER": "modal",
        "ROBOTRAIN_ARTIFACTS_DIR": f"{ARTIFACTS_MOUNT}/jobs",
        "ROBOTRAIN_DATASETS_DIR": f"{ARTIFACTS_MOUNT}/datasets",  # uploads, on the same Volume
        "ROBOTRAIN_DATA_DIR": "/tmp/robotrain",
        "ROBOTRAIN_DEFAULT_GPU": settings.default_gpu,
        "ROBOTRAIN_MODAL_APP_NAME": APP_NAME,
        **tuning,
    }
).add_local_python_source("robotrain", "training", ignore=PACKAGE_FILES)
training_image = base_image.add_local_python_source("robotrain", "training")

# ## Secrets, least privilege
#
# Each function gets the credentials it uses and no others (the README's deploy guide creates the three secrets):
# `train` and `drain` report status through the store and the queue; only `api` verifies users (Clerk) and holds
# the internal token.
store_secret = modal.Secret.from_name("robotrain-store", required_keys=["SUPABASE_URL", "SUPABASE_KEY"])
queue_secret = modal.Secret.from_name("robotrain-queue", required_keys=["SQS_QUEUE_URL", "AWS_REGION"])
api_secret = modal.Secret.from_name("robotrain-api")

# Checkpoints and every other job artifact; the API serves them from here.
volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)

app = modal.App(APP_NAME)


# ## The GPU worker
#
# The decorator's GPU and timeout are the defaults; the Launcher applies each job's `compute.gpu` and
# `compute.timeout_minutes` per call with `with_options`. `single_use_containers` gives every retry a fresh
# container, and `retries` with no delay restarts a preempted input at once.
@app.function(
    image=image,
    gpu=settings.default_gpu,
    timeout=2 * 60 * 60,
    retries=modal.Retries(max_retries=10, initial_delay=0.0, backoff_coefficient=1.0),
    single_use_containers=True,
    volumes={ARTIFACTS_MOUNT: volume},
    secrets=[store_secret, queue_secret],
)
def train(job_id: str, attempt: int) -> None:
    from robotrain.entrypoints import modal as entry

    entry.train_attempt(Settings(), job_id, attempt, train=train, drain=drain, volume=volume)


# ## The queue drain
#
# Scheduled with no arguments; spawned with the id of a job just submitted, for which it waits a little if the
# job's message is not visible yet. Its timeout covers that wait and a sweep.
@app.function(
    image=image,
    schedule=modal.Period(minutes=1),
    max_containers=1,
    timeout=5 * 60,
    volumes={ARTIFACTS_MOUNT: volume},
    secrets=[store_secret, queue_secret],
)
def drain(job_id: str = "") -> dict:
    from robotrain.entrypoints import modal as entry

    return entry.drain_and_sweep(Settings(), job_id, train=train, volume=volume)


# ## The API
#
# One container kept warm, more as traffic grows, each serving up to 100 requests at once: nothing in the API
# assumes it is the only process (the store and queue are shared; its caches have stated bounds).
@app.function(
    image=image, volumes={ARTIFACTS_MOUNT: volume}, secrets=[store_secret, queue_secret, api_secret], min_containers=1
)
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def api():
    from robotrain.entrypoints import modal as entry

    return entry.api_app(Settings(), train=train, drain=drain, volume=volume)


# ## Training one spec without the service
#
# `modal run modal_app.py --spec examples/push2d_mlp.json [--run-name NAME]` trains on the default GPU and writes
# to its own Volume under NAME; running it again with the same name resumes. Nothing of the service is involved.
training_app = modal.App(f"{APP_NAME}-adhoc")
runs_volume = modal.Volume.from_name(RUNS_VOLUME_NAME, create_if_missing=True)


@training_app.function(
    image=training_image, gpu=settings.default_gpu, timeout=6 * 60 * 60, volumes={RUNS_MOUNT: runs_volume}
)
def train_spec(spec_json: str, run_name: str) -> dict:
    from robotrain.entrypoints import modal as entry

    return entry.train_one_spec(
        spec_json, Path(RUNS_MOUNT) / run_name, volume=runs_volume, weights_dir=Settings().weights_dir
    )


@training_app.local_entrypoint()
def main(spec: str, run_name: str = ""):
    spec_path = Path(spec)
    result = train_spec.remote(spec_path.read_text(), run_name or spec_path.stem)
    print(result)
