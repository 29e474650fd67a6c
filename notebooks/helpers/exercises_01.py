"""Notebook 01's exercises: each check reads the answer from the notebook's names (a.ticket_header) and returns True,
a sentence saying what is off, or False (the general hint). See helpers/checks.py."""

import contextlib
from datetime import datetime, timedelta, timezone
from unittest import mock

from helpers.checks import exercise

TICKET_HEADER = {"alg": "none", "typ": "JWT"}
TICKET_CLAIMS = {"sub": "dormouse", "admin": True, "iat": 1735689600, "exp": 1893456000}
TICKET_LIFETIME = timedelta(seconds=TICKET_CLAIMS["exp"] - TICKET_CLAIMS["iat"])


@exercise(
    "decode each part as in 'Anyone can read the payload'; convert iat and exp as in 'The payload'.",
    answers=("ticket_header", "ticket_claims", "ticket_expires", "ticket_lifetime"),
)
def ticket(a):
    header, claims, expires, lifetime = a.ticket_header, a.ticket_claims, a.ticket_expires, a.ticket_lifetime
    if (header, claims, expires, lifetime) == (None, None, None, None):
        return False
    if header == a.get("header") or claims == a.get("payload"):
        return "that is the notebook's own token: decode the parts of ticket."
    if header == TICKET_CLAIMS:
        return "ticket_header holds the claims: the header is the first part of the token, before the first dot."
    if isinstance(header, bytes | str) or isinstance(claims, bytes | str):
        return "that is still JSON text: json.loads turns it into a dict."
    if (header, claims) != (TICKET_HEADER, TICKET_CLAIMS):
        return False
    if not isinstance(expires, datetime):
        return "ticket_expires should be a datetime: datetime.fromtimestamp(seconds, timezone.utc) makes one."
    if expires.tzinfo is None:
        return "ticket_expires has no time zone: pass timezone.utc to datetime.fromtimestamp."
    if expires != datetime.fromtimestamp(TICKET_CLAIMS["exp"], timezone.utc):
        return "ticket_expires is not the time in exp (iat is when the token was issued)."
    if expires.utcoffset() != timedelta(0):
        return (
            f"ticket_expires is the right moment, but in another zone (UTC{expires.strftime('%z')}), and the task "
            "asks for UTC: pass timezone.utc to datetime.fromtimestamp."
        )
    if not isinstance(lifetime, timedelta):
        return "ticket_lifetime should be a timedelta: subtract the issue datetime from the expiry datetime."
    if lifetime == -TICKET_LIFETIME:
        return "ticket_lifetime is negative: subtract the issue time from the expiry time, not the other way round."
    if lifetime != TICKET_LIFETIME:
        return "ticket_lifetime runs from iat to exp: today's date plays no part."
    return True


@contextlib.contextmanager
def python_jose_watched():
    """A list that gets an entry each time python-jose's jwt.decode or jws.verify is called inside the block."""
    from jose import jws, jwt

    calls = []

    def watching(function):
        def watched(*args, **kwargs):
            calls.append(function.__name__)
            return function(*args, **kwargs)

        return watched

    with mock.patch.object(jwt, "decode", watching(jwt.decode)), mock.patch.object(jws, "verify", watching(jws.verify)):
        yield calls


@exercise(
    "sign 'part1.part2' as in 'The signature', with the key given, and compare it with part 3.",
    answers=("signature_matches",),
)
def signature(a):
    matches = a.signature_matches
    if matches is None:
        return False
    if not callable(matches):
        return "signature_matches should be a function: def signature_matches(token, key): ..."
    from jose import jwt

    token, key, forged, ticket = a.token, a.key, a.forged, a.ticket
    other_token = jwt.encode({"sub": "bob"}, "another-key", algorithm="HS256")
    with python_jose_watched() as calls:
        genuine = matches(token, key)
        other_genuine = matches(other_token, "another-key")
        answers = {"forged": matches(forged, key), "other key": matches(other_token, key)}
        with contextlib.suppress(Exception):  # a token with no signature may make an answer raise: that is refusing
            answers["ticket"] = matches(ticket, key)
    if calls:
        return (
            f"signature_matches calls python-jose ({calls[0]}): the task is to compute the signature yourself, with "
            "b64url and hmac, and compare it with the token's third part."
        )
    if not isinstance(genuine, bool):
        return "signature_matches should return True or False: return the comparison itself."
    if genuine is not True:
        return "signature_matches(token, key) is False: sign 'part1.part2', compare b64url(digest) to part 3."
    if other_genuine is not True:
        return "signature_matches(other_token, 'another-key') should be True: use the token and key you are given."
    if answers["forged"] is not False:
        return "forged passes: compute the signature of the token's own first two parts and compare it with part 3."
    if answers["other key"] is not False:
        return "a token signed with another key passes: the recomputed signature must equal part 3 exactly."
    return answers.get("ticket", False) is False or "ticket, which has no signature at all, passes."
