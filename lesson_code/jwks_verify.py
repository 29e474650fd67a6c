"""Verify access tokens signed by another service, with the public keys it publishes as a JWK Set (RFC 7517).

What a resource server needs and nothing more: fetch the issuer's key set with httpx (directly, https or this
machine only, size- and time-bounded), keep it as long as its max-age says, choose the one key a token's kid names
(python-jose, given a whole set, would try every key whatever the kid), check the token with that key's own
algorithm, then its claims: exp, nbf, iat (tokens.py's rules), iss and aud (RFC 8725 sections 3.8 and 3.9).

Copy it with tokens.py: fastapi is not needed, httpx, anyio (which httpx brings) and python-jose are.
"""

import base64
import ipaddress
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from urllib.parse import urlsplit

import anyio
import httpx
from jose import jwk
from jose.backends.base import Key
from jose.exceptions import JOSEError

from .tokens import (  # relative: copied into any package, it finds tokens.py beside it
    CLAIM_CHECKS,
    TokenError,
    check_no_critical_extensions,
    check_payload_encoded,
    check_signature_spelling,
    check_type,
    error_reason,
    expires_at,
    get_unverified_header,
    verify_signature_and_read,
)

ASYMMETRIC_ALGORITHMS = ("ES256", "RS256")
PUBLIC_MEMBERS = {"EC": ("kty", "crv", "x", "y"), "RSA": ("kty", "n", "e")}
KEY_TYPES = {"ES256": "EC", "RS256": "RSA"}
RSA_MIN_BITS = 2048  # RFC 7518 section 3.3: an RS256 key of fewer bits is refused
SIGNED_HEADER_CHECKS = (check_type, check_no_critical_extensions, check_payload_encoded)
MAX_JWKS_BYTES = 64 * 1024
FETCH_SECONDS = 3.0  # the whole fetch, connection to last byte: a request waiting for keys waits no longer
FETCH_TIMEOUT = httpx.Timeout(FETCH_SECONDS, connect=2.0)
DEFAULT_CACHE_SECONDS = 300  # an issuer that sends no max-age
MAX_CACHE_SECONDS = 3600  # a key the issuer withdraws stops working here within the hour, whatever its max-age said
MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)
logger = logging.getLogger(__name__)


class JwksUrlError(ValueError):
    """A JWKS_URL keys could be swapped on the way from; str() is one line."""


def jwks_client() -> httpx.AsyncClient:
    """The httpx client to fetch key sets with: bounded in time, no redirects, and trust_env=False: no HTTP_PROXY,
    ALL_PROXY or .netrc from the environment, since a proxy could answer the fetch with keys of its choosing."""
    return httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False, trust_env=False)


def check_strength(public_jwk: Mapping) -> None:
    """ES256 on P-256 only (RFC 7518 section 3.4); RS256 with a modulus of RSA_MIN_BITS or more (section 3.3)."""
    if public_jwk["alg"] == "ES256" and public_jwk.get("crv") != "P-256":
        raise ValueError(f"ES256 needs the curve P-256, not {public_jwk.get('crv')!r}")
    if public_jwk["alg"] == "RS256":
        modulus = base64.urlsafe_b64decode(public_jwk["n"] + "=" * (-len(public_jwk["n"]) % 4)).lstrip(b"\0")
        if len(modulus) * 8 < RSA_MIN_BITS:
            raise ValueError(f"RS256 needs a modulus of {RSA_MIN_BITS} bits or more")


def pinned_to_key(header: dict, keys: Mapping[str, dict]) -> dict:
    if "kid" not in header:
        raise TokenError("token names no key (kid)")
    kid = header["kid"]
    if not isinstance(kid, str):
        raise TokenError("kid must be a string")
    public_jwk = keys.get(kid)
    if public_jwk is None:
        raise TokenError("token names a key (kid) this service does not know")
    if header.get("alg") != public_jwk.get("alg"):
        raise TokenError(f"algorithm {header.get('alg')!r} is not the one of key {kid!r} ({public_jwk.get('alg')!r})")
    return public_jwk


def check_issuer(claims: dict, issuer: str) -> None:
    if claims.get("iss") != issuer:
        raise TokenError(f"issuer (iss) {claims.get('iss')!r} is not {issuer!r}")


