"""Authentication: one JwtVerifier, two key sources (local keys on embedded defaults, Clerk's when CLERK_* is set;
`robotrain.wiring.build_verifier` picks one)."""

from robotrain.auth.local_keys import LOCAL_ISSUER, LocalKeys
from robotrain.auth.verifier import JwtVerifier, SigningKeySource

__all__ = ["LOCAL_ISSUER", "JwtVerifier", "LocalKeys", "SigningKeySource"]
