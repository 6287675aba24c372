"""Authentication: one JwtVerifier, two key sources (local keys on embedded defaults, Clerk when CLERK_* is set)."""

from __future__ import annotations

import importlib

from robotrain.auth.local_keys import LOCAL_ISSUER, LocalKeys
from robotrain.auth.verifier import JwtVerifier, SigningKeySource
from robotrain.ports import TokenVerifier
from robotrain.settings import Settings

__all__ = ["JwtVerifier", "LocalKeys", "SigningKeySource", "build_verifier"]


def build_verifier(settings: Settings) -> TokenVerifier:
    """Clerk's key source when any CLERK_* key variable is set (then locally minted tokens are refused, since
    they are not signed by Clerk's key), otherwise the local key pair under the data dir."""
    if settings.uses_clerk:
        try:
            clerk = importlib.import_module("robotrain.auth.clerk")
        except ModuleNotFoundError as exc:
            if exc.name != "robotrain.auth.clerk":
                raise
            raise RuntimeError(
                "Clerk is configured (a CLERK_* key variable is set) but robotrain.auth.clerk is not available"
            ) from exc
        # auth/clerk.py (issue 5) provides the key source and the issuer to require; the checks stay in JwtVerifier.
        keys: SigningKeySource = clerk.key_source_from_settings(settings)
        return JwtVerifier(
            keys,
            issuer=clerk.clerk_issuer(settings),
            authorized_parties=settings.clerk_authorized_parties,
            leeway_s=5,
        )
    return JwtVerifier(LocalKeys(settings.data_dir), issuer=LOCAL_ISSUER, leeway_s=5)
