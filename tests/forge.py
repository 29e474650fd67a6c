"""Hand-made tokens for tests: any header and payload text, signed with any key, by the standard library."""

import base64
import hashlib
import hmac
import json

FAR_FUTURE = 4_102_444_800  # 2100-01-01
ALICE = {"username": "alice", "email": "alice@example.com", "full_name": "Alice Liddell", "disabled": False}
HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


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
