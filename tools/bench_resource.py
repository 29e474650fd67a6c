"""The resource server (lesson_code/resource_server.py) as `make bench` serves it, plus one unprotected copy of /profile.

The copy answers what /profile answers for alice, with no token checked and no key fetched: the handler's floor,
against which bench.py measures what checking an ES256 token with the issuer's public key costs. Serve with
JWT_ISSUER and JWKS_URL pointing at a running issuer (service.py with JWT_ALGORITHM=ES256).
"""

from datetime import datetime, timezone

from lesson_code.resource_server import Profile, app

ALICE = Profile(username="alice", scopes=["me"], token_expires_at=datetime(2030, 1, 1, tzinfo=timezone.utc))


@app.get("/bench/unprotected-profile")
async def read_profile_unprotected() -> Profile:
    return ALICE
