"""The finished service (lesson_code/service.py) as `make bench` serves it, plus one unprotected copy of /users/me.

The copy answers what /users/me answers for alice, with no token and no database: the handler's floor, against which
bench.py measures what the per-request session check costs. Serve with DATABASE_URL and JWT_SECRET_KEY set.
"""

from lesson_code.service import User, app

ALICE = User(username="alice", full_name="Alice Liddell", email="alice@example.com", disabled=False)


@app.get("/bench/unprotected-me")
async def read_alice_unprotected() -> User:
    return ALICE
