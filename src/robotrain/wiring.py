"""Builds the adapters behind each port from settings. With the entry points, the only place that knows which
classes implement them."""

from __future__ import annotations

from robotrain.apikeys.service import ApiKeyService
from robotrain.auth.local_keys import LOCAL_ISSUER, LocalKeys
from robotrain.auth.verifier import JwtVerifier
from robotrain.ports import (
    ApiKeyStore,
    ArtifactStore,
    Components,
    DatasetFiles,
    DatasetStore,
    JobQueue,
    JobStore,
    Launcher,
    StreamStore,
    TokenVerifier,
    WebhookStore,
)
from robotrain.settings import Settings


def build_components(
    settings: Settings,
    *,
    launcher: Launcher | None = None,
    artifacts: ArtifactStore | None = None,
    dataset_files: DatasetFiles | None = None,
) -> Components:
    """Each port independently: the cloud adapter when its variables are set, the embedded one under
    `settings.data_dir` otherwise. Cloud adapters are imported inside their branches, so their SDKs load only when
    selected. The Modal launcher and Volume need objects of the Modal app, so its entry point passes them in
    (robotrain.entrypoints.modal); `ROBOTRAIN_LAUNCHER=modal` without them is refused rather than run locally."""
    from robotrain.adapters.local_artifacts import LocalArtifactStore
    from robotrain.adapters.local_dataset_files import LocalDatasetFiles
    from robotrain.adapters.subprocess_launcher import SubprocessLauncher

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if launcher is None:
        if settings.launcher == "modal":
            raise ValueError("ROBOTRAIN_LAUNCHER=modal needs the Modal app's train function (see modal_app.py)")
        launcher = SubprocessLauncher(settings)
    store = build_store(settings)
    return Components(
        settings=settings,
        store=store,
        queue=build_queue(settings),
        launcher=launcher,
        artifacts=artifacts or LocalArtifactStore(settings.resolved_artifacts_dir),
        streams=build_streams(settings),
        webhooks=build_webhooks(settings),
        datasets=build_dataset_store(settings, store),
        dataset_files=dataset_files or LocalDatasetFiles(settings.resolved_datasets_dir),
    )


def build_store(settings: Settings) -> JobStore:
    if settings.uses_supabase:
        from robotrain.adapters.supabase_store import SupabaseJobStore

        return SupabaseJobStore.from_settings(settings)
    from robotrain.adapters.sqlite_store import SqliteJobStore

    return SqliteJobStore(settings.data_dir / "robotrain.sqlite3")


def build_streams(settings: Settings) -> StreamStore:
    if settings.uses_supabase:
        from robotrain.adapters.supabase_streams import SupabaseStreamStore

        return SupabaseStreamStore.from_settings(settings)
    from robotrain.adapters.sqlite_streams import SqliteStreamStore

    return SqliteStreamStore(settings.data_dir / "robotrain.sqlite3")


def build_webhooks(settings: Settings) -> WebhookStore:
    if settings.uses_supabase:
        from robotrain.adapters.supabase_webhooks import SupabaseWebhookStore

        return SupabaseWebhookStore.from_settings(settings)
    from robotrain.adapters.sqlite_webhooks import SqliteWebhookStore

    return SqliteWebhookStore(settings.data_dir / "robotrain.sqlite3")


def build_dataset_store(settings: Settings, jobs: JobStore) -> DatasetStore:
    """Beside the job store, on the same backend: the Supabase tables through its client, or its SQLite file."""
    if settings.uses_supabase:
        from robotrain.adapters.supabase_datasets import SupabaseDatasetStore
        from robotrain.adapters.supabase_store import SupabaseJobStore

        assert isinstance(jobs, SupabaseJobStore)  # build_store chose it from the same settings
        return SupabaseDatasetStore(jobs)
    from robotrain.adapters.sqlite_datasets import SqliteDatasetStore

    return SqliteDatasetStore(settings.data_dir / "robotrain.sqlite3")


def build_queue(settings: Settings) -> JobQueue:
    if settings.uses_sqs:
        from robotrain.adapters.sqs_queue import SqsJobQueue

        return SqsJobQueue.from_settings(settings)
    from robotrain.adapters.local_queue import LocalJobQueue

    return LocalJobQueue(
        settings.data_dir / "queue.sqlite3",
        max_receives=settings.queue_max_receives,
        visibility_timeout_s=settings.queue_visibility_timeout_s,
    )


def build_api_key_store(settings: Settings, jobs: JobStore | None = None) -> ApiKeyStore:
    """The API key store beside the job store: a table in the same SQLite file, or in the same Supabase project
    through the same client when `jobs` is the Supabase store the settings select."""
    if settings.uses_supabase:
        from robotrain.adapters.supabase_api_keys import SupabaseApiKeyStore
        from robotrain.adapters.supabase_store import SupabaseJobStore

        shared = jobs if isinstance(jobs, SupabaseJobStore) else SupabaseJobStore.from_settings(settings)
        return SupabaseApiKeyStore(shared)
    from robotrain.adapters.sqlite_api_keys import SqliteApiKeyStore

    return SqliteApiKeyStore(settings.data_dir / "robotrain.sqlite3")


def build_api_keys(settings: Settings, jobs: JobStore | None = None) -> ApiKeyService:
    """What the API authenticates API keys with and manages them through (robotrain.apikeys)."""
    return ApiKeyService(build_api_key_store(settings, jobs), cache_ttl_s=settings.api_key_cache_ttl_s)


def build_verifier(settings: Settings) -> TokenVerifier:
    """Clerk's key source when any CLERK_* key variable is set (then locally minted tokens are refused, since they
    are not signed by Clerk's key), otherwise the local key pair under the data dir."""
    if settings.uses_clerk:
        from robotrain.auth.clerk import clerk_issuer, clerk_key_source

        return JwtVerifier(
            clerk_key_source(settings),
            issuer=clerk_issuer(settings),
            authorized_parties=settings.clerk_authorized_parties,
            leeway_s=5,
        )
    return JwtVerifier(LocalKeys(settings.data_dir), issuer=LOCAL_ISSUER, leeway_s=5)
