"""lesson_code/keys.py without a server: thumbprints, the key directory and its files, rotation and pruning, the
KeySource that workers share, and decode_signed_token against every way a signed token can be wrong."""

import importlib.util
import json
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk
from jose import jwt as jose_jwt
from jose.exceptions import JWKError, JWTError
from joserfc.jwk import ECKey, RSAKey

from lesson_code import jwks_verify, keys, tokens
from lesson_code.keys import KeyRing, KeySource, KeyState, KeyStoreError, SignedAccessTokens, SigningKey
from lesson_code.tokens import LEEWAY_SECONDS, TokenError
from tests.forge import FAR_FUTURE, b64url, forge, respelled
from tests.utils.keys_forge import hmac_signed, public_key_der, signed_with

ISSUER = "https://issuer.example"
AUDIENCE = "jwt-lesson-api"
MADE = datetime(2026, 11, 29, 9, 0, 0, tzinfo=timezone.utc)
LONGEST = timedelta(minutes=15)
LEEWAY = timedelta(seconds=LEEWAY_SECONDS)
MICROSECOND = timedelta(microseconds=1)
AHEAD = timedelta(seconds=keys.PUBLISH_AHEAD_SECONDS)  # a new key is published this long before it signs
CLAIMS = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": FAR_FUTURE}
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
# RFC 7638 section 3.1: the example RSA key (RFC 7517 appendix A.1) and its SHA-256 thumbprint.
RFC_7638_KEY = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknj"
    "hMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5"
    "hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC_7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
NOT_A_KEY_FILE = "is not a key file made by this code ({}); move it away"
HAS_FLOCK = importlib.util.find_spec("fcntl") is not None


@pytest.fixture(scope="module")
def es256() -> tuple[SigningKey, SigningKey]:
    """Two ES256 keys, made once for the module: k1, then k2 a minute later."""
    return keys.new_key("ES256", MADE), keys.new_key("ES256", MADE + timedelta(minutes=1))


@pytest.fixture(scope="module")
def rs256() -> SigningKey:
    return keys.new_key("RS256", MADE)


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


def by_kid(*signing_keys: SigningKey) -> dict[str, dict]:
    return {key.kid: key.public_jwk() for key in signing_keys}


def header_for(key: SigningKey, **changes) -> dict:
    return {"alg": key.algorithm, "typ": "JWT", "kid": key.kid, **changes}


def decoded(token: str, *signing_keys: SigningKey) -> dict:
    return jwks_verify.decode_signed_token(token, by_kid(*signing_keys), ISSUER, AUDIENCE)


def refusal(token: str, *signing_keys: SigningKey) -> str:
    with pytest.raises(TokenError) as caught:
        decoded(token, *signing_keys)
    return str(caught.value)


def store_error(action) -> str:
    with pytest.raises(KeyStoreError) as caught:
        action()
    return str(caught.value)


def key_file_names(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def key_file(directory: Path, key: SigningKey) -> Path:
    return directory / f"{key.kid}.json"


def write_raw(path: Path, text: str | bytes, mode: int = 0o600) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    path.chmod(mode)
    return path


def document(key: SigningKey, **jwk_changes) -> str:
    return json.dumps({"created": key.created.isoformat(), "key": {**key.jwk, **jwk_changes}})


# Thumbprints: a key's kid


def test_thumbprint_is_rfc_7638s_example():
    assert keys.thumbprint(RFC_7638_KEY) == RFC_7638_THUMBPRINT
    assert RSAKey.import_key(RFC_7638_KEY).thumbprint() == RFC_7638_THUMBPRINT


def test_a_made_keys_kid_is_the_thumbprint_joserfc_computes(es256, rs256):
    es_key, rs_key = es256[0], rs256
    assert es_key.kid == ECKey.import_key(es_key.public_jwk()).thumbprint()
    assert (
        es_key.kid == ECKey.import_key({name: es_key.jwk[name] for name in ("kty", "crv", "x", "y", "d")}).thumbprint()
    )
    assert rs_key.kid == RSAKey.import_key(rs_key.public_jwk()).thumbprint()
    assert (es_key.algorithm, es_key.jwk["crv"], rs_key.algorithm) == ("ES256", "P-256", "RS256")


def test_a_public_jwk_holds_the_public_members_only(es256, rs256):
    es_key = es256[0]
    assert es_key.public_jwk() == {
        "kty": "EC",
        "crv": "P-256",
        "x": es_key.jwk["x"],
        "y": es_key.jwk["y"],
        "kid": es_key.kid,
        "alg": "ES256",
        "use": "sig",
    }
    assert rs256.public_jwk() == {
        "kty": "RSA",
        "n": rs256.jwk["n"],
        "e": "AQAB",
        "kid": rs256.kid,
        "alg": "RS256",
        "use": "sig",
    }
    assert {"d"} <= set(es_key.jwk) and {"d", "p", "q", "dp", "dq", "qi"} <= set(rs256.jwk)


def test_no_key_is_made_for_an_algorithm_without_a_key_pair():
    with pytest.raises(ValueError) as caught:
        keys.new_key("HS256", MADE)
    assert str(caught.value) == "no key can be made for 'HS256': only ES256, RS256"


# The key directory


def test_the_key_directory_is_made_0700_and_its_key_files_0600(key_dir):
    key = keys.rotate(key_dir, "ES256", MADE)
    assert (mode_of(key_dir), sorted(os.listdir(key_dir))) == (0o700, [f"{key.kid}.json"])
    assert mode_of(key_file(key_dir, key)) == 0o600
    assert json.loads(key_file(key_dir, key).read_text()) == {"created": "2026-11-29T09:00:00+00:00", "key": key.jwk}
    ring = keys.load_keys(key_dir)
    assert [(loaded.kid, loaded.created, loaded.jwk) for loaded in ring.keys] == [(key.kid, MADE, key.jwk)]


def test_a_key_directory_that_does_not_exist_is_not_made_when_only_reading(key_dir):
    assert store_error(lambda: keys.load_keys(key_dir)) == f"{key_dir} does not exist: no key has been made yet"
    assert not key_dir.exists()
    assert keys.load_keys(key_dir, create=True) is None
    assert mode_of(key_dir) == 0o700


def test_a_key_directory_that_cannot_be_made_is_refused_in_one_line(tmp_path):
    inside_nothing = tmp_path / "no-such-folder" / "keys"
    assert store_error(lambda: keys.open_key_dir(inside_nothing)) == (
        f"{inside_nothing} cannot be made (No such file or directory); set JWT_KEY_DIR to a writable place"
    )


def test_a_symbolic_link_as_key_directory_is_refused(tmp_path, key_dir):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(0o700)
    key_dir.symlink_to(elsewhere)
    refused = f"{key_dir} is a symbolic link, so someone else may have chosen the keys; point JWT_KEY_DIR at a folder"
    assert store_error(lambda: keys.open_key_dir(key_dir)) == refused
    assert store_error(lambda: keys.rotate(key_dir, "ES256", MADE)) == refused
    assert store_error(lambda: KeySource(key_dir, "ES256").ring()) == refused
    assert os.listdir(elsewhere) == []


def test_a_file_as_key_directory_is_refused(key_dir):
    write_raw(key_dir, "not a folder")
    assert store_error(lambda: keys.load_keys(key_dir)) == f"{key_dir} is not a directory"


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o777, 0o710])
def test_a_key_directory_others_can_open_is_refused(key_dir, mode):
    key_dir.mkdir()
    key_dir.chmod(mode)
    assert store_error(lambda: keys.load_keys(key_dir)) == (
        f"{key_dir} can be read or changed by other users (mode {mode:04o}); run: chmod 700 {key_dir}"
    )
    assert store_error(lambda: KeySource(key_dir, "ES256").ring()).startswith(f"{key_dir} can be read or changed")
    assert os.listdir(key_dir) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give a file away")
