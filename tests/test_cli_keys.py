"""python -m lesson_code keys ... and serve-resource: the signing keys of ES256 and RS256 from the command line."""

import json
import os
import secrets
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from test_cli import choices

from lesson_code import cli, keys
from lesson_code.cli import main
from lesson_code.settings import get_settings

MADE = datetime(2026, 11, 29, 9, 0, 0, tzinfo=timezone.utc)
ROTATED = datetime(2026, 11, 29, 9, 30, 0, tzinfo=timezone.utc)
KEYS_EXIT_STATUS = "exit status: 0 done, 2 an unusable key folder, key file or setting (one line on standard error)"


class Clock:
    """cli.datetime whose now() is the time the test sets."""

    moment = MADE

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        clock = self

        class FrozenDateTime(datetime):
            @classmethod
            def now(cls, tz=None):
                return clock.moment

        monkeypatch.setattr(cli, "datetime", FrozenDateTime)


@pytest.fixture
def key_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "keys"
    monkeypatch.setenv("JWT_KEY_DIR", str(directory))
    monkeypatch.setenv("JWT_ALGORITHM", "ES256")
    monkeypatch.delenv("ACCESS_TOKEN_MINUTES", raising=False)
    get_settings.cache_clear()
    yield directory
    get_settings.cache_clear()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def run(capsys, *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def kids(directory: Path) -> list[str]:
    ring = keys.load_keys(directory)
    return [key.kid for key in ring.keys]


def test_list_before_any_key_says_how_one_is_made_and_makes_no_folder(capsys, key_dir):
    assert run(capsys, "keys", "list") == (
        0,
        f"No key in {key_dir} yet: the API makes one when it starts with JWT_ALGORITHM=ES256, or run keys rotate\n",
        "",
    )
    assert not key_dir.exists()


def test_prune_before_any_key(capsys, key_dir):
    assert run(capsys, "keys", "prune") == (0, f"No key in {key_dir}: nothing to prune\n", "")
    assert not key_dir.exists()


def test_rotate_makes_a_private_folder_and_file_named_by_the_kid(capsys, key_dir, clock):
    status, out, err = run(capsys, "keys", "rotate")
    [kid] = kids(key_dir)
    assert (status, out, err) == (0, f"New signing key {kid} (ES256) in {key_dir}\n", "")
    assert stat.S_IMODE(os.stat(key_dir).st_mode) == 0o700
    assert sorted(os.listdir(key_dir)) == [f"{kid}.json"]
    assert stat.S_IMODE(os.stat(key_dir / f"{kid}.json").st_mode) == 0o600
    document = json.loads((key_dir / f"{kid}.json").read_text())
    assert document["created"] == "2026-11-29T09:00:00+00:00"
    assert document["key"]["kid"] == kid == keys.thumbprint(document["key"])
    assert (document["key"]["kty"], document["key"]["crv"], document["key"]["alg"]) == ("EC", "P-256", "ES256")


def test_a_second_rotation_publishes_the_new_key_before_it_signs_then_retires_the_first(capsys, key_dir, clock):
    run(capsys, "keys", "rotate")
    clock.moment = ROTATED
    status, out, err = run(capsys, "keys", "rotate")
    first, second = kids(key_dir)
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        f"New key {second} (ES256) in {key_dir}: published now, signs from 2026-11-29 09:30:10 UTC",
        f"Then {first} is retired: its tokens are accepted, and it is published, until 2026-11-29 09:45:40 UTC",
    ]
    status, out, err = run(capsys, "keys", "list")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        f"Keys in {key_dir}, oldest first:",
        "KID                                          ALG    MADE                     STATE",
        f"{first}  ES256  2026-11-29 09:00:00 UTC  signing",
        f"{second}  ES256  2026-11-29 09:30:00 UTC  published, signs from 2026-11-29 09:30:10 UTC",
    ]
    clock.moment = datetime(2026, 11, 29, 9, 30, 10, tzinfo=timezone.utc)
    status, out, err = run(capsys, "keys", "list")
    assert out.splitlines()[2:] == [
        f"{first}  ES256  2026-11-29 09:00:00 UTC  retired 2026-11-29 09:30:10 UTC, published until 2026-11-29 "
        "09:45:40 UTC",
        f"{second}  ES256  2026-11-29 09:30:00 UTC  signing",
    ]


