"""Asymmetric signing keys (ES256, or RS256) kept in a directory, published as a JWK Set, rotated by kid.

A new key is published at once and signs a few seconds later, when every verifier can have fetched it; the key it
replaces stays published and accepted until every token it signed has expired. A verifier picks the one key a
token's kid names (python-jose, given a whole key set, would try them all).

Key files: <kid>.json in the key directory (JWT_KEY_DIR, by default .jwt_keys next to the secret file), each
{"created": ISO time, "key": a private JWK}; the directory is 0700, each file 0600 and written by atomic rename.
A key's kid is its RFC 7638 thumbprint, so a file's name says which key it holds. Files are never changed: a key is
retired when the next one starts signing, and removed by prune() once no token it signed can still be valid.
"""

import base64
import hashlib
import json
import logging
import math
import os
import secrets
import stat
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from functools import lru_cache
from pathlib import Path
from threading import Lock

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError

from lesson_code.jwks_verify import (
    ASYMMETRIC_ALGORITHMS,
    KEY_TYPES,
    PUBLIC_MEMBERS,
    check_strength,
    decode_signed_token,
)
from lesson_code.secret_file import secret_file_path
from lesson_code.tokens import LEEWAY_SECONDS

KEY_DIR_ENV_VAR = "JWT_KEY_DIR"
KEY_DIR_NAME = ".jwt_keys"
RSA_KEY_BITS = 2048  # what a new RS256 key gets
THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}  # RFC 7638 section 3.2
MAX_KEY_FILE_BYTES = 16 * 1024
LIFETIME_FILE = ".longest-token-seconds"  # the longest token lifetime any server has used with this folder
MAX_CLOCK_AHEAD = timedelta(days=1)  # a key made later than this from now says a clock is wrong
CHECK_EVERY_SECONDS = 1.0  # how often a running server looks for a rotated key: one listdir() of a small folder
# A new key signs this long after it is made. Every worker publishes it within CHECK_EVERY_SECONDS, and no copy of
# the key set may be kept longer than JWKS_MAX_AGE_SECONDS (Cache-Control), nor refetched for an unknown kid less
# often than every JWKS_REFETCH_SECONDS (5 s by default): every verifier, and every cache in between, has a new key
# before any token names it.
PUBLISH_AHEAD_SECONDS = 10
JWKS_MAX_AGE_SECONDS = 5


logger = logging.getLogger(__name__)


class KeyStoreError(RuntimeError):
    """The key directory or a key file is unusable; the message says which and what to do, in one line."""


class KeyState(str, Enum):
    PUBLISHED = "published"
    SIGNING = "signing"
    RETIRED = "retired"
    PRUNABLE = "prunable"