def check_audience(claims: dict, audience: str) -> None:
    named = claims.get("aud")
    if isinstance(named, str):
        named = [named]
    if not isinstance(named, list) or not all(isinstance(name, str) for name in named):
        raise TokenError("audience (aud) is missing, or not a string or a list of strings")
    if audience not in named:
        raise TokenError(f"audience (aud) does not name this API ({audience!r})")


@lru_cache(maxsize=64)
def _verifying_key(public_json: str) -> Key:
    public_jwk = json.loads(public_json)
    return jwk.construct(public_jwk, public_jwk["alg"])


def decode_signed_token(
    token: str, keys: Mapping[str, dict], issuer: str, audience: str, now: float | None = None
) -> dict:
    """The claims of a valid access token signed with the key its kid names, among keys (public JWKs by kid), with
    that key's own algorithm, for this issuer and audience; TokenError saying why not."""
    header = get_unverified_header(token)
    public_jwk = pinned_to_key(header, keys)
    for rule in SIGNED_HEADER_CHECKS:
        rule(header)
    check_signature_spelling(token)
    try:
        verifying_key = _verifying_key(json.dumps(public_jwk, sort_keys=True))
    except (JOSEError, RecursionError) as error:
        raise TokenError(error_reason(error)) from None
    except (TypeError, ValueError, OverflowError, KeyError):
        raise TokenError("claims are not readable") from None
    # aud is checked below, against this API's name: check_audience
    claims = verify_signature_and_read(token, verifying_key, public_jwk["alg"], require_sub=False, verify_aud=False)
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise TokenError("sub must be a non-empty string")
    seconds = datetime.now(timezone.utc).timestamp() if now is None else now
    for rule in CLAIM_CHECKS:
        rule(claims, seconds)
    check_issuer(claims, issuer)
    check_audience(claims, audience)
    return claims


def usable_keys(jwks: object) -> dict[str, dict]:
    """The signing keys of a JWK Set that a verifier can use, by kid: those naming a string kid, an algorithm of
    ASYMMETRIC_ALGORITHMS that fits their kty and strength (P-256, RSA of 2048 bits or more), and no use other than
    sig. The others are left out; of each key, only its public members are kept."""
    found = {}
    for candidate in jwks.get("keys", []) if isinstance(jwks, dict) and isinstance(jwks.get("keys"), list) else []:
        if not isinstance(candidate, dict) or not isinstance(candidate.get("kid"), str):
            continue
        algorithm = candidate.get("alg")
        if algorithm not in ASYMMETRIC_ALGORITHMS or candidate.get("kty") != KEY_TYPES[algorithm]:
            continue
        if candidate.get("use", "sig") != "sig" or not all(
            isinstance(candidate.get(name), str) for name in PUBLIC_MEMBERS[candidate["kty"]]
        ):
            continue
        public_jwk = {name: candidate[name] for name in PUBLIC_MEMBERS[candidate["kty"]]}
        public_jwk |= {"kid": candidate["kid"], "alg": algorithm}
        try:
            check_strength(public_jwk)
        except ValueError:  # binascii.Error included: an n that is not base64url
            continue
        found[candidate["kid"]] = public_jwk
    return found


class KeysUnavailable(Exception):
    """No key of the issuer is known yet and none can be fetched now; retry_after: whole seconds to wait."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after


class FetchFailed(Exception):
    """The JWK Set could not be fetched or read; str() says why, in one line."""


def check_jwks_url(url: str) -> str:
    """url if keys fetched from it cannot be swapped on the way: https, or http to this machine; else JwksUrlError."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        try:
            loopback = parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return url
    raise JwksUrlError(f"JWKS_URL is not a valid setting: {url!r} must be https:// (or http:// to this machine)")


def cache_seconds(cache_control: str, refetch_seconds: float) -> float:
    """How long a fetched key set stays fresh: its max-age (no-store and no-cache: 0), within the refetch interval
    and MAX_CACHE_SECONDS."""
    if re.search(r"no-store|no-cache", cache_control, re.IGNORECASE):
        seconds = 0.0
    else:
        found = MAX_AGE.search(cache_control)
        seconds = float(found.group(1)) if found else DEFAULT_CACHE_SECONDS
    return min(max(seconds, refetch_seconds), MAX_CACHE_SECONDS)


