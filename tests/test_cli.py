import argparse
import io
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import jwt as pyjwt
import pytest
import uvicorn
from forge import FAR_FUTURE, forge

from lesson_code import store
from lesson_code.cli import MAX_STDIN_BYTES, format_time_left, main
from lesson_code.settings import get_settings
from lesson_code.tokens import create_access_token
from tests.utils.uvicorn_process import free_port, wait_until_answering

ROOT = Path(__file__).resolve().parent.parent
HOW = 'make one with: python -c "import secrets; print(secrets.token_hex(32))"'
YEAR_9999 = 253_402_300_799  # 9999-12-31 23:59:59 UTC: past year 9999 east of Greenwich
YEAR_1 = -62_135_596_800  # 0001-01-01 00:00:00 UTC: before year 1 west of Greenwich
# RFC 7515, Appendix A.1: an HS256 JWS whose header has line breaks in its JSON.
RFC7515_TOKEN = (
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)


class Refusal(Exception):
    pass


class RaisingParser(argparse.ArgumentParser):
    def error(self, message):
        raise Refusal(message)


def choices(*names: str) -> str:
    """The choices as this Python's argparse lists them: quoted, except on a few 3.12 and 3.13 releases (gh-130750)."""
    parser = RaisingParser()
    parser.add_argument("x", choices=names)
    with pytest.raises(Refusal) as refusal:
        parser.parse_args(["?"])
    return str(refusal.value).partition("(choose from ")[2].removesuffix(")")


def run(capsys, *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "TZ": "UTC", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "lesson_code", *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
    )


def feed_stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


