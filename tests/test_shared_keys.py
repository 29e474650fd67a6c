"""lesson_code/key_store.py: ES256 signing keys that every instance shares through PostgreSQL (a throwaway cluster),
their private halves encrypted at rest; two `python -m lesson_code serve` processes, each with its own home, working
folder, key folder and secret file, sign and verify each other's tokens, publish one key set and follow one
rotation. Skips locally without PostgreSQL, fails in CI."""

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key
from jose import jwt
from jose.utils import base64url_decode
from sqlalchemy import inspect, select, update

from lesson_code import cli, key_store, keys, store
from lesson_code.key_store import DatabaseKeySource, KeyEncryption, signing_keys
from lesson_code.keys import KeySource, KeyState, KeyStoreError, SignedAccessTokens
from lesson_code.settings import get_settings
from lesson_code.tokens import secret_bits
from tests.utils.postgres import PostgresServer
from tests.utils.threads import in_threads
from tests.utils.uvicorn_process import REPO_ROOT, free_port, stop, wait_until_answering

AHEAD = timedelta(seconds=keys.PUBLISH_AHEAD_SECONDS)
LONGEST = timedelta(minutes=15)  # ACCESS_TOKEN_MINUTES's default
ISSUER, AUDIENCE = "http://127.0.0.1:8000", "jwt-lesson-api"
INSTANCES = 6

SEEN_TIMEOUT = 60  # generous bounds on waits that end as soon as their condition holds: no test needs speed
ALICE = {"username": "alice", "email": "alice@example.com", "full_name": "Alice Liddell", "disabled": False}


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> Iterator[str]:
    with postgres_server.database() as url:
        yield url


@pytest.fixture
def engine(database_url: str):
    engine = store.make_engine(database_url, pool_size=2)
    key_store.create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def encryption_key() -> str:
    return secrets.token_hex(32)


@pytest.fixture
def encryption(encryption_key: str) -> KeyEncryption:
    return KeyEncryption(encryption_key)