def test_prune_deletes_a_retired_key_only_once_its_tokens_can_have_expired(capsys, key_dir, clock):
    run(capsys, "keys", "rotate")
    clock.moment = ROTATED
    run(capsys, "keys", "rotate")
    first, second = kids(key_dir)
    clock.moment = datetime(2026, 11, 29, 9, 45, 39, tzinfo=timezone.utc)
    assert run(capsys, "keys", "prune") == (0, "Nothing to prune: every retired key may still have valid tokens\n", "")
    assert kids(key_dir) == [first, second]
    clock.moment = datetime(2026, 11, 29, 9, 45, 40, tzinfo=timezone.utc)
    status, out, err = run(capsys, "keys", "list")
    assert out.splitlines()[2] == (
        f"{first}  ES256  2026-11-29 09:00:00 UTC  prunable since 2026-11-29 09:45:40 UTC (retired 2026-11-29 "
        "09:30:10 UTC)"
    )
    assert run(capsys, "keys", "prune") == (0, f"Deleted {first} (ES256, made 2026-11-29 09:00:00 UTC)\n", "")
    assert kids(key_dir) == [second]
    clock.moment = datetime(2027, 1, 1, tzinfo=timezone.utc)
    assert run(capsys, "keys", "prune") == (0, "Nothing to prune: every retired key may still have valid tokens\n", "")
    assert kids(key_dir) == [second]


def test_the_retention_follows_access_token_minutes(capsys, key_dir, clock, monkeypatch):
    monkeypatch.setenv("ACCESS_TOKEN_MINUTES", "60")
    get_settings.cache_clear()
    run(capsys, "keys", "rotate")
    clock.moment = ROTATED
    status, out, err = run(capsys, "keys", "rotate")
    assert out.splitlines()[1].endswith("it is published, until 2026-11-29 10:30:40 UTC")


def test_rotate_to_rs256_and_the_newest_key_signs_whatever_its_algorithm(capsys, key_dir, clock):
    run(capsys, "keys", "rotate")
    clock.moment = ROTATED
    status, out, err = run(capsys, "keys", "rotate", "--algorithm", "RS256")
    assert status == 0
    ring = keys.load_keys(key_dir)
    first, second = ring.keys
    assert [key.algorithm for key in ring.keys] == ["ES256", "RS256"]
    assert out.splitlines()[0] == (
        f"New key {second.kid} (RS256) in {key_dir}: published now, signs from 2026-11-29 09:30:10 UTC"
    )
    later = datetime(2026, 11, 29, 9, 30, 10, tzinfo=timezone.utc)
    assert ring.signing_key(ROTATED) is first
    assert ring.signing_key(later) is second


def test_rotate_under_hs256_needs_an_algorithm(capsys, key_dir, monkeypatch):
    monkeypatch.setenv("JWT_ALGORITHM", "HS256")
    get_settings.cache_clear()
    assert run(capsys, "keys", "rotate") == (
        2,
        "",
        "error: JWT_ALGORITHM is HS256, which signs with the secret, not a key: give --algorithm ES256 or RS256\n",
    )
    assert not key_dir.exists()
    assert run(capsys, "keys", "rotate", "--algorithm", "ES256")[0] == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["keys"], "error: the following arguments are required: COMMAND"),
        (
            ["keys", "turn"],
            f"error: argument COMMAND: invalid choice: 'turn' (choose from {choices('rotate', 'list', 'prune')})",
        ),
        (
            ["keys", "rotate", "--algorithm", "HS256"],
            f"error: argument --algorithm: invalid choice: 'HS256' (choose from {choices('ES256', 'RS256')})",
        ),
        (["serve-resource", "--port", "0"], "error: argument --port: expected a port number from 1 to 65535, not '0'"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(capsys, key_dir, argv, message):
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, "")
    assert err == f"{message} (see: python -m lesson_code --help)\n"


def test_a_folder_others_can_read_is_refused_in_one_line(capsys, key_dir, clock):
    run(capsys, "keys", "rotate")
    key_dir.chmod(0o755)
    for command in ("list", "rotate", "prune"):
        assert run(capsys, "keys", command) == (
            2,
            "",
            f"error: {key_dir} can be read or changed by other users (mode 0755); run: chmod 700 {key_dir}\n",
        )


