"""The ES256 and RS256 signing keys in the database, shared by every instance of the service: a table of its own
(signing_keys) on a MetaData of its own, the private halves encrypted at rest with JWT_KEY_ENCRYPTION_KEY.

keys.py keeps the keys in a folder: right for one machine, wrong for several, which share no disk. When DATABASE_URL
names a database server (PostgreSQL), every instance reads the same rows instead, so a token signed by one is
verified by all, they publish one JWK Set, and `keys rotate` or `keys prune` from any machine acts once for all.
SQLite keeps the folder: its file lives on one machine's disk, so there is nothing to share, and the folder's 0600
files need no second secret. The timing is keys.py's, unchanged: DatabaseKeySource.ring() is a keys.KeyRing, read
again every CHECK_EVERY_SECONDS, and a new key signs PUBLISH_AHEAD_SECONDS after it was made.

A row is never changed: a key is added (rotate), and deleted once no token it signed can be valid (prune). The
private JWK is sealed with AES-256-GCM under a key derived by HKDF-SHA256 from JWT_KEY_ENCRYPTION_KEY, its kid and
algorithm bound to it as associated data, so a row's secret cannot be read without the key, nor moved to another row
or algorithm unnoticed. A key's creation time is the database server's clock: one clock for every machine.
"""

import json
import logging
import math
import os
import threading
import time
import weakref
from datetime import datetime, timedelta, timezone

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jose import jwk
from jose.exceptions import JOSEError
from sqlalchemy import Column, Engine, Integer, LargeBinary, MetaData, String, Table, Text, func, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, make_url

from lesson_code.database import DatabaseUnavailable, UTCDateTime, create_tables, make_engine, reading, writing
from lesson_code.jwks_verify import ASYMMETRIC_ALGORITHMS, KEY_TYPES, check_strength
from lesson_code.keys import (
    CHECK_EVERY_SECONDS,
    KeyRing,
    KeySource,
    KeyState,
    KeyStoreError,
    SigningKey,
    key_dir_path,
    new_key,
    thumbprint,
)
from lesson_code.settings import HOW_TO_MAKE_AN_ENCRYPTION_KEY

ENCRYPTION_KEY_ENV_VAR = "JWT_KEY_ENCRYPTION_KEY"
HKDF_INFO = b"lesson_code signing_keys: private JWK, AES-256-GCM, v1"  # a key for this use only
SEALED_FORMAT = b"\x01"  # then a 96-bit random nonce, then the ciphertext and its 128-bit tag
NONCE_BYTES = 12
KEYS_LOCK_ID = 710_062_027  # PostgreSQL: instances take turns making the first key, rotating and pruning
WRITE_ATTEMPTS = 5  # elsewhere than on PostgreSQL, two inserts racing for one serial: the loser reads and retries
LONGEST_TOKEN = "longest_token"

logger = logging.getLogger(__name__)

metadata = MetaData()  # create_schema() creates these two tables only
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String, primary_key=True),  # the RFC 7638 thumbprint, as in the folder
    Column("serial", Integer, nullable=False, unique=True),  # 1, 2, 3...: two first keys cannot both be inserted
    Column("algorithm", String, nullable=False),  # ES256 or RS256
    Column("created_at", UTCDateTime, nullable=False),  # the database's clock; signs PUBLISH_AHEAD_SECONDS later
    Column("public_jwk", Text, nullable=False),  # JSON: what /.well-known/jwks.json publishes, readable by anyone
    Column("private_key", LargeBinary, nullable=False),  # the private JWK, sealed (KeyEncryption): never in clear
)
# The longest access-token lifetime any instance has used with these keys: retired keys are kept that long.
signing_key_lifetimes = Table(
    "signing_key_lifetimes",
    metadata,
    Column("name", String, primary_key=True),  # LONGEST_TOKEN
    Column("seconds", Integer, nullable=False),
)


def create_schema(engine: Engine) -> None:
    """Create signing_keys and signing_key_lifetimes when missing (never alters them), instances taking turns."""
    create_tables(engine, metadata.sorted_tables)


def keys_in_database(database_url: str) -> bool:
    """Whether the signing keys are kept in the database: when it is a database server, not an SQLite file."""
    try:
        return make_url(database_url).get_backend_name() != "sqlite"
    except sa_exc.ArgumentError:
        return False  # make_engine says what is wrong with it, in one line


