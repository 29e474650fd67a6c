"""Notebook 08a's exercise: each check reads the answer from the notebook's names (a.kid_of) and returns True, a
sentence saying what is off, or False (the general hint). See helpers/checks.py."""

import base64
import hashlib
import inspect
import json
from datetime import datetime, timezone

from helpers.checks import exercise


def _source_of(function) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


@exercise(
    "follow the recipe of 'A key pair' above, with the members RFC 7638 requires for the key's type (kty).",
    answers=("kid_of",),
)
def kid_of(a):
    from lesson_code import keys

    kid_of = a.kid_of
    if kid_of is None:
        return False
    if not callable(kid_of):
        return "kid_of should be a function: def kid_of(public_jwk: dict) -> str: ..."
    if kid_of is keys.thumbprint or "keys.thumbprint" in _source_of(kid_of):
        return "write kid_of yourself: keys.thumbprint is what your answer is compared with."
    moment = datetime.now(timezone.utc)
    another = keys.new_key("ES256", moment)
    samples = [keys.new_key("ES256", moment) for _ in range(3)] + [keys.new_key("RS256", moment) for _ in range(2)]
    for sample in samples:
        public_jwk = sample.public_jwk()
        kind = public_jwk["kty"]
        shuffled = dict(reversed(list(public_jwk.items())))
        labelled = {**public_jwk, "kid": another.kid, "key_ops": ["verify"], "ext": True}
        try:
            answers = kid_of(dict(public_jwk)), kid_of(shuffled), kid_of(labelled), kid_of(dict(sample.jwk))
        except KeyError as error:
            return f"an {kind} key has no member {error}: RSA keys hash e, kty and n (RFC 7638 section 3.2)."
        if not all(isinstance(answer, str) for answer in answers):
            return f"kid_of should return text (str), not {type(answers[0]).__name__}."
        if answers[2] == another.kid:
            return "a kid member can say anything: compute the thumbprint from the key's members, never read it."
        if answers[0] != answers[1]:
            return "the same key in another member order got another kid: the names must be sorted."
        required = ", ".join(keys.THUMBPRINT_MEMBERS[kind])
        answer = answers[0]
        if answer != sample.kid:
            if answer.endswith("="):
                return "drop the base64 padding (the '=' at the end)."
            if len(answer) == 64 and all(c in "0123456789abcdef" for c in answer):
                return "that is the hex digest: encode the 32 bytes of the digest in base64url."
            if "+" in answer or "/" in answer:
                return "base64url, not base64: - and _ instead of + and /."
            members = {name: public_jwk[name] for name in keys.THUMBPRINT_MEMBERS[kind]}
            spaced = hashlib.sha256(json.dumps(members, sort_keys=True).encode()).digest()
            if answer == base64.urlsafe_b64encode(spaced).rstrip(b"=").decode():
                return "the right members, sorted, but your JSON has spaces after ':' and ',': RFC 7638 hashes none."
            return (
                f"for an {kind} key: hash only the required members ({required}), as JSON with sorted names and no "
                "spaces."
            )
        if sample.kid not in (answers[2], answers[3]) or answers[2] != answers[3]:
            return (
                f"hash only the required members ({required}): other members (here key_ops, ext, and a private "
                "key's d) must not change the kid, and a private JWK has the kid of its public half."
            )
    return True