async def read_jwks(client: httpx.AsyncClient, url: str) -> tuple[dict[str, dict], str]:
    """The usable keys of the JWK Set at url, by kid, and its Cache-Control; FetchFailed for anything else."""
    headers = {"Accept": "application/json", "Accept-Encoding": "identity"}  # no gzip bomb to unpack
    async with client.stream("GET", url, headers=headers) as response:
        if response.status_code != httpx.codes.OK:
            raise FetchFailed(f"the issuer answered {response.status_code}")
        if response.headers.get("content-encoding", "identity").lower() != "identity":
            raise FetchFailed("the issuer answered a compressed key set")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
            raise FetchFailed(f"the key set is over {MAX_JWKS_BYTES} bytes")
        body = bytearray()
        async for chunk in response.aiter_bytes():  # no Content-Encoding: the bytes as sent
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise FetchFailed(f"the key set is over {MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise FetchFailed("the key set is not JSON") from None
    keys = usable_keys(document)
    if not keys:
        raise FetchFailed("the key set holds no usable signing key")
    return keys, response.headers.get("cache-control", "")


class JwksCache:
    """The issuer's public keys by kid: fetched on first need, again once stale or for a kid not among them, but
    never more than once every refetch_seconds; concurrent requests share one fetch. A failed fetch keeps the keys."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        refetch_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        fetch_seconds: float = FETCH_SECONDS,
    ) -> None:
        self.url, self.client, self.refetch_seconds = url, client, refetch_seconds
        self.clock, self.fetch_seconds = clock, fetch_seconds
        self._lock = anyio.Lock()
        self._keys: dict[str, dict] | None = None
        self._fresh_until = -math.inf
        self._attempted_at = -math.inf
        self._attempts = 0

    @property
    def keys(self) -> Mapping[str, dict]:
        """The keys held now, by kid: public members only."""
        return self._keys or {}

    async def keys_for(self, kid: str) -> Mapping[str, dict]:
        """The keys to verify a token naming kid with; KeysUnavailable when none was ever fetched."""
        if self._should_fetch(kid):
            attempts = self._attempts
            async with self._lock:
                if attempts == self._attempts and self._should_fetch(kid):  # else: another request just fetched
                    with anyio.CancelScope(shield=True):  # a client that hangs up cancels no one else's fetch
                        await self._fetch()
        elif self._lock.locked() and (self._keys is None or kid not in self._keys):
            async with self._lock:  # a fetch is under way: wait for the keys it brings, not the ones held before
                pass
        if self._keys is None:
            raise KeysUnavailable(self._seconds_to_next_fetch())
        return self._keys

    def _should_fetch(self, kid: str) -> bool:
        now = self.clock()
        if now - self._attempted_at < self.refetch_seconds:
            return False
        return self._keys is None or now >= self._fresh_until or kid not in self._keys

    def _seconds_to_next_fetch(self) -> int:
        return max(1, math.ceil(self._attempted_at + self.refetch_seconds - self.clock()))

    async def _fetch(self) -> None:
        self._attempts += 1
        self._attempted_at = self.clock()
        try:
            with anyio.fail_after(self.fetch_seconds):
                keys, cache_control = await read_jwks(self.client, self.url)
        except (FetchFailed, httpx.HTTPError, TimeoutError) as error:
            reason = str(error) or type(error).__name__
            logger.warning("Fetching the issuer's keys from %s failed (%s); %d kept", self.url, reason, len(self.keys))
            return
        self._keys = keys
        self._fresh_until = self.clock() + cache_seconds(cache_control, self.refetch_seconds)


def granted_scopes(claims: dict) -> list[str]:
    """The scopes the token's scope claim grants (space-separated); none without one; TokenError if not a string."""
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise TokenError("scope must be a string")
    return scope.split()


async def verify_access_token(token: str, cache: JwksCache, issuer: str, audience: str) -> dict:
    """The claims of a valid access token of the issuer, checked with the key its kid names; TokenError if not."""
    kid = get_unverified_header(token).get("kid")
    keys = await cache.keys_for(kid) if isinstance(kid, str) else {}  # no string kid, no key: no fetch either
    claims = decode_signed_token(token, keys, issuer, audience)
    granted_scopes(claims)
    expires_at(claims)  # an exp past the year 9999 is not a time: refused here, not a 500 later
    return claims