def place(engine: Engine) -> str:
    """Where the keys are, for a person: the table and its database."""
    url = engine.url
    where = url.host or url.query.get("host") or "localhost"
    return f"table signing_keys of database {url.database!r} on {where}"


class KeyEncryption:
    """Seals and opens private JWKs with AES-256-GCM. The key is derived with HKDF-SHA256 (RFC 5869) from the
    setting, which must already hold 256 bits of randomness (settings.py refuses less): a fast derivation is right
    for a random key, where a password hash would be for a guessable one. Each seal takes a fresh random nonce."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise KeyStoreError(
                f"{ENCRYPTION_KEY_ENV_VAR} is not set: with JWT_ALGORITHM ES256 or RS256 and DATABASE_URL naming a "
                "database server, the signing keys are kept in the database, their private halves encrypted with it; "
                f"give every instance the same one ({HOW_TO_MAKE_AN_ENCRYPTION_KEY})"
            )
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(secret.encode())
        self._aead = AESGCM(derived)

    @staticmethod
    def _bound_to(kid: str, algorithm: str) -> bytes:
        return f"{kid}\n{algorithm}".encode()

    def seal(self, key: SigningKey) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        plaintext = json.dumps(key.jwk, separators=(",", ":")).encode()
        return SEALED_FORMAT + nonce + self._aead.encrypt(nonce, plaintext, self._bound_to(key.kid, key.algorithm))

    def open(self, sealed: bytes, kid: str, algorithm: str) -> bytes:
        """The private JWK's JSON; InvalidTag for another key or an altered row, ValueError for another format."""
        sealed = bytes(sealed)
        if not sealed.startswith(SEALED_FORMAT) or len(sealed) < 1 + NONCE_BYTES + 16:
            raise ValueError("its private key is not in the sealed format")
        nonce, ciphertext = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        return self._aead.decrypt(nonce, ciphertext, self._bound_to(kid, algorithm))


def _refuse(engine: Engine, kid: str, problem: str) -> KeyStoreError:
    return KeyStoreError(f"the signing key {kid} in the {place(engine)} {problem}")


def _checked_public(row) -> dict:
    public_jwk = json.loads(row.public_jwk)
    if not isinstance(public_jwk, dict) or public_jwk.get("alg") != row.algorithm:
        raise ValueError("its public JWK does not name its algorithm")
    if row.algorithm not in ASYMMETRIC_ALGORITHMS or KEY_TYPES[row.algorithm] != public_jwk.get("kty"):
        raise ValueError(f"alg must be one of {', '.join(ASYMMETRIC_ALGORITHMS)} and match kty")
    if "d" in public_jwk or public_jwk.get("kid") != row.kid or thumbprint(public_jwk) != row.kid:
        raise ValueError("its public JWK holds a private member, or its kid is not its thumbprint")
    check_strength(public_jwk)
    return public_jwk


def _public_key(engine: Engine, row) -> SigningKey:
    try:
        return SigningKey(_checked_public(row), row.created_at)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise _refuse(engine, row.kid, f"is not a key made by this code ({error}); delete its row") from None


def _private_key(engine: Engine, row, encryption: KeyEncryption) -> SigningKey:
    try:
        plaintext = encryption.open(row.private_key, row.kid, row.algorithm)
    except InvalidTag:
        raise _refuse(
            engine,
            row.kid,
            f"cannot be decrypted with {ENCRYPTION_KEY_ENV_VAR}: it is not the key the signing keys were encrypted "
            "with (every instance needs the same one), or the row was altered",
        ) from None
    except ValueError as error:
        raise _refuse(engine, row.kid, f"is not a key made by this code ({error}); delete its row") from None
    try:
        public_jwk = _checked_public(row)
        private_jwk = json.loads(plaintext)
        key = SigningKey(private_jwk, row.created_at)
        if "d" not in private_jwk or key.public_jwk() != public_jwk:
            raise ValueError("its private half does not match its public half")
        jwk.construct(private_jwk, row.algorithm)
    except (ValueError, KeyError, TypeError, AttributeError, JOSEError, RecursionError) as error:
        reason = str(error) if isinstance(error, ValueError) else f"{type(error).__name__} {error}"
        raise _refuse(engine, row.kid, f"is not a key made by this code ({reason}); delete its row") from None
    return key


def _rows(connection: Connection) -> list:
    return connection.execute(select(signing_keys).order_by(signing_keys.c.serial)).all()


def _ring(keys: list[SigningKey]) -> KeyRing | None:
    return KeyRing(tuple(sorted(keys, key=lambda key: (key.created, key.kid)))) if keys else None