def test_a_symlinked_folder_is_refused(capsys, key_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    key_dir.symlink_to(elsewhere)
    assert run(capsys, "keys", "rotate") == (
        2,
        "",
        f"error: {key_dir} is a symbolic link, so someone else may have chosen the keys; point JWT_KEY_DIR at a "
        "folder\n",
    )
    assert os.listdir(elsewhere) == []


def test_a_key_file_that_is_not_a_key_is_refused_in_one_line(capsys, key_dir, clock):
    run(capsys, "keys", "rotate")
    [kid] = kids(key_dir)
    path = key_dir / f"{kid}.json"
    path.write_text("{not json")
    status, out, err = run(capsys, "keys", "list")
    assert (status, out) == (2, "")
    assert err.startswith(f"error: {path} is not a key file made by this code (")
    assert err.endswith("); move it away\n")
    assert err.count("\n") == 1


def test_serve_checks_the_key_folder_before_starting(capsys, key_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'lesson.db'}")
    monkeypatch.setenv("JWT_SECRET_KEY", secrets.token_hex(32))
    get_settings.cache_clear()
    key_dir.mkdir(mode=0o777)
    key_dir.chmod(0o777)
    assert run(capsys, "serve", "--port", "8123") == (
        2,
        "",
        f"error: {key_dir} can be read or changed by other users (mode 0777); run: chmod 700 {key_dir}\n",
    )


def signed_tokens(directory: Path, issuer: str = "http://127.0.0.1:8000") -> keys.SignedAccessTokens:
    return keys.SignedAccessTokens(keys.KeySource(directory, "ES256"), issuer, "jwt-lesson-api", timedelta(minutes=15))


def inspect_tail(capsys, token: str) -> tuple[int, list[str]]:
    status, out, err = run(capsys, "inspect", token)
    assert err == ""
    return status, out.splitlines()[-2:]


def test_inspect_checks_an_es256_token_with_the_key_folder(capsys, key_dir):
    token = signed_tokens(key_dir).create({"sub": "alice"})
    [kid] = kids(key_dir)
    assert inspect_tail(capsys, token) == (
        0,
        [f"Signature: valid (ES256 with key {kid} of {key_dir})", "Accepted:  yes"],
    )


def test_inspect_refuses_an_es256_token_of_another_issuer_or_key(capsys, key_dir, tmp_path):
    token = signed_tokens(key_dir, issuer="https://elsewhere.example").create({"sub": "alice"})
    [kid] = kids(key_dir)
    assert inspect_tail(capsys, token) == (
        1,
        [
            f"Signature: valid (ES256 with key {kid} of {key_dir})",
            "Accepted:  no, issuer (iss) 'https://elsewhere.example' is not 'http://127.0.0.1:8000'",
        ],
    )
    stranger = signed_tokens(tmp_path / "stranger").create({"sub": "alice"})
    assert inspect_tail(capsys, stranger) == (
        1,
        [
            f"Signature: not checked: the key folder {key_dir} has no live key named by this kid",
            "Accepted:  no, token names a key (kid) this service does not know",
        ],
    )


def test_inspect_of_an_es256_token_before_any_key_exists(capsys, key_dir, tmp_path):
    stranger = signed_tokens(tmp_path / "stranger").create({"sub": "alice"})
    assert inspect_tail(capsys, stranger) == (
        1,
        [
            f"Signature: not checked: the key folder {key_dir} has no live key named by this kid",
            "Accepted:  no, token names a key (kid) this service does not know",
        ],
    )
    assert not key_dir.exists()


def test_serve_resource_refuses_keys_fetched_over_plain_http_from_afar(capsys, monkeypatch):
    monkeypatch.setenv("JWT_ISSUER", "http://issuer.example")
    get_settings.cache_clear()
    assert run(capsys, "serve-resource") == (
        2,
        "",
        "error: JWKS_URL is not a valid setting: 'http://issuer.example/.well-known/jwks.json' must be https:// (or "
        "http:// to this machine)\n",
    )


def test_keys_commands_keep_retired_keys_as_long_as_a_server_recorded(capsys, key_dir, clock):
    run(capsys, "keys", "rotate")
    keys.record_longest_token(key_dir, timedelta(minutes=60))  # what a server with ACCESS_TOKEN_MINUTES=60 does
    clock.moment = ROTATED
    status, out, err = run(capsys, "keys", "rotate")
    assert out.splitlines()[1].endswith("it is published, until 2026-11-29 10:30:40 UTC")
    clock.moment = datetime(2026, 11, 29, 10, 0, 0, tzinfo=timezone.utc)  # past 15 minutes, within 60
    assert run(capsys, "keys", "prune") == (0, "Nothing to prune: every retired key may still have valid tokens\n", "")
    assert len(kids(key_dir)) == 2
