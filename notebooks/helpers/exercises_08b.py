"""Notebook 08b's exercise: each check reads the answer from the notebook's names (a.verify_with_jwks) and returns
True, a sentence saying what is off, or False (the general hint). See helpers/checks.py.

The check makes its own keys and tokens, for the notebook's made-up issuer and API (ISSUER, AUDIENCE below, the values
the notebook's exercise cell sets), so it needs no cell of the notebook but the answer."""

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

from helpers.checks import exercise

ISSUER, AUDIENCE = "https://login.example", "jwt-lesson-api"

REFUSED_HINTS = {
    "a token naming ec1 but signed with ec2 (the kid pitfall)": "Python-jose given the whole set tries every key: "
    "pass jwt.decode the one key the header's kid names.",
    "a token with no kid, signed with the set's first key": "A token without kid must be refused, not checked with "
    "the first key or with every key.",
    "a token whose kid no key has, signed with the set's first key": "An unknown kid must be refused, not replaced by "
    "another key.",
    "an RS512 token naming the RSA key, whose alg is RS256": "The algorithm comes from the key, never from the "
    "token's header: refuse a header whose alg is not the key's.",
    "a token from another issuer": "Check the issuer (iss).",
    "a token for another API (aud 'billing-api')": "Check the audience (aud), and leave verify_aud on.",
    "an expired token": "Leave exp checked: no verify_exp False in options, no leeway.",
    "a token with no exp": "python-jose accepts a token without exp unless told to require it.",
    "a token with no aud": "python-jose skips the aud check when the token has no aud, even with audience=, unless "
    "told to require it.",
}


def _signed_with(signing_key, claims: dict, alg: str | None = None, **header) -> str:
    from jose import jwk, jwt

    algorithm = alg or signing_key.algorithm
    return jwt.encode(dict(claims), jwk.construct(signing_key.jwk, algorithm), algorithm, header)


def _hs256_with(secret: bytes, claims: dict, **header) -> str:
    def encode(part: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    signing_input = f"{encode({'alg': 'HS256', 'typ': 'JWT', **header})}.{encode(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _der_of(public_jwk: dict) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from jose import jwk

    public_key = serialization.load_pem_public_key(jwk.construct(public_jwk, public_jwk["alg"]).to_pem())
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _refused_tokens(rsa, ec1, ec2, stranger, claims: dict, moment: datetime) -> dict:
    expired = int((moment - timedelta(hours=1)).timestamp())
    return {
        "a token naming ec1 but signed with ec2 (the kid pitfall)": _signed_with(ec2, claims, kid=ec1.kid),
        "a token with no kid, signed with the set's first key": _signed_with(rsa, claims),
        "a token whose kid no key has, signed with the set's first key": _signed_with(rsa, claims, kid=stranger.kid),
        "a token whose kid is a list, not text": _signed_with(ec1, claims, kid=[ec1.kid]),
        "an HS256 token HMAC-signed with ec1's public key (DER), naming ec1": _hs256_with(
            _der_of(ec1.public_jwk()), claims, kid=ec1.kid
        ),
        "an ES256 token naming the RSA key": _signed_with(ec1, claims, kid=rsa.kid),
        "an RS512 token naming the RSA key, whose alg is RS256": _signed_with(rsa, claims, kid=rsa.kid, alg="RS512"),
        "a token from another issuer": _signed_with(ec1, {**claims, "iss": "https://evil.example"}, kid=ec1.kid),
        "a token for another API (aud 'billing-api')": _signed_with(ec1, {**claims, "aud": "billing-api"}, kid=ec1.kid),
        "an expired token": _signed_with(ec1, {**claims, "exp": expired}, kid=ec1.kid),
        "garbage": "not-a-token",
        "a token with no exp": _signed_with(ec1, {k: v for k, v in claims.items() if k != "exp"}, kid=ec1.kid),
        "a token with no aud": _signed_with(ec1, {k: v for k, v in claims.items() if k != "aud"}, kid=ec1.kid),
    }


def _refusal_hint(name: str, error: Exception) -> str:
    if "Incorrect key type" in str(error):
        return "python-jose, given the whole set, tried the RSA key too. Pass jwt.decode only the key the kid names."
    if "audience" in str(error).lower():
        return "tell jwt.decode the audience to expect: the tokens name AUDIENCE in aud."
    if "RS256" in name:
        return "take the algorithm from the key the kid names: the RSA key's is RS256."
    return "a good token must pass."


@exercise(
    "find the one key of the set whose kid is the header's, and verify with that key alone, with its own algorithm.",
    answers=("verify_with_jwks",),
)
def verify_with_jwks(a):
    from jose.exceptions import JOSEError

    from lesson_code import keys
    from lesson_code.tokens import TokenError

    verify_with_jwks = a.verify_with_jwks
    if verify_with_jwks is None:
        return False
    if not callable(verify_with_jwks):
        return "verify_with_jwks should be a function: def verify_with_jwks(token: str, jwks: dict) -> dict: ..."
    moment = datetime.now(timezone.utc)
    rsa, ec1, ec2, stranger = (keys.new_key(alg, moment) for alg in ("RS256", "ES256", "ES256", "ES256"))
    key_set = {"keys": [rsa.public_jwk(), ec1.public_jwk(), ec2.public_jwk()]}
    claims = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": int((moment + timedelta(days=365)).timestamp())}
    accepted = {
        "a good ES256 token": _signed_with(ec1, claims, kid=ec1.kid),
        "a good token of the second EC key": _signed_with(ec2, claims, kid=ec2.kid),
        "a good RS256 token of the RSA key": _signed_with(rsa, claims, kid=rsa.kid),
    }
    for name, token in accepted.items():
        try:
            result = verify_with_jwks(token, key_set)
        except NameError:
            raise
        except Exception as error:
            return f"{name} was refused ({type(error).__name__}: {error}): {_refusal_hint(name, error)}"
        if not isinstance(result, dict) or result.get("sub") != "alice":
            return f"for {name} verify_with_jwks should return the claims (a dict with sub 'alice'), not {result!r}."
    for name, token in _refused_tokens(rsa, ec1, ec2, stranger, claims, moment).items():
        try:
            verify_with_jwks(token, key_set)
        except TokenError:
            continue
        except JOSEError as error:
            return (
                f"{name} raised {type(error).__name__} ({error}): catch JOSEError (python-jose's base class) and raise "
                "TokenError, so that the API answers 401, not 500."
            )
        except NameError:
            raise
        except Exception as error:
            return (
                f"{name} raised {type(error).__name__} ({error}), not TokenError: "
                "check the kid (a str that one key has) before looking it up."
            )
        return f"{name} was accepted. " + REFUSED_HINTS.get(name, "Refuse it with TokenError.")
    return True
