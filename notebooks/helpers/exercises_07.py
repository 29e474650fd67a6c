"""Notebook 07's exercises: each check reads the answer from the notebook's names (a.missing_scopes) and returns True,
a sentence saying what is off, or False (the general hint). See helpers/checks.py."""

import base64
import json
import secrets
import warnings

from helpers.checks import exercise

# (scope claim, scopes needed, what is missing, what an answer that gets it wrong has missed)
MISSING_CASES = [
    ("me admin", ["admin"], [], "carol's 'me admin' token holds admin: look at the names of the claim."),
    ("me", ["admin"], ["admin"], "alice's 'me' token does not hold admin."),
    ("superadmin", ["admin"], ["admin"], "'admin' in 'superadmin' is True for strings, but superadmin is another "
     "scope: compare whole names, never pieces of the string."),
    ("admin me", ["me"], [], "'admin me' holds me although me is not first: look at every name of the claim."),
    ("me", ["me", "admin"], ["admin"], "a route that needs me and admin lacks only admin here: look at every "
     "needed scope, not only the first."),
    ("", ["me"], ["me"], "an empty claim grants nothing."),
    ("me", [], [], "a route that needs no scope lacks nothing."),
    ("Admin", ["admin"], ["admin"], "scopes are case-sensitive (RFC 6749, section 3.3): Admin is not admin."),
    ("me", ["reports", "admin"], ["reports", "admin"], "keep the order of needed: a client shows them as the route "
     "asked (no sorting, no sets)."),
    ("me", ["admin", "admin"], ["admin"], "name each missing scope once, even when needed names it twice."),
    ("me\tadmin", ["admin"], [], "scope names may be separated by any whitespace here: a tab too."),
]  # fmt: skip


@exercise(
    "the names of needed, in needed's order and each once, that are not among the names of scope_claim.",
    answers=("missing_scopes",),
)
def missing_scopes(a):
    answer = a.missing_scopes
    if answer is None:
        return False
    if not callable(answer):
        return "missing_scopes should be a function: def missing_scopes(scope_claim: str, needed: list[str]): ..."
    for scope_claim, needed, expected, hint in MISSING_CASES:
        try:
            got = answer(scope_claim, list(needed))
        except NameError:
            raise
        except Exception as error:
            return f"missing_scopes({scope_claim!r}, {needed!r}) raised {type(error).__name__}: {error}. {hint}"
        if isinstance(got, bool):
            return (
                "missing_scopes answers True or False, which is whether the token may; this exercise asks which "
                "scopes it lacks: return a list of names."
            )
        if isinstance(got, (set, frozenset, tuple, str)) or not isinstance(got, list):
            return f"missing_scopes should return a list of names, not a {type(got).__name__} ({got!r})."
        if got != expected:
            return f"missing_scopes({scope_claim!r}, {needed!r}) should be {expected!r}, not {got!r}: {hint}"
    return True


INSUFFICIENT = 'Bearer error="insufficient_scope", scope="reports"'
REPORTS = ["January", "February", "March"]


def _with_claims(token: str, claims: dict) -> str:
    header, _, signature = token.split(".")
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}.{signature}"


@exercise(
    "a dependency of your own, taking SecurityScopes and Claims, that refuses a token without every scope the route "
    "asks for; and a route that asks for it with Security(..., scopes=['reports']).",
    answers=("reports_app",),
)
def reports_app(a):
    from fastapi import FastAPI
    from jose import jwt

    from lesson_code.tokens import create_access_token

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from fastapi.testclient import TestClient

    app = a.reports_app
    if app is None:
        return False
    if not isinstance(app, FastAPI):
        return "reports_app should be a FastAPI app: reports_app = FastAPI(), then your route on it."
    client = TestClient(app, raise_server_exceptions=False)

    def ask(token: str | None) -> tuple:
        response = client.get("/reports", headers={"Authorization": f"Bearer {token}"} if token else {})
        body = response.json() if "json" in response.headers.get("content-type", "") else response.text
        return response.status_code, body, response.headers.get("WWW-Authenticate")

    def signed(sub: str, scope: str | None) -> str:
        return create_access_token({"sub": sub} if scope is None else {"sub": sub, "scope": scope})

    if ask(signed("carol", "me reports"))[0] == 404:
        return "reports_app has no GET /reports route: decorate your route function with @reports_app.get(...)."
    if ask(None)[:2] != (401, {"detail": "Not authenticated"}):
        return "without a token /reports must answer 401: take the claims from Claims, which needs a token."
    forged = jwt.encode({"sub": "alice", "scope": "reports", "exp": 4102444800}, secrets.token_hex(32), "HS256")
    edited = _with_claims(signed("alice", "me"), {"sub": "alice", "scope": "me reports", "exp": 4102444800})
    for token in (forged, edited):
        if ask(token)[0] != 401:
            return (
                f"a token with a wrong signature got {ask(token)[0]}, not 401: never trust unverified claims; take "
                "them from Claims, which checks the signature."
            )
    for scope in ("me", None, "superreports"):
        status, body, challenge = ask(signed("alice", scope))
        if status == 500 and scope is None:
            return "a token with no scope claim crashed the route (KeyError?): a token without one grants nothing."
        if status == 200 and scope == "superreports":
            return "'reports' in 'superreports' is True for strings: compare whole scope names."
        if status == 200:
            return (
                f"a token with scope {scope!r} read the reports: Depends passes no scopes to a dependency, so "
                "security_scopes.scopes was empty; the route must ask for reports."
            )
        if status == 401:
            return (
                "a valid token without the scope got 401, which tells a logged-in client to log in again: "
                "answer with the service's 403, http_common.insufficient_scope."
            )
        if status != 403:
            return f"a valid token without reports should get 403, not {status}."
        if challenge and challenge != INSUFFICIENT and "insufficient_scope" in challenge:
            return f"the 403 says {challenge!r}: the route needs reports, and no other scope."
        if challenge != INSUFFICIENT:
            return (
                f"the 403 needs the header WWW-Authenticate: {INSUFFICIENT} (RFC 6750, section 3.1), not "
                f"{challenge!r}: that is what http_common.insufficient_scope gives."
            )
    for sub, scope in (("carol", "me reports"), ("alice", "reports"), ("carol", "reports me")):
        status, body, _ = ask(signed(sub, scope))
        if status == 403 and scope == "me reports":
            return "'me reports' holds reports although it is not first: look at every name of the claim."
        if status != 200:
            return f"a token with scope {scope!r} should get 200, not {status}: the route needs reports and no other."
        if body != {"reader": sub, "reports": REPORTS}:
            return f"for {sub}'s token the answer should be {{'reader': {sub!r}, 'reports': REPORTS}}, not {body!r}."
    operation = app.openapi().get("paths", {}).get("/reports", {}).get("get", {})
    declared = [scope for entry in operation.get("security", []) for scopes in entry.values() for scope in scopes]
    if "reports" not in declared:
        return (
            "the answers are right, but the route checks the scope inside itself: nothing outside it says that "
            "/reports needs reports (/docs shows no scope for it), and every new route would have to remember its "
            "own check. Do it as the service does: the route asks for the scope, and one dependency checks it."
        )
    return True