@pytest.fixture(params=["UTC", "America/New_York", "Asia/Tokyo"])
def zone(request):
    """The local time zone for one test, as TZ says; restored afterwards."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset() is POSIX only")
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield ZoneInfo(request.param)
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def moment(when: datetime) -> str:
    return f"{when.year:04d}-{when:%m-%d %H:%M:%S}"


def expires_line(exp: int, zone: ZoneInfo) -> str:
    expiry = datetime.fromtimestamp(exp, timezone.utc)
    try:
        local = expiry.astimezone(zone)
    except OverflowError:
        return f"Expires:   {moment(expiry)} UTC (out of range in local time)"
    return f"Expires:   {moment(expiry)} UTC ({moment(local)} {local.tzname()} local time)"


def test_python_m_lesson_code_prints_a_token_pyjwt_verifies(secret_key):
    result = run_cli("token", "alice", "--minutes", "30")
    assert (result.returncode, result.stderr) == (0, "")
    match = re.fullmatch(r"JWT Token: ([\w-]+\.[\w-]+\.[\w-]+)\n", result.stdout)
    assert match
    claims = pyjwt.decode(match[1], secret_key, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 1800


@pytest.mark.parametrize(("args", "seconds"), [((), 900), (("--minutes", "0"), 0), (("--minutes", "525600"), 31536000)])
def test_token_command_lifetimes(capsys, secret_key, args, seconds):
    status, out, err = run(capsys, "token", "bob", *args)
    assert (status, err) == (0, "")
    claims = pyjwt.decode(out.removeprefix("JWT Token: ").strip(), secret_key, algorithms=["HS256"], leeway=30)
    assert claims["exp"] - claims["iat"] == seconds


@pytest.mark.parametrize("source", ["argument", "standard input"])
def test_inspect_a_fresh_token(capsys, monkeypatch, secret_key, zone, source):
    token = create_access_token({"sub": "alice"}, expires_delta=timedelta(minutes=30))
    claims = pyjwt.decode(token, secret_key, algorithms=["HS256"])
    if source == "standard input":
        feed_stdin(monkeypatch, f"  {token}\r\n".encode())
    status, out, err = run(capsys, "inspect", "-" if source == "standard input" else token)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[:10] == [
        "Header: {",
        '  "alg": "HS256",',
        '  "typ": "JWT"',
        "}",
        "Payload: {",
        '  "sub": "alice",',
        f'  "iat": {claims["iat"]},',
        f'  "exp": {claims["exp"]}',
        "}",
        expires_line(claims["exp"], zone),
    ]
    assert re.fullmatch(r"Time left: 29 min 5\d s|Time left: 30 min", lines[10])
    assert lines[11:] == ["Signature: valid (HS256 with the configured secret)", "Accepted:  yes"]


def test_inspect_the_rfc_7515_example_token(capsys, zone):
    status, out, err = run(capsys, "inspect", RFC7515_TOKEN)
    assert (status, err) == (1, "")
    lines = out.splitlines()
    assert lines[:10] == [
        "Header: {",
        '  "typ": "JWT",',
        '  "alg": "HS256"',
        "}",
        "Payload: {",
        '  "iss": "joe",',
        '  "exp": 1300819380,',
        '  "http://example.com/is_root": true',
        "}",
        expires_line(1300819380, zone),
    ]
    assert re.fullmatch(r"Time left: expired \d{4} d( \d{1,2} h)? ago", lines[10])  # "0 h" is left out
    assert lines[11:] == [
        "Signature: not valid with the configured secret (Signature verification failed)",
        "Accepted:  no, Signature verification failed",
    ]


def test_inspect_says_why_a_token_is_not_accepted(capsys):
    token = create_access_token({"sub": "alice"}, expires_delta=timedelta(hours=-3))
    status, out, err = run(capsys, "inspect", token)
    assert (status, err) == (1, "")
    assert out.splitlines()[-3:] == [
        "Time left: expired 3 h ago",
        "Signature: valid (HS256 with the configured secret)",
        "Accepted:  no, token has expired",
    ]


def test_inspect_a_token_without_exp(capsys, secret_key):
    status, out, _ = run(capsys, "inspect", pyjwt.encode({"sub": "alice"}, secret_key, algorithm="HS256"))
    assert status == 1
    assert out.splitlines()[-3:] == [
        "Expires:   never (no exp claim)",
        "Signature: valid (HS256 with the configured secret)",
        'Accepted:  no, missing required key "exp" among claims',
    ]


# What a forged token can carry to steer a terminal: CSI as one C1 character (U+009B, "ESC ["), with the cursor moved
# up and the line erased, then right-to-left override, line separator, zero-width joiner, a tag character, DEL, BEL.
STEERING = "\u009b1A\u009b2K\u202e\u2028\u200d\U000e0041\x7f\x07"


def test_inspect_escapes_every_character_that_could_steer_the_terminal(capsys):
    lie = f"{STEERING}Signature: valid\u2028Accepted:  yes\u2066"
    token = forge(
        {"alg": "HS256", "typ": "JWT", "note\u009b": lie}, {"sub": f"alice{STEERING}", "exp": FAR_FUTURE}, "x"
    )
    status, out, err = run(capsys, "inspect", token)
    assert (status, err) == (1, "")
    assert all(character.isprintable() for line in out.splitlines() for character in line)
    escaped = "\\u009b1A\\u009b2K\\u202e\\u2028\\u200d\\udb40\\udc41\\u007f\\u0007"
    lines = out.splitlines()
    assert lines[:5] == [
        "Header: {",
        '  "alg": "HS256",',
        '  "typ": "JWT",',
        f'  "note\\u009b": "{escaped}Signature: valid\\u2028Accepted:  yes\\u2066"',
        "}",
    ]
    assert lines[6] == f'  "sub": "alice{escaped}",'
    assert json.loads("\n".join(lines[:5]).removeprefix("Header: "))["note\u009b"] == lie  # still JSON, same text
    assert lines[-2:] == [
        "Signature: not valid with the configured secret (Signature verification failed)",
        "Accepted:  no, Signature verification failed",
    ]


def test_every_line_printed_is_escaped_errors_included(capsys, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite:////nonexistent\u202e/lesson.db")
    status, out, err = run(capsys, "users", "list")
    assert (status, out) == (2, "")
    assert err == (
        "error: SQLite database /nonexistent\\u202e/lesson.db: the folder /nonexistent\\u202e does not exist\n"
    )


@pytest.mark.parametrize(("exp", "status"), [(YEAR_9999, 0), (YEAR_1, 1)], ids=["year 9999", "year 1"])
def test_an_expiry_beyond_the_local_calendar_is_shown_without_a_crash(capsys, secret_key, zone, exp, status):
    status_seen, out, err = run(capsys, "inspect", forge({"alg": "HS256"}, {"sub": "alice", "exp": exp}, secret_key))
    assert (status_seen, err) == (status, "")
    lines = out.splitlines()
    assert lines[-4] == expires_line(exp, zone)
    assert re.fullmatch(r"Time left: (expired )?\d{6,7} d \d+ h( ago)?", lines[-3])


def test_out_of_range_really_happens_in_the_zones_tested():
    assert expires_line(YEAR_9999, ZoneInfo("Asia/Tokyo")).endswith("(out of range in local time)")
    assert expires_line(YEAR_1, ZoneInfo("America/New_York")).endswith("(out of range in local time)")


def test_an_exp_that_is_not_a_time_is_shown_and_not_accepted(capsys, secret_key):
    status, out, err = run(capsys, "inspect", forge({"alg": "HS256"}, {"sub": "alice", "exp": "soon"}, secret_key))
    assert (status, err) == (1, "")
    assert out.splitlines()[-3:] == [
        "Expires:   exp is not a time: 'soon'",
        "Signature: valid (HS256 with the configured secret)",
        "Accepted:  no, exp, iat and nbf must be numbers of seconds",
    ]


def test_a_lone_surrogate_in_the_header_is_printed_as_its_json_escape(capsys, secret_key):
    token = forge('{"alg":"HS256","x":"\\ud800"}', {"sub": "alice", "exp": FAR_FUTURE}, secret_key)
    status, out, err = run(capsys, "inspect", token)
    assert (status, err) == (0, "")
    assert out.splitlines()[:4] == ["Header: {", '  "alg": "HS256",', '  "x": "\\ud800"', "}"]


def test_text_that_is_not_ascii_is_printed_as_it_is(capsys, secret_key):
    token = forge({"alg": "HS256"}, {"sub": "zoë", "exp": FAR_FUTURE}, secret_key)
    status, out, _ = run(capsys, "inspect", token)
    assert status == 0
    assert '  "sub": "zoë",' in out.splitlines()


BAD_INPUT = {
    "garbage token": (
        ("inspect", "garbage"),
        "error: not a readable JWT: a token is three base64url parts joined by dots",
    ),
    "no command": ((), "error: the following arguments are required: COMMAND (see: python -m lesson_code --help)"),
    "unknown command": (
        ("mint",),
        "error: argument COMMAND: invalid choice: 'mint' (choose from "
        f"{choices('token', 'inspect', 'serve', 'serve-resource', 'users', 'keys')})"
        " (see: python -m lesson_code --help)",
    ),
    "no username": (
        ("token",),
        "error: the following arguments are required: username (see: python -m lesson_code --help)",
    ),
    "blank username": (("token", " "), "error: the username must not be empty"),
    "minutes not a number": (
        ("token", "alice", "--minutes", "x"),
        "error: argument --minutes: expected a whole number, not 'x' (see: python -m lesson_code --help)",
    ),
    "negative minutes": (
        ("token", "alice", "--minutes", "-5"),
        "error: argument --minutes: expected 0 to 527040 (a year), not -5 (see: python -m lesson_code --help)",
    ),
    "bad port": (
        ("serve", "--port", "99999"),
        "error: argument --port: expected a port number from 1 to 65535, not '99999'"
        " (see: python -m lesson_code --help)",
    ),
    "header not JSON": (
        ("inspect", forge("not json", {"sub": "alice"})),
        "error: not a readable JWT: header is not readable: Error decoding token headers",
    ),
}


@pytest.mark.parametrize(("args", "line"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_line_on_stderr_and_exit_2(capsys, args, line):
    assert run(capsys, *args) == (2, "", line + "\n")


STDIN = {
    "empty": (b"", "error: not a readable JWT: a token is three base64url parts joined by dots"),
    "not UTF-8": (b"\xff\xfe\x00garbage", "error: not a readable JWT: standard input is not UTF-8 text"),
    "a token and then some": (
        b"a.b.c" + b" " * MAX_STDIN_BYTES,
        "error: not a readable JWT: token is longer than 4096 characters",
    ),
}


@pytest.mark.parametrize(("data", "line"), STDIN.values(), ids=STDIN.keys())
def test_bad_standard_input_is_one_line_and_exit_2(capsys, monkeypatch, data, line):
    feed_stdin(monkeypatch, data)
    assert run(capsys, "inspect", "-") == (2, "", line + "\n")


class Endless(io.RawIOBase):
    """A stream that never ends, counting what is read from it."""

    def __init__(self):
        self.given = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        buffer[:] = b"A" * len(buffer)
        self.given += len(buffer)
        return len(buffer)


def test_inspect_reads_no_more_than_a_token_from_an_endless_stdin(capsys, monkeypatch):
    endless = Endless()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(endless)))
    assert run(capsys, "inspect", "-") == (
        2,
        "",
        "error: not a readable JWT: token is longer than 4096 characters\n",
    )
    assert MAX_STDIN_BYTES < endless.given <= 2 * io.DEFAULT_BUFFER_SIZE


def test_inspect_stops_reading_200_mb_piped_to_it():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "lesson_code", "inspect", "-"]
    chunks = (b"A" * 1_000_000 for _ in range(200))
    sent = 0
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with subprocess.Popen(command, env=env, **pipes) as process:
        try:
            for chunk in chunks:
                process.stdin.write(chunk)
                sent += len(chunk)
        except BrokenPipeError:
            pass  # the reader stopped reading and left
        try:
            process.stdin.close()
        except BrokenPipeError:
            pass
        out, err = process.stdout.read(), process.stderr.read()
    assert (process.returncode, out, err) == (
        2,
        b"",
        b"error: not a readable JWT: token is longer than 4096 characters\n",
    )
    assert sent < 20_000_000


def test_inspect_from_a_pipe(secret_key):
    token = create_access_token({"sub": "alice"})
    result = run_cli("inspect", "-", stdin=token + "\n")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[-2:] == ["Signature: valid (HS256 with the configured secret)", "Accepted:  yes"]


@pytest.mark.parametrize("command", [["token", "alice"], ["inspect", "garbage"], ["serve"]])
@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("", f"JWT_SECRET_KEY is empty: {HOW}"),
        (
            "mysecretkey123",
            f"JWT_SECRET_KEY holds about 72 bits of randomness; HS256 needs at least 256 (RFC 7518, section 3.2): {HOW}",
        ),
        (
            secrets.token_hex(16),
            f"JWT_SECRET_KEY holds about 128 bits of randomness; HS256 needs at least 256 (RFC 7518, section 3.2): "
            f"{HOW}",
        ),
    ],
    ids=["empty", "seed lesson's", "token_hex(16)"],
)
def test_a_weak_secret_is_one_line_and_exit_2(capsys, monkeypatch, command, secret, message):
    monkeypatch.setenv("JWT_SECRET_KEY", secret)
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("served with a weak secret"))
    assert run(capsys, *command) == (2, "", f"error: {message}\n")


def test_a_secret_file_that_is_not_utf_8_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    path = tmp_path / ".jwt_secret"
    path.write_bytes(b"\xff" * 64)
    path.chmod(0o600)
    monkeypatch.delenv("JWT_SECRET_KEY")
    monkeypatch.setenv("JWT_SECRET_FILE", str(path))
    line = f"error: {path} is not UTF-8 text; delete it to have a new secret made, or set JWT_SECRET_KEY\n"
    assert run(capsys, "token", "alice") == (2, "", line)


@pytest.fixture
def fresh_settings():
    """Settings read from this test's environment, not cached by an earlier test."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_serve_runs_the_finished_service_with_uvicorn_on_a_ready_database(
    capsys, monkeypatch, tmp_path, fresh_settings
):
    path = tmp_path / "lesson.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert run(capsys, "serve", "--host", "127.0.0.2", "--port", "8123") == (0, "", "")
    defaults = {"workers": 1, "forwarded_allow_ips": None, "limit_concurrency": None}
    assert calls == [(("lesson_code.service:app",), {"host": "127.0.0.2", "port": 8123, **defaults})]
    engine = store.make_engine(f"sqlite:///{path}")
    try:
        assert [user.username for user in store.list_users(engine)] == ["alice", "bob", "carol"]
    finally:
        engine.dispose()