def load_public_keys(engine: Engine) -> KeyRing | None:
    """The keys' public halves, oldest first (enough to list, publish and verify; no decryption); None if none."""
    with reading(engine) as connection:
        rows = _rows(connection)
    return _ring([_public_key(engine, row) for row in rows])


def load_keys(engine: Engine, encryption: KeyEncryption) -> KeyRing | None:
    """Every key, decrypted and checked, oldest first; None when there is none."""
    with reading(engine) as connection:
        rows = _rows(connection)
    return _ring([_private_key(engine, row, encryption) for row in rows])


def _take_turns(connection: Connection) -> None:
    """On PostgreSQL, wait until no other instance makes, rotates or prunes keys (until this transaction ends)."""
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(KEYS_LOCK_ID)))


def database_now(connection: Connection) -> datetime:
    """The database server's clock on PostgreSQL (one clock for every machine); this machine's on SQLite."""
    if connection.dialect.name == "postgresql":
        return connection.execute(select(func.clock_timestamp())).scalar_one().astimezone(timezone.utc)
    return datetime.now(timezone.utc)


def rotate(
    engine: Engine, encryption: KeyEncryption, algorithm: str, now: datetime | None = None, *, first: bool = False
) -> SigningKey | None:
    """Add a new key: published at once, signing PUBLISH_AHEAD_SECONDS later (at once if it is the first one), made at
    now (default: the database's clock). With first=True, only when there is no key yet (None otherwise): however
    many instances start together, one first key is made.

    KeyStoreError when now is before the newest key was made: that clock is behind the one that made it.
    """
    for _ in range(WRITE_ATTEMPTS):
        try:
            with writing(engine) as connection:
                _take_turns(connection)
                newest = connection.execute(
                    select(signing_keys.c.serial, signing_keys.c.created_at).order_by(signing_keys.c.serial.desc())
                ).first()
                if first and newest is not None:
                    return None
                moment = now or database_now(connection)
                if newest is not None and moment < newest.created_at:
                    raise KeyStoreError(
                        f"this clock ({moment:%Y-%m-%d %H:%M:%S} UTC) is behind the newest key's creation "
                        f"({newest.created_at:%Y-%m-%d %H:%M:%S} UTC): the servers and this command must share one clock"
                    )
                key = new_key(algorithm, moment)
                row = {
                    "kid": key.kid,
                    "serial": 1 if newest is None else newest.serial + 1,
                    "algorithm": algorithm,
                    "created_at": key.created,
                    "public_jwk": json.dumps(key.public_jwk(), sort_keys=True),
                    "private_key": encryption.seal(key),
                }
                connection.execute(insert(signing_keys), row)
                return key
        except sa_exc.IntegrityError:
            continue  # another instance took this serial meanwhile (a database without advisory locks): look again
    raise DatabaseUnavailable(f"the {place(engine)} changed {WRITE_ATTEMPTS} times while a key was being added")


def recorded_longest_token(engine: Engine) -> timedelta:
    """The longest token lifetime an instance has recorded (record_longest_token); 0 if none."""
    with reading(engine) as connection:
        seconds = connection.execute(
            select(signing_key_lifetimes.c.seconds).where(signing_key_lifetimes.c.name == LONGEST_TOKEN)
        ).scalar()
    return timedelta(seconds=seconds or 0)


def record_longest_token(engine: Engine, longest_token: timedelta) -> timedelta:
    """Remember that tokens may live longest_token, unless a longer lifetime is recorded already; the longer one.
    prune() and every instance keep retired keys that long, as keys.record_longest_token does for the folder."""
    seconds = math.ceil(longest_token.total_seconds())
    table = signing_key_lifetimes
    for _ in range(WRITE_ATTEMPTS):
        try:
            with writing(engine) as connection:
                _take_turns(connection)
                recorded = connection.execute(select(table.c.seconds).where(table.c.name == LONGEST_TOKEN)).scalar()
                if recorded is None:
                    connection.execute(insert(table), {"name": LONGEST_TOKEN, "seconds": seconds})
                elif recorded < seconds:
                    connection.execute(table.update().where(table.c.name == LONGEST_TOKEN).values(seconds=seconds))
                else:
                    return timedelta(seconds=recorded)
                return longest_token
        except sa_exc.IntegrityError:
            continue
    raise DatabaseUnavailable(f"the {place(engine)} changed {WRITE_ATTEMPTS} times while a lifetime was recorded")