def test_a_key_directory_of_another_user_is_refused(key_dir):
    key_dir.mkdir(0o700)
    os.chown(key_dir, 4321, -1)
    assert store_error(lambda: keys.load_keys(key_dir)) == (
        f"{key_dir} belongs to user 4321, not to you (user {os.getuid()})"
    )


# Key files


@pytest.fixture
def one_key(key_dir, es256) -> SigningKey:
    """es256's first key, written to key_dir."""
    keys.write_key(key_dir, es256[0])
    return es256[0]


def test_a_symbolic_link_as_key_file_is_refused(key_dir, one_key, es256, tmp_path):
    target = write_raw(tmp_path / "planted.json", document(es256[1]))
    link = key_file(key_dir, es256[1])
    link.symlink_to(target)
    assert store_error(lambda: keys.load_keys(key_dir)) == f"{link} is a symbolic link; delete it"


def test_a_fifo_as_key_file_is_refused_without_waiting_for_a_writer(key_dir, one_key, es256):
    fifo = key_file(key_dir, es256[1])
    os.mkfifo(fifo, 0o600)
    assert store_error(lambda: keys.load_keys(key_dir)) == f"{fifo} is not a regular file; delete it"


def test_a_directory_as_key_file_is_refused(key_dir, one_key, es256):
    folder = key_file(key_dir, es256[1])
    folder.mkdir(0o700)
    assert store_error(lambda: keys.load_keys(key_dir)) == f"{folder} is not a regular file; delete it"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_can_open_is_refused(key_dir, one_key, mode):
    path = key_file(key_dir, one_key)
    path.chmod(mode)
    assert store_error(lambda: keys.load_keys(key_dir)) == (
        f"{path} can be read or changed by other users (mode {mode:04o}); run: chmod 600 {path}"
    )


@pytest.mark.parametrize(
    ("contents", "reason"),
    [
        ("x" * (16 * 1024 + 1), "over 16384 bytes"),
        ("not json", "Expecting value: line 1 column 1 (char 0)"),
        (b"\x80{}", "'utf-8' codec can't decode byte 0x80 in position 0: invalid start byte"),
        ("[]", "TypeError list indices must be integers or slices, not str"),
        ('{"key": {}}', "KeyError 'created'"),
        ('{"created": "yesterday", "key": {}}', "Invalid isoformat string: 'yesterday'"),
    ],
    ids=["over 16 KB", "not JSON", "not UTF-8", "a list", "no created", "created not a time"],
)
def test_a_key_file_that_is_not_a_key_document_is_refused(key_dir, es256, contents, reason):
    keys.open_key_dir(key_dir)
    path = write_raw(key_file(key_dir, es256[0]), contents)
    assert store_error(lambda: keys.load_keys(key_dir)) == f"{path} {NOT_A_KEY_FILE.format(reason)}"


def test_a_key_file_of_exactly_16_kb_is_read(key_dir, es256):
    keys.open_key_dir(key_dir)
    text = document(es256[0])
    write_raw(key_file(key_dir, es256[0]), text + " " * (16 * 1024 - len(text)))
    assert [key.kid for key in keys.load_keys(key_dir).keys] == [es256[0].kid]


def test_a_key_file_whose_created_time_has_no_time_zone_is_refused(key_dir, es256):
    keys.open_key_dir(key_dir)
    naive = json.dumps({"created": "2026-11-29T09:00:00", "key": es256[0].jwk})
    path = write_raw(key_file(key_dir, es256[0]), naive)
    assert store_error(lambda: keys.load_keys(key_dir)) == (
        f"{path} {NOT_A_KEY_FILE.format('its creation time has no time zone')}"
    )


def test_a_key_file_holding_a_public_key_only_is_refused(key_dir, es256):
    keys.open_key_dir(key_dir)
    public_only = json.dumps({"created": MADE.isoformat(), "key": es256[0].public_jwk()})
    path = write_raw(key_file(key_dir, es256[0]), public_only)
    assert store_error(lambda: keys.load_keys(key_dir)) == (
        f"{path} {NOT_A_KEY_FILE.format('it holds no private key')}"
    )


def test_a_key_file_whose_kid_is_not_its_thumbprint_is_refused(key_dir, es256):
    keys.open_key_dir(key_dir)
    path = write_raw(key_dir / "my-key.json", document(es256[0], kid="my-key"))
    assert store_error(lambda: keys.load_keys(key_dir)) == (
        f"{path} {NOT_A_KEY_FILE.format('its kid is not its thumbprint, or not its file name')}"
    )