def test_serve_passes_the_deployment_options_to_uvicorn(capsys, monkeypatch, tmp_path, fresh_settings):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'lesson.db'}")
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    options = ["--forwarded-allow-ips", "10.0.0.5,192.168.0.0/16", "--limit-concurrency", "900"]
    assert run(capsys, "serve", *options) == (0, "", "")
    assert calls == [
        {
            "host": "127.0.0.1",
            "port": 8000,
            "workers": 1,
            "forwarded_allow_ips": "10.0.0.5,192.168.0.0/16",
            "limit_concurrency": 900,
        }
    ]


def test_serve_refuses_several_workers_that_would_each_count_logins_alone(
    capsys, monkeypatch, tmp_path, fresh_settings
):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'lesson.db'}")
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("uvicorn started"))
    assert run(capsys, "serve", "--workers", "2") == (
        2,
        "",
        "error: --workers 2 with LOGIN_LIMITS_STORAGE_URL=async+memory://: each worker would count logins on its "
        "own (2 times the limits); set LOGIN_LIMITS_STORAGE_URL=async+redis://HOST:6379, or serve one worker\n",
    )


@pytest.mark.parametrize(
    ("options", "line"),
    [
        (["--workers", "0"], "argument --workers: expected a whole number from 1 to 100000, not '0'"),
        (["--limit-concurrency", "many"], "argument --limit-concurrency: expected a whole number from 1 to 100000, "
         "not 'many'"),
        (["--forwarded-allow-ips", "proxy.example"], "argument --forwarded-allow-ips: expected addresses or networks "
         "separated by commas (127.0.0.1,10.0.0.0/8) or *, not 'proxy.example'"),
    ],
)  # fmt: skip
def test_serve_refuses_a_bad_option_in_one_line(capsys, monkeypatch, options, line):
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("uvicorn started"))
    assert run(capsys, "serve", *options) == (2, "", f"error: {line} (see: python -m lesson_code --help)\n")


