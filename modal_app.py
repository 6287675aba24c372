# ---
# deploy: true
# cmd: ["modal", "run", "modal_app.py", "--spec", "examples/push2d_mlp.json"]
# ---

# # robotrain on Modal
#
# One app holds the whole production service:
#
# - `api`: the FastAPI app that `robotrain serve` runs locally, wired to Supabase (jobs), SQS (the queue), Clerk
#   (sign-in) and this app's `train` function (compute).
# - `drain`: takes job messages off SQS and launches them. It runs every minute and is also spawned by the API after
#   each submit and by `train` when it ends, so dispatch never waits for the schedule. One container at most, so two
#   drains never overlap.
# - `train`: one attempt of one job on a GPU. It survives preemption: checkpoints are committed to a Volume as they
#   land, Modal retries the input in a fresh container, and the retried input resumes from the last checkpoint.
#
# Every body below is a call into `robotrain.entrypoints.modal`; the logic lives (and is tested) there.

from pathlib import Path

import modal

from robotrain.settings import Settings

settings = Settings()

APP_NAME = settings.modal_app_name
ARTIFACTS_MOUNT = "/artifacts"
SECRET_NAME = "robotrain"
VOLUME_NAME = "robotrain-artifacts"
HERE = Path(__file__).parent

app = modal.App(APP_NAME)

# ## The image
#
# The pinned requirements (torch==2.13.0 resolves to a CUDA build on Linux), then our two packages, added last so a
# code change does not rebuild the layers below.
image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install_from_requirements(str(HERE / "requirements.txt"))
    .env(
        {
            "ROBOTRAIN_LAUNCHER": "modal",
            "ROBOTRAIN_ARTIFACTS_DIR": f"{ARTIFACTS_MOUNT}/jobs",
            "ROBOTRAIN_DATASETS_DIR": f"{ARTIFACTS_MOUNT}/datasets",  # uploads, on the same Volume
            "ROBOTRAIN_DATA_DIR": "/tmp/robotrain",
            "ROBOTRAIN_DEFAULT_GPU": settings.default_gpu,
            "ROBOTRAIN_MODAL_APP_NAME": APP_NAME,
        }
    )
    .add_local_python_source("robotrain", "training")
)

# Supabase, SQS and Clerk credentials and the internal token (the README's deploy section lists every key).
secret = modal.Secret.from_name(
    SECRET_NAME, required_keys=["SUPABASE_URL", "SUPABASE_KEY", "SQS_QUEUE_URL", "AWS_REGION"]
)
# Checkpoints and every other job artifact; the API serves them from here.
volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)


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
    secrets=[secret],
)
def train(job_id: str, attempt: int) -> None:
    from robotrain.entrypoints import modal as entry

    entry.train_attempt(Settings(), job_id, attempt, train=train, drain=drain, volume=volume)


# ## The queue drain
@app.function(
    image=image,
    schedule=modal.Period(minutes=1),
    max_containers=1,
    timeout=5 * 60,
    volumes={ARTIFACTS_MOUNT: volume},
    secrets=[secret],
)
def drain() -> dict:
    from robotrain.entrypoints import modal as entry

    return entry.drain_and_sweep(Settings(), train=train, volume=volume)


# ## The API
@app.function(image=image, volumes={ARTIFACTS_MOUNT: volume}, secrets=[secret], min_containers=1)
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def api():
    from robotrain.entrypoints import modal as entry

    return entry.api_app(Settings(), train=train, drain=drain, volume=volume)


# ## Training one spec without the service
#
# `modal run modal_app.py --spec examples/push2d_mlp.json [--run-name NAME]` trains on the default GPU and writes
# to the Volume under runs/NAME; running it again with the same name resumes.
@app.function(image=image, gpu=settings.default_gpu, timeout=6 * 60 * 60, volumes={ARTIFACTS_MOUNT: volume})
def train_spec(spec_json: str, run_name: str) -> dict:
    from robotrain.entrypoints import modal as entry

    return entry.train_one_spec(spec_json, Path(ARTIFACTS_MOUNT) / "runs" / run_name, volume=volume)


@app.local_entrypoint()
def main(spec: str, run_name: str = ""):
    spec_path = Path(spec)
    result = train_spec.remote(spec_path.read_text(), run_name or spec_path.stem)
    print(result)