def test_a_key_file_named_after_another_kid_is_refused(key_dir, es256):
    keys.open_key_dir(key_dir)
    path = write_raw(key_file(key_dir, es256[1]), document(es256[0]))
    assert store_error(lambda: keys.load_keys(key_dir)) == (
        f"{path} {NOT_A_KEY_FILE.format('its kid is not its thumbprint, or not its file name')}"
    )


@pytest.mark.parametrize(
    "changes",
    [{"alg": "HS256"}, {"alg": "RS256"}, {"alg": None}],
    ids=["alg HS256", "alg of another key type", "no alg"],
)
def test_a_key_file_whose_alg_does_not_fit_is_refused(key_dir, es256, changes):
    keys.open_key_dir(key_dir)
    path = write_raw(key_file(key_dir, es256[0]), document(es256[0], **changes))
    assert store_error(lambda: keys.load_keys(key_dir)) == (
        f"{path} {NOT_A_KEY_FILE.format('alg must be one of ES256, RS256 and match kty')}"
    )


def test_a_key_file_whose_private_half_does_not_match_its_public_half_is_refused(key_dir, es256):
    keys.open_key_dir(key_dir)
    path = write_raw(key_file(key_dir, es256[0]), document(es256[0], d=es256[1].jwk["d"]))
    refused = store_error(lambda: keys.load_keys(key_dir))
    assert refused.startswith(f"{path} is not a key file made by this code (")
    assert refused.endswith("); move it away")


def test_hidden_drafts_and_other_files_are_not_key_files(key_dir, one_key):
    write_raw(key_dir / ".draft.json", "half a key", mode=0o644)
    write_raw(key_dir / f".{one_key.kid}.123.abcd1234", "{", mode=0o600)
    write_raw(key_dir / "README", "not a key", mode=0o644)
    assert [key.kid for key in keys.load_keys(key_dir).keys] == [one_key.kid]


def test_write_key_leaves_nothing_behind_when_writing_fails(key_dir, es256):
    unwritable = SigningKey({**es256[0].jwk, "x": object()}, MADE)  # json.dump fails half-way through the file
    with pytest.raises(TypeError):
        keys.write_key(key_dir, unwritable)
    assert os.listdir(key_dir) == []