def test_serve_refuses_a_login_limits_storage_that_does_not_answer(capsys, monkeypatch, tmp_path, fresh_settings):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'lesson.db'}")
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        url = f"async+redis://127.0.0.1:{unused.getsockname()[1]}"
    monkeypatch.setenv("LOGIN_LIMITS_STORAGE_URL", url)
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("uvicorn started"))
    status, out, err = run(capsys, "serve")
    assert (status, out) == (2, "")
    assert err.startswith(f"error: LOGIN_LIMITS_STORAGE_URL {url!r} cannot be reached: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        ("DATABASE_URL", "sqlite:///{tmp_path}/missing/lesson.db", "SQLite database {tmp_path}/missing/lesson.db: "
         "the folder {tmp_path}/missing does not exist"),
        ("DATABASE_URL", "nonsense", "DATABASE_URL is not a database URL this code can open: "
         "Could not parse SQLAlchemy URL from given URL string"),
        ("ACCESS_TOKEN_MINUTES", "0", "ACCESS_TOKEN_MINUTES is not a valid setting: Input should be greater than 0"),
        ("LOGIN_FAILURES_PER_ACCOUNT", "lots", "LOGIN_FAILURES_PER_ACCOUNT is not a valid setting: "
         "Value error, couldn't parse rate limit string 'lots'"),
        ("DATABASE_URL", "postgresql://h:notaport/db", "DATABASE_URL is not a database URL this code can open: "
         "invalid literal for int() with base 10: 'notaport'"),
        ("DATABASE_URL", "sqlite:///{tmp_path}/x.db?timeout=abc", "DATABASE_URL is not a database URL this code can "
         "open: could not convert string to float: 'abc'"),
        ("ACCESS_TOKEN_MINUTES", "1e12", "ACCESS_TOKEN_MINUTES is not a valid setting: "
         "Input should be less than or equal to 1440"),
        ("ACCESS_TOKEN_MINUTES", "0.01", "ACCESS_TOKEN_MINUTES is not a valid setting: "
         "Value error, must be at least 1/60 (a second)"),
        ("SESSION_DAYS", "1e7", "SESSION_DAYS is not a valid setting: Input should be less than or equal to 3650"),
        ("SESSION_DAYS", "-1", "SESSION_DAYS is not a valid setting: Input should be greater than 0"),
        ("SESSION_DAYS", "3", "SESSION_DAYS is not a valid setting: Value error, must be at least REFRESH_TOKEN_DAYS "
         "(7.0): a refresh token cannot outlive its session"),
        ("REFRESH_TOKEN_DAYS", "0", "REFRESH_TOKEN_DAYS is not a valid setting: Input should be greater than 0"),
        ("REFRESH_TOKEN_DAYS", "366", "REFRESH_TOKEN_DAYS is not a valid setting: "
         "Input should be less than or equal to 365"),
        ("MAX_SESSIONS_PER_USER", "0", "MAX_SESSIONS_PER_USER is not a valid setting: "
         "Input should be greater than or equal to 1"),
        ("DEMO_USERS", "maybe", "DEMO_USERS is not a valid setting: Input should be a valid boolean, unable to "
         "interpret input"),
    ],
    ids=["database folder missing", "database URL", "token lifetime", "rate limit", "bad port", "bad sqlite query",
         "access huge", "access tiny", "session huge", "session negative", "session shorter than refresh",
         "refresh zero", "refresh huge", "session cap", "demo users"],
)  # fmt: skip
def test_serve_refuses_a_bad_database_or_setting_in_one_line_before_starting(
    capsys, monkeypatch, tmp_path, fresh_settings, variable, value, line
):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/lesson.db")
    monkeypatch.setenv(variable, value.format(tmp_path=tmp_path))
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("served anyway"))
    assert run(capsys, "serve") == (2, "", f"error: {line.format(tmp_path=tmp_path)}\n")


