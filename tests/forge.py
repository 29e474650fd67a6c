"""Hand-made tokens for tests: any header and payload text, signed with any key, by the standard library."""

import base64
import hashlib
import hmac
import json
import time

FAR_FUTURE = 4_102_444_800  # 2100-01-01
ALICE = {"username": "alice", "email": "alice@example.com", "full_name": "Alice Liddell", "disabled": False}
CAROL = {"username": "carol", "email": "carol@example.com", "full_name": "Carol Hatter", "disabled": False}
# GET /users as the demo users are seeded
EVERY_USER = [
    {
        "username": "alice",
        "full_name": "Alice Liddell",
        "email": "alice@example.com",
        "disabled": False,
        "scopes": "me",
    },
    {"username": "bob", "full_name": "Bob the Builder", "email": "bob@example.com", "disabled": True, "scopes": "me"},
    {
        "username": "carol",
        "full_name": "Carol Hatter",
        "email": "carol@example.com",
        "disabled": False,
        "scopes": "me admin",
    },
]
HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
OTHER_KEY = "another-key-that-is-long-enough-0123456789"
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
DEEPER_THAN_ANY_PYTHON_PARSES = 100_000  # 3.11 gives up near 1,000 levels, 3.13 near 10,000
NUMBERS_OF_SECONDS = "exp, iat and nbf must be numbers of seconds"
NOT_DOTTED = "a token is three base64url parts joined by dots"
TOO_LONG = "token is longer than 4096 characters"


def b64url(raw: bytes | str) -> str:
    if isinstance(raw, str):
        raw = raw.encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(header: dict | str, payload: dict | str, key: str | None = None, alg: str = "HS256") -> str:
    """header and payload as dicts, or as raw JSON text for hostile cases; no key means an empty signature."""
    parts = [b64url(part if isinstance(part, str) else json.dumps(part)) for part in (header, payload)]
    signing_input = ".".join(parts)
    signature = "" if key is None else b64url(hmac.new(key.encode(), signing_input.encode(), HASHES[alg]).digest())
    return f"{signing_input}.{signature}"


def tampered(token: str, payload: dict) -> str:
    """The token's own header and signature around another payload: what an attacker without the key can make."""
    header, _, signature = token.split(".")
    return f"{header}.{forge({}, payload).split('.')[1]}.{signature}"


def respelled(token: str, flip: int) -> str:
    """The same signature bytes spelled differently: the unused low bits of the last base64url character flipped."""
    last = BASE64URL.index(token[-1])
    return token[:-1] + BASE64URL[last ^ flip]


def nested(depth: int, key: str = "x") -> str:
    """A JSON object holding a list nested depth levels deep."""
    return f'{{"{key}":' + "[" * depth + "]" * depth + "}"