@pytest.fixture
def in_database(database_url: str, encryption_key: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """This process's settings: ES256 keys in the test database."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("JWT_ALGORITHM", "ES256")
    monkeypatch.setenv("JWT_KEY_ENCRYPTION_KEY", encryption_key)
    monkeypatch.delenv("ACCESS_TOKEN_MINUTES", raising=False)
    get_settings.cache_clear()
    return database_url


def rows(engine) -> list:
    with engine.connect() as connection:
        return connection.execute(select(signing_keys).order_by(signing_keys.c.serial)).all()


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    status = cli.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


# The table, created once, encrypted


def test_instances_starting_together_make_one_first_key(database_url, encryption):
    engines = [store.make_engine(database_url, pool_size=1) for _ in range(INSTANCES)]
    try:

        def start(index: int) -> str:
            key_store.create_schema(engines[index])
            return DatabaseKeySource(engines[index], encryption, "ES256").ring().signing.kid

        kids = in_threads(INSTANCES, start)
        assert len(set(kids)) == 1 and isinstance(kids[0], str), kids
        assert [(row.kid, row.serial, row.algorithm) for row in rows(engines[0])] == [(kids[0], 1, "ES256")]
    finally:
        for engine in engines:
            engine.dispose()


def test_the_key_tables_are_their_own(engine):
    assert sorted(inspect(engine).get_table_names()) == ["signing_key_lifetimes", "signing_keys"]


def test_the_private_key_column_holds_no_clear_key(engine, encryption):
    key = DatabaseKeySource(engine, encryption, "ES256").ring().signing
    [row] = rows(engine)
    raw = bytes(row.private_key)
    private_d = key.jwk["d"]
    assert b'"d"' not in raw and private_d.encode() not in raw
    assert base64url_decode(private_d.encode()) not in raw  # nor its raw bytes
    for parse in (
        json.loads,
        lambda data: load_pem_private_key(data, None),
        lambda data: load_der_private_key(data, None),
    ):
        with pytest.raises(ValueError):
            parse(raw)
    assert b"PRIVATE KEY" not in raw
    public = json.loads(row.public_jwk)
    assert "d" not in public and public == key.public_jwk()
    assert encryption.seal(key) != encryption.seal(key)  # a fresh nonce each time
    assert json.loads(encryption.open(raw, row.kid, row.algorithm)) == key.jwk


def test_a_sealed_key_moved_to_another_row_is_refused(engine, encryption):
    first = DatabaseKeySource(engine, encryption, "ES256").ring().signing
    second = key_store.rotate(engine, encryption, "ES256")
    with engine.begin() as connection:
        sealed = connection.execute(select(signing_keys.c.private_key).where(signing_keys.c.kid == first.kid)).scalar()
        connection.execute(update(signing_keys).where(signing_keys.c.kid == second.kid).values(private_key=sealed))
    with pytest.raises(KeyStoreError) as refused:
        DatabaseKeySource(engine, encryption, "ES256").ring()
    assert str(refused.value) == (
        f"the signing key {second.kid} in the {key_store.place(engine)} cannot be decrypted with "
        "JWT_KEY_ENCRYPTION_KEY: it is not the key the signing keys were encrypted with (every instance needs the "
        "same one), or the row was altered"
    )


def test_a_token_of_one_instance_is_accepted_by_another_and_both_publish_one_key_set(database_url, encryption):
    with ExitStack() as stack:
        instances = []
        for _ in range(2):
            engine = store.make_engine(database_url, pool_size=1)
            stack.callback(engine.dispose)
            key_store.create_schema(engine)
            source = DatabaseKeySource(engine, encryption, "ES256", check_every=0)
            instances.append(SignedAccessTokens(source, ISSUER, AUDIENCE, LONGEST))
        one, other = instances
        token = one.create({"sub": "alice"})
        assert other.decode(token)["sub"] == "alice"
        assert one.jwks() == other.jwks() and len(one.jwks()["keys"]) == 1


# Rotation and pruning, once for every instance


class Clock:
    """key_store.time.monotonic, as the test sets it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seconds = 1000.0
        monkeypatch.setattr(key_store, "time", SimpleNamespace(monotonic=lambda: self.seconds))


def test_a_rotation_from_the_command_line_reaches_every_instance_within_a_check_and_signs_after_publishing(
    in_database, engine, encryption, monkeypatch, capsys
):
    clock = Clock(monkeypatch)
    instances = [DatabaseKeySource(engine, encryption, "ES256") for _ in range(2)]  # check_every: 1 s, as served
    first = [source.ring() for source in instances][0].signing
    status, out, err = run_cli(capsys, "keys", "rotate")
    assert (status, err) == (0, "")
    [new_row] = [row for row in rows(engine) if row.kid != first.kid]
    signs_from = new_row.created_at + AHEAD
    where = key_store.place(engine)
    assert out == (
        f"New key {new_row.kid} (ES256) in the {where}: published now, signs from {cli.when(signs_from)}\n"
        f"Then {first.kid} is retired: its tokens are accepted, and it is published, until "
        f"{cli.when(signs_from + LONGEST + timedelta(seconds=keys.LEEWAY_SECONDS))}\n"
    )
    clock.seconds += 0.999
    assert [[key.kid for key in source.ring().keys] for source in instances] == [[first.kid]] * 2  # cached
    clock.seconds += 0.001
    for ring in [source.ring() for source in instances]:  # within CHECK_EVERY_SECONDS: published by both...
        assert [key.kid for key in ring.keys] == [first.kid, new_row.kid]
        new = ring.keys[1]
        assert ring.state(new, new_row.created_at, LONGEST) is KeyState.PUBLISHED  # ...before it signs
        assert ring.signing_key(signs_from - timedelta(microseconds=1)).kid == first.kid
        assert ring.signing_key(signs_from).kid == new_row.kid
        assert ring.state(ring.keys[0], signs_from, LONGEST) is KeyState.RETIRED
    assert cli.main(["keys", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0] == f"Keys in the {where}, oldest first:" and len(listing) == 4


def test_prune_deletes_each_prunable_key_once_whichever_machines_run_it(in_database, engine, encryption, capsys):
    now = datetime.now(timezone.utc)
    old = key_store.rotate(engine, encryption, "ES256", now - timedelta(hours=2))
    middle = key_store.rotate(engine, encryption, "ES256", now - timedelta(hours=1))
    newest = key_store.rotate(engine, encryption, "ES256", now - timedelta(minutes=1))
    # old retired 1 h ago (more than 15 min and the leeway): prunable; middle retired 1 min ago: still published
    engines = [store.make_engine(in_database, pool_size=1) for _ in range(4)]
    try:
        results = in_threads(4, lambda index: key_store.prune(engines[index], LONGEST))
    finally:
        for other in engines:
            other.dispose()
    assert sorted(len(result) for result in results) == [0, 0, 0, 1], results
    assert [key.kid for result in results for key in result] == [old.kid]
    assert [row.kid for row in rows(engine)] == [middle.kid, newest.kid]
    assert run_cli(capsys, "keys", "prune") == (
        0,
        "Nothing to prune: every retired key may still have valid tokens\n",
        "",
    )


def test_prune_keeps_retired_keys_for_the_longest_lifetime_an_instance_recorded(
    in_database, engine, encryption, capsys
):
    now = datetime.now(timezone.utc)
    old = key_store.rotate(engine, encryption, "ES256", now - timedelta(minutes=40))
    key_store.rotate(engine, encryption, "ES256", now - timedelta(minutes=30))
    source = DatabaseKeySource(engine, encryption, "ES256")
    assert SignedAccessTokens(source, ISSUER, AUDIENCE, timedelta(hours=1)).keys_kept_for == timedelta(hours=1)
    assert SignedAccessTokens(source, ISSUER, AUDIENCE, LONGEST).keys_kept_for == timedelta(hours=1)
    assert run_cli(capsys, "keys", "prune")[1] == "Nothing to prune: every retired key may still have valid tokens\n"
    key_store.record_longest_token(engine, timedelta(0))  # never shortens it
    assert key_store.recorded_longest_token(engine) == timedelta(hours=1)
    assert [key.kid for key in key_store.prune(engine, LONGEST, now + timedelta(hours=1))] == [old.kid]


def test_a_running_instance_keeps_its_keys_while_the_database_is_down(postgres_server, engine, encryption, caplog):
    source = DatabaseKeySource(engine, encryption, "ES256", check_every=0)
    ring = source.ring()
    postgres_server.stop()
    try:
        assert source.ring() is ring and source.ring() is ring
    finally:
        postgres_server.start()
    assert [record.levelname for record in caplog.records].count("ERROR") == 1  # once per problem
    assert "going on with the keys read before" in caplog.records[0].getMessage()


# The choice of store, and the settings


def test_sqlite_keeps_the_key_folder(tmp_path, monkeypatch):
    from lesson_code.service import access_tokens_for

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'lesson.db'}")
    monkeypatch.setenv("JWT_ALGORITHM", "ES256")
    monkeypatch.setenv("JWT_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.delenv("JWT_KEY_ENCRYPTION_KEY", raising=False)
    get_settings.cache_clear()
    tokens = access_tokens_for(get_settings())
    assert type(tokens.source) is KeySource
    assert [path.stem for path in (tmp_path / "keys").glob("*.json")] == [tokens.source.ring().signing.kid]
    assert not (tmp_path / "lesson.db").exists()


def test_postgresql_keeps_the_keys_in_its_table_and_no_folder(in_database, tmp_path, monkeypatch, engine):
    from lesson_code.service import access_tokens_for

    monkeypatch.setenv("JWT_KEY_DIR", str(tmp_path / "keys"))
    tokens = access_tokens_for(get_settings())
    assert type(tokens.source) is DatabaseKeySource
    assert [row.kid for row in rows(engine)] == [tokens.source.ring().signing.kid]
    assert not (tmp_path / "keys").exists()
    tokens.source.close()


# Two `python -m lesson_code serve` processes on one PostgreSQL


def machine_environment(folder: Path, **values: str) -> dict[str, str]:
    """A machine of its own: home, working folder, key folder and secret file; the test's secret and settings."""
    for name in ("home", "work"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    inherited = {name: value for name, value in os.environ.items() if not name.startswith(("JWT_", "JWKS_"))}
    return {
        **inherited,
        "PYTHONPATH": str(REPO_ROOT),
        "HOME": str(folder / "home"),
        "JWT_SECRET_KEY": os.environ["JWT_SECRET_KEY"],  # the environment every instance is given
        "JWT_SECRET_FILE": str(folder / "home" / ".jwt_secret"),
        "JWT_KEY_DIR": str(folder / "keys"),
        **values,
    }


def lesson_code(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lesson_code", *args]
    return subprocess.run(command, env=env, cwd=env["HOME"], capture_output=True, text=True, timeout=120, check=False)


@contextmanager
def serving(envs: list[dict[str, str]]) -> Iterator[list[str]]:
    """`python -m lesson_code serve` for each environment, all started at once; their base URLs; stopped after."""
    processes, urls = [], []
    try:
        for env in envs:
            port = free_port()
            output = open(Path(env["HOME"]).parent / "serve.out", "wb")  # noqa: SIM115  (closed below)
            command = [sys.executable, "-m", "lesson_code", "serve", "--port", str(port)]
            work = Path(env["HOME"]).parent / "work"
            processes.append(
                (subprocess.Popen(command, env=env, cwd=work, stdout=output, stderr=subprocess.STDOUT), output)
            )
            urls.append(f"http://127.0.0.1:{port}")
        for (process, output), url in zip(processes, urls, strict=True):
            log = Path(output.name)
            wait_until_answering(
                f"{url}/openapi.json", process, lambda log=log: log.read_text(errors="replace")[-3000:]
            )
        yield urls
    finally:
        for process, output in processes:
            stop(process)
            output.close()


def log_in(base_url: str) -> dict:
    response = httpx.post(f"{base_url}/token", data={"username": "alice", "password": "wonderland"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def me(base_url: str, tokens: dict) -> httpx.Response:
    return httpx.get(f"{base_url}/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=30)


def key_set(base_url: str) -> dict:
    return httpx.get(f"{base_url}/.well-known/jwks.json", timeout=30).json()


def kid_of(tokens: dict) -> str:
    return jwt.get_unverified_header(tokens["access_token"])["kid"]


def test_two_instances_share_one_key_set_sign_for_each_other_and_follow_one_rotation(
    database_url, encryption_key, engine, tmp_path
):
    settings = {
        "DATABASE_URL": database_url,
        "JWT_ALGORITHM": "ES256",
        "JWT_KEY_ENCRYPTION_KEY": encryption_key,
        "LOGIN_ATTEMPTS_PER_ACCOUNT": "10000/minute",
        "LOGIN_ATTEMPTS_PER_CLIENT": "10000/minute",
        "MAX_SESSIONS_PER_USER": "1000",
    }
    envs = [machine_environment(tmp_path / name, **settings) for name in ("one", "two")]
    with serving(envs) as (one, two):
        [first] = [row.kid for row in rows(engine)]  # both started at once: one first key
        assert key_set(one) == key_set(two) and [key["kid"] for key in key_set(one)["keys"]] == [first]
        assert not any((tmp_path / name / "keys").exists() for name in ("one", "two"))  # no key on any disk

        from_one, from_two = log_in(one), log_in(two)
        assert kid_of(from_one) == kid_of(from_two) == first
        assert me(two, from_one).json() == ALICE and me(one, from_two).json() == ALICE
        refreshed = httpx.post(
            f"{two}/token", data={"grant_type": "refresh_token", "refresh_token": from_one["refresh_token"]}, timeout=30
        )
        assert refreshed.status_code == 200 and me(one, refreshed.json()).json() == ALICE

        rotation = lesson_code(envs[1], "keys", "rotate")  # from the second machine's command line
        assert rotation.returncode == 0, rotation.stderr
        [new_row] = [row for row in rows(engine) if row.kid != first]
        assert rotation.stdout.split()[2] == new_row.kid
        signs_from = new_row.created_at + AHEAD
        deadline = time.monotonic() + SEEN_TIMEOUT
        while not all(new_row.kid in {key["kid"] for key in key_set(url)["keys"]} for url in (one, two)):
            assert time.monotonic() < deadline, "an instance never published the rotated key"
            time.sleep(0.1)
        assert datetime.now(timezone.utc) < signs_from, "published by both only after it started signing"
        assert kid_of(log_in(one)) == kid_of(log_in(two)) == first  # not signing yet: published first

        time.sleep(max(0.0, (signs_from - datetime.now(timezone.utc)).total_seconds()))
        deadline = time.monotonic() + SEEN_TIMEOUT
        signed = {}
        while len(signed) < 2:
            assert time.monotonic() < deadline, "an instance still signs with the retired key"
            for url in (one, two):
                tokens = log_in(url)
                if kid_of(tokens) == new_row.kid:
                    signed[url] = tokens
            time.sleep(0.1)
        assert me(two, signed[one]).json() == ALICE and me(one, signed[two]).json() == ALICE
        assert me(one, from_one).json() == ALICE and me(two, from_two).json() == ALICE  # nobody logged out
        assert key_set(one) == key_set(two)
        assert [key["kid"] for key in key_set(one)["keys"]] == [first, new_row.kid]

        prune = lesson_code(envs[0], "keys", "prune")
        assert (prune.returncode, prune.stdout) == (
            0,
            "Nothing to prune: every retired key may still have valid tokens\n",
        )
        listing = lesson_code(envs[0], "keys", "list")
        assert listing.returncode == 0 and len(listing.stdout.splitlines()) == 4, listing


def test_a_wrong_encryption_key_stops_serve_in_one_line(database_url, encryption, engine, tmp_path):
    kid = DatabaseKeySource(engine, encryption, "ES256").ring().signing.kid
    env = machine_environment(
        tmp_path, DATABASE_URL=database_url, JWT_ALGORITHM="ES256", JWT_KEY_ENCRYPTION_KEY=secrets.token_hex(32)
    )
    result = lesson_code(env, "serve", "--port", str(free_port()))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: the signing key {kid} in the {key_store.place(engine)} cannot be decrypted with "
        "JWT_KEY_ENCRYPTION_KEY: it is not the key the signing keys were encrypted with (every instance needs the "
        "same one), or the row was altered\n"
    )


WEAK = "correct-horse-battery-staple"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            None,
            "JWT_KEY_ENCRYPTION_KEY is not set: with JWT_ALGORITHM ES256 or RS256 and DATABASE_URL naming a database "
            "server, the signing keys are kept in the database, their private halves encrypted with it; give every "
            'instance the same one (make one with: python -c "import secrets; print(secrets.token_hex(32))")',
        ),
        (
            WEAK,
            f"JWT_KEY_ENCRYPTION_KEY is not a valid setting: Value error, it holds about {int(secret_bits(WEAK))} "
            'bits of randomness, at least 256 are needed: make one with: python -c "import secrets; '
            'print(secrets.token_hex(32))"',
        ),
        (
            "the secret",
            "JWT_KEY_ENCRYPTION_KEY is not a valid setting: Value error, it is JWT_SECRET_KEY: give the keys a key of "
            'their own (make one with: python -c "import secrets; print(secrets.token_hex(32))")',
        ),
    ],
    ids=["missing", "weak", "the-jwt-secret"],
)
def test_a_missing_or_weak_encryption_key_stops_serve_in_one_line(database_url, tmp_path, value, message):
    env = machine_environment(tmp_path, DATABASE_URL=database_url, JWT_ALGORITHM="ES256")
    if value is not None:
        env["JWT_KEY_ENCRYPTION_KEY"] = env["JWT_SECRET_KEY"] if value == "the secret" else value
    result = lesson_code(env, "serve", "--port", str(free_port()))
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"error: {message}\n")


def test_inspect_checks_a_token_with_the_tables_public_keys_without_the_encryption_key(
    in_database, engine, encryption, monkeypatch, capsys
):
    source = DatabaseKeySource(engine, encryption, "ES256")
    token = SignedAccessTokens(source, ISSUER, AUDIENCE, LONGEST).create({"sub": "alice"})
    monkeypatch.delenv("JWT_KEY_ENCRYPTION_KEY")  # reading public keys needs none
    get_settings.cache_clear()
    status, out, err = run_cli(capsys, "inspect", token)
    kid = source.ring().signing.kid
    assert (status, err) == (0, "")
    assert f"Signature: valid (ES256 with key {kid} of the {key_store.place(engine)})\n" in out
    assert out.endswith("Accepted:  yes\n")