def test_help_reads_well_and_gives_the_exit_statuses(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert out.startswith("usage: python -m lesson_code [-h] COMMAND ...\n")
    words = " ".join(out.split())  # argparse wraps and aligns the list differently in Python 3.13
    for line in (
        "token print a new access token for a user",
        "inspect show what a token says and whether it verifies",
        "serve run the finished API (users, sessions, scopes) with uvicorn",
        "serve-resource run the resource server: it checks the API's ES256 tokens with the public keys",
        "users manage users, their passwords, scopes and sessions",
        "keys make, list and prune the ES256 or RS256 signing keys",
    ):
        assert f" {line} " in words
    assert " ".join(out.split()).endswith(
        "exit status: 0 done (inspect: the token is accepted), 1 inspect: the token is readable but not accepted, "
        "2 bad input, an unreadable token, an unusable secret or database (one line on standard error), "
        "130 interrupted (Ctrl-C)"
    )


def test_inspect_help_gives_its_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    assert " ".join(capsys.readouterr().out.split()).endswith(
        "exit status: 0 the token is accepted, 1 it is readable but not accepted, "
        "2 it is unreadable or the secret is unusable (one line on standard error)"
    )


@pytest.mark.parametrize(
    ("left", "text"),
    [
        (timedelta(seconds=0), "0 s"),
        (timedelta(seconds=59), "59 s"),
        (timedelta(minutes=14, seconds=59), "14 min 59 s"),
        (timedelta(hours=2, minutes=1, seconds=7), "2 h 1 min"),
        (timedelta(days=3, seconds=5), "3 d"),
        (-timedelta(minutes=5), "expired 5 min ago"),
    ],
)
def test_format_time_left(left, text):
    assert format_time_left(left) == text


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT, as Ctrl+C does")
def test_serve_starts_the_api_on_the_given_port_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite:///{tmp_path / 'lesson.db'}"}
    command = [sys.executable, "-m", "lesson_code", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        response = wait_until_answering(f"http://127.0.0.1:{port}/docs", server, timeout=30)
        assert "<title>JWT lesson service - Swagger UI</title>" in response.text
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=30)[0]
    assert server.returncode == 0
    assert f"Uvicorn running on http://127.0.0.1:{port}" in output
    assert "Finished server process" in output
    assert "Traceback" not in output
