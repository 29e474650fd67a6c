"""Notebook 05's exercises: each check reads the answer from the notebook's names (a.forged_token) and returns True, a
sentence saying what is off, or False (the general hint). See helpers/checks.py."""

import base64
import hashlib
import hmac
import json

from helpers.checks import exercise

YEAR_2100 = 4102444800
KIT_CLAIMS = ({"sub": "alice", "exp": YEAR_2100, "admin": True}, {"sub": "bob", "exp": YEAR_2100})


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def part(token: str, index: int):
    """The token's header (0) or payload (1) as JSON, or None when it is not readable JSON."""
    try:
        return json.loads(unb64url(token.split(".")[index]))
    except ValueError:
        return None


def signed_with_server_key(candidate: str) -> bool:
    from lesson_code import secret_file

    signing_input, _, signature = candidate.rpartition(".")
    key = secret_file.get_secret_key().encode()
    digests = (hashlib.sha256, hashlib.sha384, hashlib.sha512)
    return any(b64url(hmac.new(key, signing_input.encode(), d).digest()) == signature for d in digests)


def is_token(candidate) -> bool:
    return isinstance(candidate, str) and candidate.count(".") == 2


@exercise(
    "you are the attacker: sign a header and that payload with a key you make up (sign, above), then send it with me.",
    answers=("forged_token", "forged_status"),
)
def forged_token(a):
    token, status, me = a.forged_token, a.forged_status, a.me
    if token is None:
        return False
    if not is_token(token):
        return "forged_token should be a token, three parts joined by dots: what sign(header, payload, key) returns."
    if signed_with_server_key(token):
        return "that token is signed with the server's own key: an attacker does not have it. Use a key you made up."
    header = part(token, 0)
    if not isinstance(header, dict):
        what = "a JSON string" if isinstance(header, str) else "not a JSON object"
        return (
            f"the header of forged_token is {what}: sign wants the header as a dict, such as {{'alg': 'HS256', ...}} "
            "(the name header still holds base64url text from section 3). The app refuses such a header before it "
            "looks at the signature, and the signature is what this exercise tests."
        )
    if header.get("alg") != "HS256":
        return (
            f"the header says alg {header.get('alg')!r}: the app refuses that before looking at the signature. Say "
            "HS256, what sign computes, so that the signature is what the app judges."
        )
    claims = part(token, 1)
    if claims != {"sub": "alice", "exp": YEAR_2100}:
        return f"the payload should be exactly {{'sub': 'alice', 'exp': {YEAR_2100}}}, not {claims}."
    if isinstance(status, tuple):
        return "forged_status holds the whole answer (status, body): keep only the status code, me(forged_token)[0]."
    if status != me(token)[0]:
        return "forged_status should be the status code the app answers to forged_token: me(forged_token)[0]."
    return True


@exercise(
    "with the cracked key you can sign as the seed app does (section 6); then ask each app who the token is.",
    answers=("bob_token", "seed_status", "lesson_status"),
)
def bob_token(a):
    token, seed_status, lesson_status, me, seed_http = a.bob_token, a.seed_status, a.lesson_status, a.me, a.seed_http
    if token is None:
        return False
    if not is_token(token):
        return "bob_token should be a token, three parts joined by dots."
    claims = part(token, 1)
    user = claims.get("sub") if isinstance(claims, dict) else None
    if user == "alice":
        return "that token is for alice, whose token you already hold: make one for bob."
    if user != "bob":
        return f"the seed app knows alice and bob; your token's sub is {user!r}: make it 'bob'."
    seed_answer, lesson_answer = me(token, seed_http)[0], me(token)[0]
    if seed_answer != 200:
        return f"the seed app answers {seed_answer} to bob_token: sign it with cracked_key, and HS256."
    if (seed_status, lesson_status) != (seed_answer, lesson_answer):
        return "seed_status and lesson_status are the status codes: me(bob_token, seed_http)[0] and me(bob_token)[0]."
    return True


@exercise("return a list: one token per attack in sections 2 to 5, each built from claims.", answers=("forgeries",))
def forgeries(a):
    kit_function, me, signature_part = a.forgeries, a.me, a.signature_part
    if kit_function is None:
        return False
    if not callable(kit_function):
        return "forgeries should be a function: def forgeries(claims: dict) -> list[str]: ..."
    for kit_claims in KIT_CLAIMS:
        kit = kit_function(dict(kit_claims))
        if isinstance(kit, str):
            return "forgeries(claims) should return a list of tokens, not one token: return [token1, token2, ...]."
        kit = list(kit)
        if not all(is_token(forged) for forged in kit):
            return "every item of the list should be a token: text in three parts joined by dots."
        for number, forged in enumerate(kit, start=1):
            if part(forged, 1) != kit_claims:
                return f"token {number}'s payload is not the claims given: build each payload from claims itself."
            if signed_with_server_key(forged):
                return f"token {number} is signed with the server's own key: an attacker does not have it."
        headers = [header if isinstance(header, dict) else {} for header in (part(forged, 0) for forged in kit)]
        nones = [
            forged for forged, header in zip(kit, headers, strict=True) if str(header.get("alg")).lower() == "none"
        ]
        if nones and all(forged.split(".")[2] for forged in nones):
            return (
                "your alg: none token has a signature: 'none' means no signature at all, so its third part is empty "
                "(header.payload. with the final dot)."
            )
        missing = [
            (signature_part not in [forged.split(".")[2] for forged in kit], "Alice's token with the payload replaced"),
            (not nones, "an alg: none token"),
            (not any(str(h.get("alg")).lower() not in ("hs256", "none") for h in headers), "an alg other than HS256"),
            (not any({"kid", "jku", "jwk"} & set(h) for h in headers), "a header with kid, jku or jwk"),
        ]
        if any(is_missing for is_missing, _ in missing):
            return "the kit still needs " + "; ".join(what for is_missing, what in missing if is_missing) + "."
        answers = {me(forged)[0] for forged in kit}
        if answers != {401}:
            return f"the app answered {sorted(answers)}: every forgery should get 401."
    return True