def test_write_key_leaves_nothing_behind_when_the_rename_fails(key_dir, es256, monkeypatch):
    seen = []

    def failing_replace(source, target):
        seen.append((Path(source).name.startswith("."), json.loads(Path(source).read_text())["key"]["kid"]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keys.os, "replace", failing_replace)
    with pytest.raises(OSError):
        keys.write_key(key_dir, es256[0])
    assert seen == [(True, es256[0].kid)]  # the whole key was in the hidden draft before the rename
    assert os.listdir(key_dir) == []


# Rotation and pruning


def ring_of(*created: datetime) -> KeyRing:
    """A ring of ES256 keys (shuffled on purpose) made at the given times, as load_keys orders them."""
    made = [keys.new_key("ES256", moment) for moment in created]
    return KeyRing(tuple(sorted(made, key=lambda key: (key.created, key.kid))))


def test_rotation_orders_the_ring_oldest_first_and_each_new_key_signs_once_published_long_enough(key_dir):
    first = keys.rotate(key_dir, "ES256", MADE)
    third = keys.rotate(key_dir, "ES256", MADE + timedelta(hours=2))
    second = keys.new_key("RS256", MADE + timedelta(hours=1))  # written last, made in between (another clock)
    keys.write_key(key_dir, second)
    ring = keys.load_keys(key_dir)
    assert [key.kid for key in ring.keys] == [first.kid, second.kid, third.kid]
    assert [ring.signs_from(key) for key in ring.keys] == [
        MADE,  # the first key signs at once: no verifier can hold an older key set
        MADE + timedelta(hours=1) + AHEAD,
        MADE + timedelta(hours=2) + AHEAD,
    ]
    assert [ring.retired_at(key) for key in ring.keys] == [
        MADE + timedelta(hours=1) + AHEAD,
        MADE + timedelta(hours=2) + AHEAD,
        None,
    ]
    third_signs = MADE + timedelta(hours=2) + AHEAD
    moments = (MADE, MADE + timedelta(hours=1), MADE + timedelta(hours=2), third_signs - MICROSECOND, third_signs)
    assert [ring.signing_key(moment).kid for moment in moments] == [
        first.kid,
        first.kid,
        second.kid,
        second.kid,
        third.kid,
    ]


def test_key_states_change_exactly_at_their_boundaries():
    ring = ring_of(MADE, MADE + timedelta(hours=1))
    old, new = ring.keys
    made = MADE + timedelta(hours=1)
    retired = made + AHEAD  # when the new key starts signing
    boundary = retired + LONGEST + LEEWAY  # when no token the old key signed can be valid any more
    moments = (made, retired - MICROSECOND, retired, boundary - MICROSECOND, boundary, boundary + LONGEST)
    states = {moment: (ring.state(old, moment, LONGEST), ring.state(new, moment, LONGEST)) for moment in moments}
    assert states == {
        made: (KeyState.SIGNING, KeyState.PUBLISHED),
        retired - MICROSECOND: (KeyState.SIGNING, KeyState.PUBLISHED),
        retired: (KeyState.RETIRED, KeyState.SIGNING),
        boundary - MICROSECOND: (KeyState.RETIRED, KeyState.SIGNING),
        boundary: (KeyState.PRUNABLE, KeyState.SIGNING),
        boundary + LONGEST: (KeyState.PRUNABLE, KeyState.SIGNING),
    }
    assert [state.value for state in KeyState] == ["published", "signing", "retired", "prunable"]


def test_the_signing_key_is_never_prunable_however_old():
    ring = ring_of(MADE)
    assert ring.state(ring.signing, MADE + timedelta(days=3650), LONGEST) is KeyState.SIGNING
    assert ring.live(MADE + timedelta(days=3650), LONGEST) == [ring.signing]


def test_live_keys_and_the_jwks_hold_a_new_key_at_once_and_leave_out_the_prunable_ones():
    ring = ring_of(MADE, MADE + timedelta(hours=1), MADE + timedelta(hours=2))
    oldest, middle, newest = ring.keys
    just_made = MADE + timedelta(hours=2)  # newest published, not signing yet; oldest retired 1 h ago
    assert ring.jwks(just_made, LONGEST) == {"keys": [middle.public_jwk(), newest.public_jwk()]}
    now = just_made + AHEAD + LONGEST  # oldest retired 1 h 15 min ago, middle just LONGEST ago
    assert [key.kid for key in ring.live(now, LONGEST)] == [middle.kid, newest.kid]
    assert ring.jwks(now, LONGEST) == {"keys": [middle.public_jwk(), newest.public_jwk()]}
    later = now + LEEWAY
    assert ring.jwks(later, LONGEST) == {"keys": [newest.public_jwk()]}
    for published in ring.jwks(MADE, LONGEST)["keys"]:
        assert not set(published) & set(PRIVATE_MEMBERS), published


def test_prune_deletes_exactly_the_prunable_keys(key_dir):
    oldest = keys.rotate(key_dir, "ES256", MADE)
    middle = keys.rotate(key_dir, "ES256", MADE + timedelta(hours=1))
    newest = keys.rotate(key_dir, "ES256", MADE + timedelta(hours=2))
    boundary_of_middle = MADE + timedelta(hours=2) + AHEAD + LONGEST + LEEWAY
    assert [key.kid for key in keys.prune(key_dir, boundary_of_middle - MICROSECOND, LONGEST)] == [oldest.kid]
    assert sorted(os.listdir(key_dir)) == sorted(f"{key.kid}.json" for key in (middle, newest))
    gone = keys.prune(key_dir, boundary_of_middle, LONGEST)
    assert [key.kid for key in gone] == [middle.kid]
    assert os.listdir(key_dir) == [f"{newest.kid}.json"]
    assert keys.prune(key_dir, MADE + timedelta(days=3650), LONGEST) == []
    assert os.listdir(key_dir) == [f"{newest.kid}.json"]


def test_prune_deletes_nothing_before_any_key_is_prunable_nor_in_an_empty_directory(key_dir):
    keys.open_key_dir(key_dir)
    assert keys.prune(key_dir, MADE, LONGEST) == []
    first = keys.rotate(key_dir, "ES256", MADE)
    second = keys.rotate(key_dir, "ES256", MADE + timedelta(minutes=1))
    assert keys.prune(key_dir, MADE + timedelta(minutes=1) + AHEAD + LONGEST + LEEWAY - MICROSECOND, LONGEST) == []
    assert sorted(os.listdir(key_dir)) == sorted(f"{key.kid}.json" for key in (first, second))


# KeySource: what every worker of the service reads its keys through


class Clock:
    """keys.time with a monotonic() the test moves on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seconds = 1000.0
        monkeypatch.setattr(keys, "time", SimpleNamespace(monotonic=lambda: self.seconds))


def test_a_key_source_makes_a_first_key_on_first_use(key_dir):
    source = KeySource(key_dir, "ES256")
    assert not key_dir.exists()
    ring = source.ring()
    assert [key.kid for key in ring.keys] == [ring.signing.kid]
    assert (ring.signing.algorithm, mode_of(key_dir), key_file_names(key_dir)) == (
        "ES256",
        0o700,
        [f"{ring.signing.kid}.json"],
    )
    assert mode_of(key_file(key_dir, ring.signing)) == 0o600
    if HAS_FLOCK:  # the lock two workers starting together take, so that they make one first key, not two
        assert sorted(os.listdir(key_dir)) == [".lock", f"{ring.signing.kid}.json"]
        assert mode_of(key_dir / ".lock") == 0o600
    assert KeySource(key_dir, "ES256").ring().signing.kid == ring.signing.kid  # a second worker uses that key


@pytest.mark.skipif(not HAS_FLOCK, reason="the key folder is locked with flock, which this system lacks")
def test_a_key_source_refuses_a_lock_file_that_is_a_symbolic_link(key_dir, tmp_path):
    keys.open_key_dir(key_dir)
    (key_dir / ".lock").symlink_to(tmp_path / "elsewhere")
    assert store_error(KeySource(key_dir, "ES256").ring) == (
        f"{key_dir / '.lock'} cannot be opened (Too many levels of symbolic links); delete it"
    )
    assert not (tmp_path / "elsewhere").exists()
    assert key_file_names(key_dir) == []


def test_a_key_source_refuses_an_algorithm_without_a_key_pair(key_dir):
    assert (
        store_error(lambda: KeySource(key_dir, "HS256")) == "JWT_ALGORITHM 'HS256' uses no key pair: only ES256, RS256"
    )


def test_a_key_source_serves_its_cached_ring_between_checks_then_picks_up_a_rotation(key_dir, monkeypatch):
    clock = Clock(monkeypatch)
    worker = KeySource(key_dir, "ES256", check_every=1.0)
    first = worker.ring().signing
    rotated = keys.rotate(key_dir, "ES256", datetime.now(timezone.utc))  # `keys rotate`, or another worker
    loads = []
    load_keys = keys.load_keys
    monkeypatch.setattr(keys, "load_keys", lambda *args, **kwargs: loads.append(1) or load_keys(*args, **kwargs))
    clock.seconds += 0.999
    assert [key.kid for key in worker.ring().keys] == [first.kid]  # cached: the directory is not even listed
    clock.seconds += 0.001
    ring = worker.ring()
    assert [key.kid for key in ring.keys] == [first.kid, rotated.kid]
    assert (ring.signing_key(rotated.created).kid, ring.signing_key(rotated.created + AHEAD).kid) == (
        first.kid,
        rotated.kid,
    )
    assert len(loads) == 1
    clock.seconds += 5
    assert worker.ring() is ring  # nothing changed on disk: the names say so, no file is read again
    assert len(loads) == 1


def test_a_key_source_that_checks_every_time_sees_another_workers_first_key(key_dir):
    one, other = KeySource(key_dir, "ES256", check_every=0), KeySource(key_dir, "ES256", check_every=0)
    made = one.ring().signing
    assert other.ring().signing.kid == made.kid
    now = datetime.now(timezone.utc)
    rotated = keys.rotate(key_dir, "ES256", now)
    for worker in (one, other):
        ring = worker.ring()
        assert [key.kid for key in ring.keys] == [made.kid, rotated.kid]
        assert (ring.signing_key(now).kid, ring.signing_key(now + AHEAD).kid) == (made.kid, rotated.kid)
    keys.prune(key_dir, now + timedelta(days=1), LONGEST)
    assert [key.kid for key in one.ring().keys] == [rotated.kid]


def test_a_key_source_keeps_the_newest_key_signing_whatever_its_algorithm(key_dir):
    an_hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    keys.rotate(key_dir, "ES256", an_hour_ago)
    rs_key = keys.rotate(key_dir, "RS256", an_hour_ago + timedelta(minutes=1))
    source = KeySource(key_dir, "ES256", check_every=0)
    assert source.ring().signing.kid == rs_key.kid
    assert len(os.listdir(key_dir)) == 2


def test_a_key_source_stops_at_a_bad_key_file_in_one_line_at_start_up(key_dir, es256):
    keys.open_key_dir(key_dir)
    planted = write_raw(key_file(key_dir, es256[1]), document(es256[1]), mode=0o644)
    assert store_error(KeySource(key_dir, "ES256", check_every=0).ring) == (
        f"{planted} can be read or changed by other users (mode 0644); run: chmod 600 {planted}"
    )


def test_a_running_key_source_keeps_its_keys_through_a_bad_key_file_and_says_so_once(key_dir, es256, caplog):
    source = KeySource(key_dir, "ES256", check_every=0)
    ring = source.ring()
    planted = write_raw(key_file(key_dir, es256[1]), document(es256[1]), mode=0o644)
    assert [source.ring() for _ in range(3)] == [ring] * 3
    assert [record.getMessage() for record in caplog.records if record.name == "lesson_code.keys"] == [
        f"{planted} can be read or changed by other users (mode 0644); run: chmod 600 {planted}: going on with the "
        "keys read before"
    ]
    planted.chmod(0o600)
    assert {key.kid for key in source.ring().keys} == {ring.keys[0].kid, es256[1].kid}


# decode_signed_token: the one key the kid names, with that key's algorithm, for this issuer and audience


def test_good_es256_and_rs256_tokens_are_accepted(es256, rs256):
    k1, k2 = es256
    for key in (k1, k2, rs256):
        assert decoded(signed_with(key, header_for(key), CLAIMS), k1, k2, rs256) == CLAIMS


def test_an_aud_list_naming_us_among_others_is_accepted(es256):
    claims = {**CLAIMS, "aud": ["another-api", AUDIENCE]}
    assert decoded(signed_with(es256[0], header_for(es256[0]), claims), es256[0]) == claims


def test_a_token_from_signed_access_tokens_is_accepted_by_decode_signed_token(key_dir):
    source = KeySource(key_dir, "ES256", check_every=0)
    signed_tokens = SignedAccessTokens(source, ISSUER, AUDIENCE, LONGEST)
    token = signed_tokens.create({"sub": "alice", "sid": "s1", "scope": "me"})
    header = jose_jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "typ": "JWT", "kid": source.ring().signing.kid}
    claims = signed_tokens.decode(token)
    assert {name: claims[name] for name in ("sub", "sid", "scope", "iss", "aud")} == {
        "sub": "alice",
        "sid": "s1",
        "scope": "me",
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    assert claims["exp"] - claims["iat"] == LONGEST.total_seconds()
    assert jwks_verify.decode_signed_token(token, signed_tokens.public_keys(), ISSUER, AUDIENCE) == claims


def test_signed_access_tokens_honour_an_expires_delta_of_zero(key_dir):
    signed_tokens = SignedAccessTokens(KeySource(key_dir, "ES256", check_every=0), ISSUER, AUDIENCE, LONGEST)
    claims = jose_jwt.get_unverified_claims(signed_tokens.create({"sub": "alice"}, timedelta(0)))
    assert claims["exp"] == claims["iat"]  # timedelta(0) is a lifetime of none, not a missing one (notebook 02)


def test_the_kid_is_required_and_must_be_a_string(es256):
    k1 = es256[0]
    no_kid = {"alg": "ES256", "typ": "JWT"}
    assert refusal(signed_with(k1, no_kid, CLAIMS), k1) == "token names no key (kid)"
    for kid in (7, ["k"], None, {"kid": k1.kid}, True):
        assert refusal(signed_with(k1, header_for(k1, kid=kid), CLAIMS), k1) == "kid must be a string", kid


def test_an_unknown_kid_is_refused(es256):
    k1, k2 = es256
    assert refusal(signed_with(k2, header_for(k2), CLAIMS), k1) == "token names a key (kid) this service does not know"
    for kid in ("", "../../etc/passwd", "__proto__", "keys"):
        token = signed_with(k1, header_for(k1, kid=kid), CLAIMS)
        assert refusal(token, k1) == "token names a key (kid) this service does not know", kid


def test_an_alg_other_than_the_keys_own_is_refused(es256, rs256):
    k1 = es256[0]
    kid = k1.kid
    assert refusal(signed_with(k1, header_for(k1, alg="ES384"), CLAIMS), k1) == (
        f"algorithm 'ES384' is not the one of key {kid!r} ('ES256')"
    )
    assert refusal(signed_with(k1, header_for(k1, alg="RS256"), CLAIMS), k1, rs256) == (
        f"algorithm 'RS256' is not the one of key {kid!r} ('ES256')"
    )
    assert refusal(signed_with(rs256, header_for(rs256, alg="ES256"), CLAIMS), rs256) == (
        f"algorithm 'ES256' is not the one of key {rs256.kid!r} ('RS256')"
    )
    no_alg = {"typ": "JWT", "kid": kid}
    assert refusal(signed_with(k1, no_alg, CLAIMS), k1) == f"algorithm None is not the one of key {kid!r} ('ES256')"


@pytest.mark.parametrize(
    "secret",
    [b"", b"guess", b"the-issuers-secret-0123456789abcdef", None],
    ids=["empty key", "a guess", "a long secret", "public key DER"],
)
def test_an_hs256_token_is_refused_whatever_it_is_signed_with(es256, secret):
    k1 = es256[0]
    token = hmac_signed(public_key_der(k1) if secret is None else secret, header_for(k1, alg="HS256"), CLAIMS)
    assert refusal(token, k1) == f"algorithm 'HS256' is not the one of key {k1.kid!r} ('ES256')"


def test_alg_none_is_refused(es256):
    k1 = es256[0]
    for alg in ("none", "None", "NONE"):
        unsigned = forge(header_for(k1, alg=alg), CLAIMS)
        assert unsigned.endswith(".")
        assert refusal(unsigned, k1) == f"algorithm {alg!r} is not the one of key {k1.kid!r} ('ES256')"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"typ": "refresh+jwt"}, "typ 'refresh+jwt' is not an access token's ('JWT')"),
        ({"typ": "at+jwt"}, "typ 'at+jwt' is not an access token's ('JWT')"),
        ({"typ": None}, "typ None is not an access token's ('JWT')"),
        ({"crit": ["exp"]}, "header names critical extensions (crit), which are not supported"),
        ({"crit": []}, "header names critical extensions (crit), which are not supported"),
        ({"b64": False}, "unencoded payloads (b64 other than true) are not supported"),
    ],
    ids=["refresh typ", "at+jwt", "typ null", "crit", "crit empty", "b64 false"],
)
def test_a_header_that_asks_for_what_we_do_not_do_is_refused(es256, changes, reason):
    k1 = es256[0]
    assert refusal(signed_with(k1, header_for(k1, **changes), CLAIMS), k1) == reason


def test_a_header_without_typ_is_accepted(es256):
    k1 = es256[0]
    assert decoded(signed_with(k1, {"alg": "ES256", "kid": k1.kid}, CLAIMS), k1) == CLAIMS


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({**CLAIMS, "iss": "https://evil.example"}, f"issuer (iss) 'https://evil.example' is not {ISSUER!r}"),
        ({**CLAIMS, "iss": ISSUER + "/"}, f"issuer (iss) '{ISSUER}/' is not {ISSUER!r}"),
        ({**CLAIMS, "iss": [ISSUER]}, f"issuer (iss) [{ISSUER!r}] is not {ISSUER!r}"),
        ({name: value for name, value in CLAIMS.items() if name != "iss"}, f"issuer (iss) None is not {ISSUER!r}"),
        ({**CLAIMS, "aud": "another-api"}, f"audience (aud) does not name this API ({AUDIENCE!r})"),
        ({**CLAIMS, "aud": ["another-api", "a-third"]}, f"audience (aud) does not name this API ({AUDIENCE!r})"),
        ({**CLAIMS, "aud": []}, f"audience (aud) does not name this API ({AUDIENCE!r})"),
        ({**CLAIMS, "aud": 7}, "audience (aud) is missing, or not a string or a list of strings"),
        ({**CLAIMS, "aud": [AUDIENCE, 7]}, "audience (aud) is missing, or not a string or a list of strings"),
        ({**CLAIMS, "aud": {AUDIENCE: True}}, "audience (aud) is missing, or not a string or a list of strings"),
        (
            {name: value for name, value in CLAIMS.items() if name != "aud"},
            "audience (aud) is missing, or not a string or a list of strings",
        ),
        ({**CLAIMS, "exp": 1_000_000_000}, "token has expired"),
        ({name: value for name, value in CLAIMS.items() if name != "exp"}, 'missing required key "exp" among claims'),
        ({**CLAIMS, "exp": "soon"}, "exp, iat and nbf must be numbers of seconds"),
        ({**CLAIMS, "nbf": FAR_FUTURE - 1}, "token is not valid yet (nbf)"),
        ({**CLAIMS, "sub": ""}, "sub must be a non-empty string"),
        ({name: value for name, value in CLAIMS.items() if name != "sub"}, "sub must be a non-empty string"),
    ],
    ids=[
        "wrong iss",
        "iss with a slash",
        "iss a list",
        "missing iss",
        "wrong aud",
        "aud list without ours",
        "aud empty list",
        "aud a number",
        "aud list with a number",
        "aud an object",
        "missing aud",
        "expired",
        "missing exp",
        "exp text",
        "not valid yet",
        "sub empty",
        "missing sub",
    ],
)
def test_claims_that_are_not_for_us_or_no_longer_valid_are_refused(es256, claims, reason):
    k1 = es256[0]
    assert refusal(signed_with(k1, header_for(k1), claims), k1) == reason


def test_a_token_expired_only_within_the_leeway_is_still_accepted(es256):
    k1 = es256[0]
    now = 2_000_000_000
    token = signed_with(k1, header_for(k1), {**CLAIMS, "exp": now - LEEWAY_SECONDS})
    assert jwks_verify.decode_signed_token(token, by_kid(k1), ISSUER, AUDIENCE, now=now)["exp"] == now - LEEWAY_SECONDS
    with pytest.raises(TokenError, match="^token has expired$"):
        jwks_verify.decode_signed_token(token, by_kid(k1), ISSUER, AUDIENCE, now=now + 1)


def test_a_non_canonical_spelling_of_the_signature_is_refused(es256):
    k1 = es256[0]
    genuine = signed_with(k1, header_for(k1), CLAIMS)
    assert decoded(genuine, k1) == CLAIMS
    for flip in (1, 2, 3):  # a 64-byte signature is 86 characters, the last one holding 4 unused bits
        assert refusal(respelled(genuine, flip), k1) == "signature is not canonical base64url"


def test_a_tampered_payload_and_a_wrong_signature_are_refused(es256):
    k1, k2 = es256
    genuine = signed_with(k1, header_for(k1), CLAIMS)
    forged_payload = signed_with(k1, header_for(k1), {**CLAIMS, "sub": "admin"}).split(".")[1]
    head, _, signature = genuine.split(".")
    assert refusal(f"{head}.{forged_payload}.{signature}", k1) == "Signature verification failed"
    assert refusal(f"{head}.{genuine.split('.')[1]}.", k1) == "Signature verification failed"


@pytest.mark.parametrize("length", [1, 63, 65, 256, 512])
def test_a_signature_of_the_wrong_length_is_refused(es256, rs256, length):
    for key in (es256[0], rs256):
        head, payload, _ = signed_with(key, header_for(key), CLAIMS).split(".")
        assert refusal(f"{head}.{payload}.{b64url(bytes([1]) * length)}", key) == "Signature verification failed"


def test_a_token_naming_k1_but_signed_with_k2_is_refused_though_python_jose_alone_accepts_it(es256):
    k1, k2 = es256
    named_k1_signed_by_k2 = signed_with(k2, header_for(k1), CLAIMS)
    # python-jose, given the whole JWK Set, tries every key whatever the kid says: k2 verifies it.
    as_jose_reads_it = jose_jwt.decode(
        named_k1_signed_by_k2,
        {"keys": [k1.public_jwk(), k2.public_jwk()]},
        algorithms=["ES256"],
        audience=AUDIENCE,
        issuer=ISSUER,
    )
    assert as_jose_reads_it == CLAIMS
    # Ours takes the one key the kid names: k1, which did not sign it.
    assert refusal(named_k1_signed_by_k2, k1, k2) == "Signature verification failed"


def test_a_key_set_of_mixed_key_types_makes_python_jose_raise_jwkerror_and_ours_a_token_error(es256, rs256):
    k1, k2 = es256
    mixed = {"keys": [rs256.public_jwk(), k1.public_jwk()]}
    good = signed_with(k1, header_for(k1), CLAIMS)
    with pytest.raises(JWKError) as caught:
        jose_jwt.decode(good, mixed, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER)
    assert not isinstance(caught.value, JWTError)  # a handler catching JWTError alone would answer 500
    assert str(caught.value) == "Incorrect key type. Expected: 'EC', Received: RSA"
    ours = jwks_verify.usable_keys(mixed)
    assert jwks_verify.decode_signed_token(good, ours, ISSUER, AUDIENCE) == CLAIMS
    with pytest.raises(TokenError) as refused:
        jwks_verify.decode_signed_token(signed_with(k2, header_for(k1), CLAIMS), ours, ISSUER, AUDIENCE)
    assert str(refused.value) == "Signature verification failed"
    with pytest.raises(TokenError) as refused:
        jwks_verify.decode_signed_token(signed_with(k1, header_for(rs256, alg="ES256"), CLAIMS), ours, ISSUER, AUDIENCE)
    assert str(refused.value) == f"algorithm 'ES256' is not the one of key {rs256.kid!r} ('RS256')"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "a token is three base64url parts joined by dots"),
        ("a.b", "a token is three base64url parts joined by dots"),
        ("x" * 5000, "token is longer than 4096 characters"),
        ("bm90IGpzb24.e30.", "header is not readable: Error decoding token headers"),
    ],
    ids=["empty", "two parts", "too long", "header not JSON"],
)
def test_garbage_is_refused_in_one_line(es256, token, reason):
    assert refusal(token, es256[0]) == reason


# Algorithm confusion, CVE-2024-33663: the issuer's public key as an HMAC secret


def test_algorithm_confusion_with_the_public_key_in_der_form(es256, key_dir):
    """python-jose 3.5.0 refuses PEM, OpenSSH and JWK public keys as HMAC secrets, but still takes DER bytes: a
    naive verifier that passes the public key in DER form and pins no algorithm accepts an HS256 token anyone can
    make from the published key. Ours takes the algorithm from the key the kid names, never from the token."""
    source = KeySource(key_dir, "ES256", check_every=0)
    issuer_key = source.ring().signing
    der = public_key_der(issuer_key)
    forged = hmac_signed(der, header_for(issuer_key, alg="HS256"), {**CLAIMS, "sub": "admin"})

    naive = jose_jwt.decode(forged, der, audience=AUDIENCE, issuer=ISSUER)  # no algorithms=: the token's alg rules
    assert naive["sub"] == "admin"

    expected = f"algorithm 'HS256' is not the one of key {issuer_key.kid!r} ('ES256')"
    with pytest.raises(TokenError) as caught:
        jwks_verify.decode_signed_token(forged, by_kid(issuer_key), ISSUER, AUDIENCE)
    assert str(caught.value) == expected
    with pytest.raises(TokenError) as caught:
        SignedAccessTokens(source, ISSUER, AUDIENCE, LONGEST).decode(forged)
    assert str(caught.value) == expected
    with pytest.raises(TokenError) as caught:  # nor does the HS256 verifier take it: the secret is not the public key
        tokens.decode_access_token(forged)
    assert str(caught.value) == "Signature verification failed"


# usable_keys: what a verifier keeps of a fetched JWK Set


def test_usable_keys_keeps_signing_keys_by_kid_with_their_public_members_only(es256, rs256):
    k1 = es256[0]
    fetched = {"keys": [k1.jwk, {**rs256.jwk, "use": "sig", "key_ops": ["verify"], "x5c": ["MIIB"]}]}
    assert jwks_verify.usable_keys(fetched) == {
        k1.kid: {"kty": "EC", "crv": "P-256", "x": k1.jwk["x"], "y": k1.jwk["y"], "kid": k1.kid, "alg": "ES256"},
        rs256.kid: {"kty": "RSA", "n": rs256.jwk["n"], "e": "AQAB", "kid": rs256.kid, "alg": "RS256"},
    }
    for public in jwks_verify.usable_keys(fetched).values():
        assert not set(public) & set(PRIVATE_MEMBERS)


def test_usable_keys_leaves_out_keys_it_cannot_pin(es256, rs256):
    k1, k2 = es256
    public = k1.public_jwk()
    without = {name: value for name, value in public.items() if name != "kid"}
    unusable = [
        without,
        {**public, "kid": 7},
        {name: value for name, value in public.items() if name != "alg"},
        {**public, "alg": "HS256"},
        {**public, "alg": "RS256"},
        {**rs256.public_jwk(), "alg": "ES256"},
        {**public, "use": "enc"},
        {**public, "x": None},
        {name: value for name, value in public.items() if name != "y"},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
        "not a key",
        None,
    ]
    assert jwks_verify.usable_keys({"keys": [*unusable, k2.public_jwk()]}) == {
        k2.kid: {name: value for name, value in k2.public_jwk().items() if name != "use"}
    }


@pytest.mark.parametrize("jwks", [None, [], "keys", {}, {"keys": None}, {"keys": "x"}, {"keys": {"a": 1}}])
def test_usable_keys_of_something_that_is_not_a_jwk_set_is_empty(jwks):
    assert jwks_verify.usable_keys(jwks) == {}


def test_signed_access_tokens_refuse_a_lifetime_longer_than_retired_keys_are_kept(tmp_path):
    tokens = keys.SignedAccessTokens(keys.KeySource(tmp_path / "keys", "ES256"), "iss", "aud", timedelta(minutes=15))
    with pytest.raises(ValueError, match=r"^a token may live at most 0:15:00, as long as a retired key is kept$"):
        tokens.create({"sub": "alice"}, timedelta(minutes=15, seconds=1))
    claims = tokens.decode(tokens.create({"sub": "alice"}, timedelta(minutes=15)))
    assert claims["exp"] - claims["iat"] == 900


def test_rotate_refuses_a_clock_behind_the_newest_key(key_dir):
    newest = keys.rotate(key_dir, "ES256", MADE + timedelta(hours=1))
    with pytest.raises(keys.KeyStoreError) as refused:
        keys.rotate(key_dir, "ES256", MADE)
    assert str(refused.value) == (
        "this clock (2026-11-29 09:00:00 UTC) is behind the newest key's creation (2026-11-29 10:00:00 UTC): the "
        "servers and this command must share one clock"
    )
    assert [key.kid for key in keys.load_keys(key_dir).keys] == [newest.kid]


# What the security review of issue 12 found


def p384_labelled_es256() -> SigningKey:
    pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private_jwk = jwk.construct(pem, "ES384").to_dict()
    private_jwk.update({"alg": "ES256", "use": "sig"})
    private_jwk["kid"] = keys.thumbprint(private_jwk)
    return SigningKey(private_jwk, MADE)


def weak_rs256() -> SigningKey:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(  # noqa: S505  (on purpose)
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private_jwk = jwk.construct(pem, "RS256").to_dict()
    private_jwk.update({"alg": "RS256", "use": "sig"})
    private_jwk["kid"] = keys.thumbprint(private_jwk)
    return SigningKey(private_jwk, MADE)


@pytest.mark.parametrize(
    "weak, reason",
    [
        (p384_labelled_es256, "ES256 needs the curve P-256, not 'P-384'"),
        (weak_rs256, "RS256 needs a modulus of 2048 bits or more"),
    ],
)
def test_a_key_weaker_than_its_algorithm_needs_is_refused(key_dir, weak, reason):
    key = weak()
    keys.write_key(key_dir, key)
    path = key_file(key_dir, key)
    assert store_error(lambda: keys.load_keys(key_dir)) == f"{path} {NOT_A_KEY_FILE.format(reason)}"


def test_a_key_made_more_than_a_day_ahead_of_this_clock_is_refused(key_dir, es256):
    future = SigningKey(es256[0].jwk, datetime.now(timezone.utc) + timedelta(days=1, minutes=1))
    keys.write_key(key_dir, future)
    path = key_file(key_dir, future)
    assert store_error(lambda: keys.load_keys(key_dir)) == (
        f"{path} {NOT_A_KEY_FILE.format('it was made more than a day in the future: a clock is wrong')}"
    )


def test_a_key_file_nested_too_deeply_is_one_line(key_dir, es256):
    keys.open_key_dir(key_dir)
    path = write_raw(key_file(key_dir, es256[0]), "[" * 16_000)
    message = store_error(lambda: keys.load_keys(key_dir))
    assert message.startswith(f"{path} is not a key file made by this code (RecursionError ")
    assert message.endswith("); move it away")


def test_a_key_file_deleted_between_listing_and_reading_is_skipped(key_dir, monkeypatch):
    kept = keys.rotate(key_dir, "ES256", MADE)
    names = keys._key_file_names
    monkeypatch.setattr(keys, "_key_file_names", lambda directory: [*names(directory), "pruned-meanwhile.json"])
    assert [key.kid for key in keys.load_keys(key_dir).keys] == [kept.kid]


def test_prune_keeps_retired_keys_for_the_longest_lifetime_a_server_recorded(key_dir, es256):
    first = keys.rotate(key_dir, "ES256", MADE)
    keys.rotate(key_dir, "ES256", MADE + timedelta(hours=1))
    tokens = keys.SignedAccessTokens(KeySource(key_dir, "ES256"), ISSUER, AUDIENCE, timedelta(minutes=60))
    assert tokens.keys_kept_for == timedelta(minutes=60)
    assert (key_dir / keys.LIFETIME_FILE).read_text() == "3600\n"
    assert mode_of(key_dir / keys.LIFETIME_FILE) == 0o600
    retired = MADE + timedelta(hours=1) + AHEAD
    assert keys.prune(key_dir, retired + LONGEST + LEEWAY, LONGEST) == []  # a command run with the default 15
    assert [key.kid for key in keys.prune(key_dir, retired + timedelta(minutes=60) + LEEWAY, LONGEST)] == [first.kid]


def test_a_shorter_lifetime_after_a_restart_keeps_the_longer_one_recorded(key_dir):
    source = KeySource(key_dir, "ES256")
    long_lived = keys.SignedAccessTokens(source, ISSUER, AUDIENCE, timedelta(minutes=60))
    short_lived = keys.SignedAccessTokens(source, ISSUER, AUDIENCE, timedelta(minutes=5))
    assert (long_lived.keys_kept_for, short_lived.keys_kept_for) == (timedelta(minutes=60), timedelta(minutes=60))
    assert short_lived.longest_token == timedelta(minutes=5)
    assert keys.recorded_longest_token(key_dir) == timedelta(minutes=60)


@pytest.mark.parametrize("text", ["soon\n", "-5\n", "99999999999\n"])
def test_a_garbled_lifetime_record_is_refused_in_one_line(key_dir, text):
    keys.open_key_dir(key_dir)
    path = write_raw(key_dir / keys.LIFETIME_FILE, text)
    assert store_error(lambda: keys.recorded_longest_token(key_dir)) == (
        f"{path} does not hold a number of seconds; delete it"
    )


def test_usable_keys_leaves_out_keys_weaker_than_their_algorithm_needs(es256, rs256):
    weak = [
        p384_labelled_es256().public_jwk(),
        weak_rs256().public_jwk(),
        {**rs256.public_jwk(), "n": "!!", "kid": "x"},
    ]
    good = [es256[0].public_jwk(), rs256.public_jwk()]
    assert sorted(jwks_verify.usable_keys({"keys": [*weak, *good]})) == sorted(key["kid"] for key in good)