def prune(engine: Engine, longest_token: timedelta, now: datetime | None = None) -> list[SigningKey]:
    """Delete the keys no valid token can name any more (kept for the longer of longest_token and the recorded
    lifetime), once, whichever machine runs it; the ones this call deleted. The signing key is never deleted."""
    longest_token = max(longest_token, recorded_longest_token(engine))
    with writing(engine) as connection:
        _take_turns(connection)
        ring = _ring([_public_key(engine, row) for row in _rows(connection)])
        if ring is None:
            return []
        moment = now or database_now(connection)
        gone = [key for key in ring.keys if ring.state(key, moment, longest_token) is KeyState.PRUNABLE]
        deleted = []
        for key in gone:
            if connection.execute(signing_keys.delete().where(signing_keys.c.kid == key.kid)).rowcount == 1:
                deleted.append(key)
        return deleted


class DatabaseKeySource:
    """keys.KeySource's twin on the database: ring() is the table's keys, read again when CHECK_EVERY_SECONDS have
    passed, so a rotation made from any machine reaches every instance's workers within about a second. A first key,
    of algorithm, is made when the table holds none (once, however many instances start together).

    While the database cannot be read, the keys read before are used and the failure is logged once: signing and
    verifying go on, and whatever else needs the database answers 503. At start-up (no keys yet) it raises."""

    def __init__(
        self,
        engine: Engine,
        encryption: KeyEncryption,
        algorithm: str,
        check_every: float = CHECK_EVERY_SECONDS,
        *,
        owns_engine: bool = False,
    ) -> None:
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise KeyStoreError(
                f"JWT_ALGORITHM {algorithm!r} uses no key pair: only {', '.join(ASYMMETRIC_ALGORITHMS)}"
            )
        self.engine, self.encryption, self.algorithm, self.check_every = engine, encryption, algorithm, check_every
        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}  # decrypted once each, by kid
        self._ring: KeyRing | None = None
        self._problem: str | None = None
        self._checked = -math.inf
        if owns_engine:
            weakref.finalize(self, engine.dispose)

    def ring(self) -> KeyRing:
        """The current keys; a first key of the algorithm is made when the table has none."""
        if time.monotonic() - self._checked < self.check_every and self._ring is not None:
            return self._ring
        # One thread reads the table; the others go on with the keys read before rather than wait on the database.
        if not self._lock.acquire(blocking=self._ring is None):
            return self._ring
        try:
            if time.monotonic() - self._checked >= self.check_every or self._ring is None:
                self._reload()
        finally:
            self._lock.release()
        return self._ring

    def record_longest_token(self, longest_token: timedelta) -> timedelta:
        return record_longest_token(self.engine, longest_token)

    def close(self) -> None:
        """Close the connections of an engine of its own (a finished command); a server's lasts its process."""
        self.engine.dispose()

    def _reload(self) -> None:
        try:
            self._read()
        except (KeyStoreError, DatabaseUnavailable) as error:
            if self._ring is None:
                raise  # at start-up: one line, and no server
            if str(error) != self._problem:
                logger.error("%s: going on with the keys read before", error)
            self._problem = str(error)
        else:
            if self._problem is not None:
                logger.warning("the signing keys can be read again from the %s", place(self.engine))
            self._problem = None
        self._checked = time.monotonic()

    def _read(self) -> None:
        with reading(self.engine) as connection:
            rows = _rows(connection)
        if not rows:
            rotate(self.engine, self.encryption, self.algorithm, first=True)
            with reading(self.engine) as connection:
                rows = _rows(connection)
        keys = [self._keys.get(row.kid) or _private_key(self.engine, row, self.encryption) for row in rows]
        self._keys = {key.kid: key for key in keys}
        self._ring = _ring(keys)


def key_source_for(settings, check_every: float = CHECK_EVERY_SECONDS) -> KeySource | DatabaseKeySource:
    """The signing keys the settings name: the database's table when DATABASE_URL is a database server (its tables
    made if missing; JWT_KEY_ENCRYPTION_KEY required), else the folder JWT_KEY_DIR. Nothing is read yet: ring()
    does, and raises KeyStoreError or StoreError in one line."""
    if not keys_in_database(settings.database_url):
        return KeySource(key_dir_path(), settings.jwt_algorithm, check_every)
    encryption = KeyEncryption(settings.jwt_key_encryption_key.get_secret_value())
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        create_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return DatabaseKeySource(engine, encryption, settings.jwt_algorithm, check_every, owns_engine=True)