def thumbprint(public_jwk: Mapping) -> str:
    """The key's RFC 7638 SHA-256 thumbprint, base64url: its kid."""
    members = THUMBPRINT_MEMBERS[public_jwk["kty"]]
    canonical = json.dumps({name: public_jwk[name] for name in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


@dataclass(frozen=True, eq=False)
class SigningKey:
    """One key of the directory: its private JWK (with kid, alg and use) and when it was made."""

    jwk: dict = field(repr=False)
    created: datetime

    @property
    def kid(self) -> str:
        return self.jwk["kid"]

    @property
    def algorithm(self) -> str:
        return self.jwk["alg"]

    def public_jwk(self) -> dict:
        """The members anyone may see: never d, p, q or the other private ones."""
        members = PUBLIC_MEMBERS[self.jwk["kty"]]
        return {**{name: self.jwk[name] for name in members}, "kid": self.kid, "alg": self.algorithm, "use": "sig"}


def new_key(algorithm: str, now: datetime) -> SigningKey:
    """A freshly generated private key for algorithm (ES256 or RS256), its kid the RFC 7638 thumbprint."""
    if algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    else:
        raise ValueError(f"no key can be made for {algorithm!r}: only {', '.join(ASYMMETRIC_ALGORITHMS)}")
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private_jwk = jwk.construct(pem, algorithm).to_dict()
    private_jwk.update({"kid": thumbprint(private_jwk), "alg": algorithm, "use": "sig"})
    return SigningKey(private_jwk, now)


@dataclass(frozen=True)
class KeyRing:
    """The keys of a directory, oldest first. A new key is published at once and signs PUBLISH_AHEAD_SECONDS later,
    so that every verifier can have fetched it before it meets a token naming it; the key it replaces is retired
    then, and stays published until every token it signed has expired."""

    keys: tuple[SigningKey, ...]

    def signs_from(self, key: SigningKey) -> datetime:
        """When key starts signing: the first key at once, every later one PUBLISH_AHEAD_SECONDS after it was made."""
        return key.created if key is self.keys[0] else key.created + timedelta(seconds=PUBLISH_AHEAD_SECONDS)

    def signing_key(self, now: datetime) -> SigningKey:
        """The newest key that has started signing by now."""
        started = [key for key in self.keys if self.signs_from(key) <= now]
        return started[-1] if started else self.keys[0]

    @property
    def signing(self) -> SigningKey:
        """The key signing at this moment."""
        return self.signing_key(datetime.now(timezone.utc))

    def retired_at(self, key: SigningKey) -> datetime | None:
        """When key stops (or stopped) signing: when the next key starts; None for the newest key."""
        index = self.keys.index(key)
        return None if index == len(self.keys) - 1 else self.signs_from(self.keys[index + 1])

    def state(self, key: SigningKey, now: datetime, longest_token: timedelta) -> KeyState:
        """Published (signs soon), signing, retired (its tokens still accepted), or prunable (none can be valid)."""
        if key is self.signing_key(now):
            return KeyState.SIGNING
        if now < self.signs_from(key):
            return KeyState.PUBLISHED
        if now >= self.retired_at(key) + longest_token + timedelta(seconds=LEEWAY_SECONDS):
            return KeyState.PRUNABLE
        return KeyState.RETIRED

    def live(self, now: datetime, longest_token: timedelta) -> list[SigningKey]:
        """The keys to publish and accept: all but the prunable ones."""
        return [key for key in self.keys if self.state(key, now, longest_token) is not KeyState.PRUNABLE]

    def jwks(self, now: datetime, longest_token: timedelta) -> dict:
        """The JWK Set to publish (RFC 7517 section 5): public members only."""
        return {"keys": [key.public_jwk() for key in self.live(now, longest_token)]}


def key_dir_path() -> Path:
    """Where the issuer's keys are kept: JWT_KEY_DIR, or .jwt_keys next to the secret file."""
    return Path(os.environ.get(KEY_DIR_ENV_VAR) or secret_file_path().with_name(KEY_DIR_NAME))


def _refuse(path: Path, problem: str) -> KeyStoreError:
    return KeyStoreError(f"{path} {problem}")


def _check_owned_and_private(path: Path, info: os.stat_result, mode: int) -> None:
    if not hasattr(os, "getuid"):
        return
    if info.st_uid != os.getuid():
        raise _refuse(path, f"belongs to user {info.st_uid}, not to you (user {os.getuid()})")
    if info.st_mode & 0o077:
        raise _refuse(
            path,
            f"can be read or changed by other users (mode {stat.S_IMODE(info.st_mode):04o}); run: chmod {mode:o} {path}",
        )


def open_key_dir(path: Path, create: bool = True) -> Path:
    """The key directory, checked: a real directory (not a symbolic link), yours, 0700; made when missing."""
    return open_private_dir(path, KEY_DIR_ENV_VAR, "the keys", create, "does not exist: no key has been made yet")


def open_private_dir(
    path: Path, setting: str, holds: str, create: bool = True, missing: str = "does not exist"
) -> Path:
    """path checked: a real directory (not a symbolic link), yours, 0700, made when missing (unless create is False);
    KeyStoreError in one line otherwise, naming the setting that chooses the folder and what it holds."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not create:
            raise _refuse(path, missing) from None
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass  # another process made it meanwhile
        except OSError as error:
            raise _refuse(path, f"cannot be made ({error.strerror}); set {setting} to a writable place") from None
        info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise _refuse(path, f"is a symbolic link, so someone else may have chosen {holds}; point {setting} at a folder")
    if not stat.S_ISDIR(info.st_mode):
        raise _refuse(path, "is not a directory")
    _check_owned_and_private(path, info, 0o700)
    return path


def _key_file_names(path: Path) -> list[str]:
    try:
        return sorted(name for name in os.listdir(path) if name.endswith(".json") and not name.startswith("."))
    except OSError as error:
        raise _refuse(path, f"cannot be read ({error.strerror})") from None


def _read_private_file(path: Path, max_bytes: int) -> bytes:
    """At most max_bytes of a regular file of yours that only you can open, read without following a link or waiting
    on a FIFO; FileNotFoundError passes through, any other problem is a KeyStoreError."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as error:
        if path.is_symlink():
            raise _refuse(path, "is a symbolic link; delete it") from None
        raise _refuse(path, f"cannot be read ({error.strerror})") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(path, "is not a regular file; delete it")
        _check_owned_and_private(path, info, 0o600)
        return os.read(descriptor, max_bytes)
    finally:
        os.close(descriptor)


def read_key_file(path: Path) -> SigningKey:
    """One key file, checked: a regular file of yours, 0600, small, a private JWK whose kid is its thumbprint.
    FileNotFoundError when it was deleted since its folder was listed."""
    data = _read_private_file(path, MAX_KEY_FILE_BYTES + 1)
    try:
        if len(data) > MAX_KEY_FILE_BYTES:
            raise ValueError(f"over {MAX_KEY_FILE_BYTES} bytes")
        document = json.loads(data)
        private_jwk, created = document["key"], datetime.fromisoformat(document["created"])
        if created.tzinfo is None:
            raise ValueError("its creation time has no time zone")
        if created > datetime.now(timezone.utc) + MAX_CLOCK_AHEAD:
            raise ValueError("it was made more than a day in the future: a clock is wrong")
        if private_jwk.get("alg") not in ASYMMETRIC_ALGORITHMS or KEY_TYPES[private_jwk["alg"]] != private_jwk["kty"]:
            raise ValueError(f"alg must be one of {', '.join(ASYMMETRIC_ALGORITHMS)} and match kty")
        if "d" not in private_jwk:
            raise ValueError("it holds no private key")
        if private_jwk.get("kid") != thumbprint(private_jwk) or path.name != f"{private_jwk['kid']}.json":
            raise ValueError("its kid is not its thumbprint, or not its file name")
        check_strength(private_jwk)
        jwk.construct(private_jwk, private_jwk["alg"])
    except (ValueError, KeyError, TypeError, AttributeError, JOSEError, RecursionError) as error:
        reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__} {error}"
        raise _refuse(path, f"is not a key file made by this code ({reason}); move it away") from None
    return SigningKey(private_jwk, created.astimezone(timezone.utc))


def load_keys(directory: Path, create: bool = False) -> KeyRing | None:
    """Every key of the directory, checked, oldest first; None when it holds none."""
    open_key_dir(directory, create=create)
    keys = []
    for name in _key_file_names(directory):
        try:
            keys.append(read_key_file(directory / name))
        except FileNotFoundError:
            continue
    if not keys:
        return None
    return KeyRing(tuple(sorted(keys, key=lambda key: (key.created, key.kid))))


def write_key(directory: Path, key: SigningKey) -> Path:
    """Add key to the directory, whole or not at all: written to a hidden 0600 file, then renamed into place."""
    open_key_dir(directory)
    target = directory / f"{key.kid}.json"
    draft = directory / f".{key.kid}.{os.getpid()}.{secrets.token_hex(4)}"
    document = {"created": key.created.isoformat(), "key": key.jwk}
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            json.dump(document, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.replace(draft, target)
    except BaseException:
        draft.unlink(missing_ok=True)
        raise
    return target


def rotate(directory: Path, algorithm: str, now: datetime) -> SigningKey:
    """Make a new key: published at once, signing PUBLISH_AHEAD_SECONDS later (at once if it is the first one).

    KeyStoreError when now is before the newest key was made: this clock is behind the one that made it.
    """
    ring = load_keys(directory, create=True)
    if ring is not None and now < ring.keys[-1].created:
        raise KeyStoreError(
            f"this clock ({now:%Y-%m-%d %H:%M:%S} UTC) is behind the newest key's creation "
            f"({ring.keys[-1].created:%Y-%m-%d %H:%M:%S} UTC): the servers and this command must share one clock"
        )
    key = new_key(algorithm, now)
    write_key(directory, key)
    return key


def recorded_longest_token(directory: Path) -> timedelta:
    """The longest token lifetime a server has recorded in the key folder (record_longest_token); 0 if none."""
    path = directory / LIFETIME_FILE
    try:
        text = _read_private_file(path, 32)
    except FileNotFoundError:
        return timedelta(0)
    try:
        seconds = int(text)
        if not 0 <= seconds <= 366 * 24 * 3600:
            raise ValueError
    except ValueError:
        raise _refuse(path, "does not hold a number of seconds; delete it") from None
    return timedelta(seconds=seconds)


def record_longest_token(directory: Path, longest_token: timedelta) -> timedelta:
    """Remember in the key folder that tokens may live longest_token, unless a longer lifetime is recorded there
    already; the longer of the two. prune() and SignedAccessTokens keep retired keys that long: a command run with
    a shorter ACCESS_TOKEN_MINUTES than the servers', or a restart with a shorter one, cannot drop a key early."""
    open_key_dir(directory)
    with _locked(directory):
        recorded = recorded_longest_token(directory)
        if longest_token <= recorded:
            return recorded
        draft = directory / f".{LIFETIME_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(f"{math.ceil(longest_token.total_seconds())}\n")
        os.replace(draft, directory / LIFETIME_FILE)
    return longest_token


def prune(directory: Path, now: datetime, longest_token: timedelta) -> list[SigningKey]:
    """Delete the keys no valid token can name any more (kept for the longer of longest_token and the recorded
    lifetime); the ones deleted. The signing key is never deleted."""
    ring = load_keys(directory)
    if ring is None:
        return []
    longest_token = max(longest_token, recorded_longest_token(directory))
    gone = [key for key in ring.keys if ring.state(key, now, longest_token) is KeyState.PRUNABLE]
    for key in gone:
        (directory / f"{key.kid}.json").unlink(missing_ok=True)
    return gone


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold the key folder's lock file (.lock) while in the block, where the system has flock (not on Windows)."""
    if fcntl is None:
        yield
        return
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(directory / ".lock", flags, 0o600)
    except OSError as error:
        raise _refuse(directory / ".lock", f"cannot be opened ({error.strerror}); delete it") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


class KeySource:
    """The issuer's key ring, looked at again when CHECK_EVERY_SECONDS have passed: a rotation made by `python -m
    lesson_code keys rotate` reaches every worker within about a second, without a restart. A first key, of
    algorithm, is made when the directory holds none; after that the newest key signs, whatever its algorithm."""

    def __init__(self, directory: Path, algorithm: str, check_every: float = CHECK_EVERY_SECONDS) -> None:
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise KeyStoreError(
                f"JWT_ALGORITHM {algorithm!r} uses no key pair: only {', '.join(ASYMMETRIC_ALGORITHMS)}"
            )
        self.directory, self.algorithm, self.check_every = directory, algorithm, check_every
        self._lock = Lock()
        self._names: list[str] | None = None
        self._ring: KeyRing | None = None
        self._problem: str | None = None
        self._checked = -math.inf

    def ring(self) -> KeyRing:
        """The current keys; a first key of the algorithm is made when the directory has none."""
        if time.monotonic() - self._checked < self.check_every and self._ring is not None:
            return self._ring
        with self._lock:
            if time.monotonic() - self._checked >= self.check_every or self._ring is None:
                self._reload()
        return self._ring

    def record_longest_token(self, longest_token: timedelta) -> timedelta:
        """Record in the key folder that tokens may live longest_token (record_longest_token); the longer of it and
        the lifetime recorded before, which retired keys are kept for."""
        return record_longest_token(self.directory, longest_token)

    def _reload(self) -> None:
        try:
            self._read()
        except KeyStoreError as error:
            if self._ring is None:
                raise  # at start-up: one line, and no server
            if str(error) != self._problem:  # once per problem, not once a second
                logger.error("%s: going on with the keys read before", error)
            self._problem = str(error)
        else:
            self._problem = None
        self._checked = time.monotonic()

    def _read(self) -> None:
        open_key_dir(self.directory)
        names = _key_file_names(self.directory)
        if names != self._names:  # files are never changed, only added and removed: their names say it all
            ring = load_keys(self.directory)
            if ring is None:
                with _locked(self.directory):  # two workers starting together make one first key, not two
                    if load_keys(self.directory) is None:
                        rotate(self.directory, self.algorithm, datetime.now(timezone.utc))
                names, ring = _key_file_names(self.directory), load_keys(self.directory)
            self._names, self._ring = names, ring


@lru_cache(maxsize=16)
def _private_key(key: SigningKey) -> Key:
    return jwk.construct(key.jwk, key.algorithm)


class SignedAccessTokens:
    """Access tokens signed with the key source's signing key, naming it by kid and carrying iss and aud; verified by
    the key their kid names among those still live. sessions.py takes it in place of the HS256 functions.

    longest_token is recorded where the keys are (the key folder, or the database for key_store.DatabaseKeySource,
    which has the same ring() and record_longest_token()): retired keys are kept for the longest lifetime any server
    has used with them, so a restart with a shorter one cannot refuse tokens made before.
    """

    def __init__(self, source: KeySource, issuer: str, audience: str, longest_token: timedelta) -> None:
        self.source, self.issuer, self.audience, self.longest_token = source, issuer, audience, longest_token
        self.keys_kept_for = source.record_longest_token(longest_token)

    def create(self, data: dict, expires_delta: timedelta | None = None) -> str:
        """A signed token holding data, iss, aud, iat and exp (longest_token from now unless expires_delta says).

        ValueError for a lifetime over longest_token: the token would outlive its key, which is kept only that long.
        """
        if expires_delta is None:
            expires_delta = self.longest_token
        if expires_delta > self.longest_token:
            raise ValueError(f"a token may live at most {self.longest_token}, as long as a retired key is kept")
        now = datetime.now(timezone.utc)
        key = self.source.ring().signing_key(now)
        claims = {**data, "iss": self.issuer, "aud": self.audience, "iat": now, "exp": now + expires_delta}
        return jwt.encode(claims, _private_key(key), algorithm=key.algorithm, headers={"kid": key.kid})

    def decode(self, token: str) -> dict:
        return decode_signed_token(token, self.public_keys(), self.issuer, self.audience)

    def public_keys(self) -> dict[str, dict]:
        """The live keys' public JWKs by kid."""
        return {
            key.kid: key.public_jwk() for key in self.source.ring().live(datetime.now(timezone.utc), self.keys_kept_for)
        }

    def jwks(self) -> dict:
        """The JWK Set to publish at /.well-known/jwks.json."""
        return self.source.ring().jwks(datetime.now(timezone.utc), self.keys_kept_for)
