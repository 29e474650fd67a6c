"""Tokens for the key tests: any header and payload, signed by cryptography itself with a key of the key directory
(ES256 or RS256, whatever the header says), or HMAC-signed with any bytes: what an attacker or a buggy issuer sends.

The private key is loaded from its JWK by PyJWT, so no line of lesson_code or python-jose makes these signatures.
"""

import hashlib
import hmac
import json

import jwt as pyjwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from lesson_code.keys import SigningKey
from tests.forge import b64url

P256_BYTES = 32


def signing_input(header: dict, payload: dict) -> str:
    return f"{b64url(json.dumps(header))}.{b64url(json.dumps(payload))}"


def private_key_of(key: SigningKey):
    """The key's cryptography private key object, read from its private JWK by PyJWT."""
    return pyjwt.PyJWK(key.jwk).key


def public_key_of(key: SigningKey):
    return private_key_of(key).public_key()


def signed_with(key: SigningKey, header: dict, payload: dict) -> str:
    """header and payload signed with key's private key by its own algorithm (ES256: r || s; RS256: PKCS#1 v1.5)."""
    text = signing_input(header, payload)
    private = private_key_of(key)
    if key.algorithm == "ES256":
        r, s = decode_dss_signature(private.sign(text.encode(), ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(P256_BYTES, "big") + s.to_bytes(P256_BYTES, "big")
    else:
        signature = private.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{text}.{b64url(signature)}"


def hmac_signed(secret: bytes, header: dict, payload: dict) -> str:
    """header and payload with an HS256 signature made with secret (any bytes: a public key's, say)."""
    text = signing_input(header, payload)
    return f"{text}.{b64url(hmac.new(secret, text.encode(), hashlib.sha256).digest())}"


def public_key_der(key: SigningKey) -> bytes:
    """The key's public half as DER SubjectPublicKeyInfo: bytes anyone can fetch from the JWKS and re-encode."""
    return public_key_of(key).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