def hostile_tokens(key: str) -> dict[str, tuple[str, str]]:
    """Tokens the lesson's code must refuse, signed with key where it matters: name -> (token, the reason it gives)."""
    now = int(time.time())
    hs256 = {"alg": "HS256", "typ": "JWT"}
    good = {"sub": "alice", "exp": FAR_FUTURE}
    genuine = forge(hs256, good, key)

    def signed(payload: dict | str, **header) -> str:
        return forge({**hs256, **header}, payload, key)

    return {
        "expired": (signed({"sub": "alice", "iat": now - 3600, "exp": now - 60}), "token has expired"),
        "tampered payload": (tampered(genuine, {"sub": "admin", "exp": FAR_FUTURE}), "Signature verification failed"),
        "wrong key": (forge(hs256, good, OTHER_KEY), "Signature verification failed"),
        "alg none": (forge({"alg": "none", "typ": "JWT"}, good), "algorithm 'none' is not allowed, only 'HS256'"),
        "alg None": (forge({"alg": "None"}, good), "algorithm 'None' is not allowed, only 'HS256'"),
        "no alg": (forge({"typ": "JWT"}, good, key), "algorithm None is not allowed, only 'HS256'"),
        "HS512 with the same key": (
            forge({"alg": "HS512"}, good, key, alg="HS512"),
            "algorithm 'HS512' is not allowed, only 'HS256'",
        ),
        "RS256 header": (forge({"alg": "RS256"}, good, key), "algorithm 'RS256' is not allowed, only 'HS256'"),
        "crit": (signed(good, crit=["exp"]), "header names critical extensions (crit), which are not supported"),
        "crit empty": (signed(good, crit=[]), "header names critical extensions (crit), which are not supported"),
        "crit null": (signed(good, crit=None), "header names critical extensions (crit), which are not supported"),
        "b64 false": (signed(good, b64=False), "unencoded payloads (b64 other than true) are not supported"),
        "b64 'true'": (signed(good, b64="true"), "unencoded payloads (b64 other than true) are not supported"),
        "typ of a refresh token": (
            signed(good, typ="refresh+jwt"),
            "typ 'refresh+jwt' is not an access token's ('JWT')",
        ),
        "kid a number": (signed(good, kid=7), "kid must be a string"),
        "kid a list": (signed(good, kid=["k"]), "kid must be a string"),
        **{
            f"signature respelled ({flip})": (respelled(genuine, flip), "signature is not canonical base64url")
            for flip in (1, 2, 3)
        },
        "missing sub": (signed({"exp": FAR_FUTURE}), 'missing required key "sub" among claims'),
        "missing exp": (signed({"sub": "alice"}), 'missing required key "exp" among claims'),
        "sub not text": (signed({"sub": 7, "exp": FAR_FUTURE}), "Subject must be a string"),
        "exp null": (signed({"sub": "alice", "exp": None}), NUMBERS_OF_SECONDS),
        "exp text": (signed({"sub": "alice", "exp": "soon"}), NUMBERS_OF_SECONDS),
        "exp a numeric string": (signed({"sub": "alice", "exp": str(FAR_FUTURE)}), NUMBERS_OF_SECONDS),
        "exp true": (signed({"sub": "alice", "exp": True}), NUMBERS_OF_SECONDS),
        "exp a list": (signed({"sub": "alice", "exp": [FAR_FUTURE]}), NUMBERS_OF_SECONDS),
        "exp 1e999": (signed('{"sub":"alice","exp":1e999}'), NUMBERS_OF_SECONDS),
        "exp NaN": (signed('{"sub":"alice","exp":NaN}'), NUMBERS_OF_SECONDS),
        "iat a numeric string": (signed({**good, "iat": str(now)}), NUMBERS_OF_SECONDS),
        "iat null": (signed({**good, "iat": None}), NUMBERS_OF_SECONDS),
        "iat -1e999": (signed('{"sub":"alice","exp":4102444800,"iat":-1e999}'), NUMBERS_OF_SECONDS),
        "nbf a numeric string": (signed({**good, "nbf": str(now)}), NUMBERS_OF_SECONDS),
        "nbf false": (signed({**good, "nbf": False}), NUMBERS_OF_SECONDS),
        "iat in the future": (signed({**good, "iat": now + 3600}), "token was issued in the future (iat)"),
        "nbf in the future": (signed({**good, "nbf": now + 3600}), "token is not valid yet (nbf)"),
        "payload not JSON": (signed("not json"), "Invalid payload string: Expecting value: line 1 column 1 (char 0)"),
        "payload a list": (signed("[1]"), "Invalid payload string: must be a json object"),
        "header nested deep": (forge(nested(5000, "alg"), good, key), TOO_LONG),
        "header not JSON": (forge("not json", good, key), "header is not readable: Error decoding token headers"),
        "header a list": (forge('["HS256"]', good, key), "header is not readable: Error decoding token headers"),
        "header a string": (forge('"HS256"', good, key), "header is not readable: Error decoding token headers"),
        "bad base64": ("abc.def.ghi", "header is not readable: Error decoding token headers"),
        "garbage": ("garbage", NOT_DOTTED),
        "two parts": ("abc.def", NOT_DOTTED),
        "four parts": ("a.b.c.d", NOT_DOTTED),
        "not ASCII": ("é.e30.x", NOT_DOTTED),
        "empty": ("", NOT_DOTTED),
        "Bearer prefix left on": ("Bearer " + genuine, NOT_DOTTED),
        "over-long": ("a" * 3000 + "." + "b" * 3000 + ".c", TOO_LONG),
    }


HOSTILE_NAMES = tuple(hostile_tokens(OTHER_KEY))
