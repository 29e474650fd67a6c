import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import jwt as pyjwt
import pytest

from lesson_code.cli import describe, main
from lesson_code.tokens import SECRET_KEY, create_access_token

ROOT = Path(__file__).resolve().parent.parent
# RFC 7515, Appendix A.1: an HS256 JWS whose header has line breaks in its JSON.
RFC7515_TOKEN = (
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)


def run_cli(*args: str, secret: str | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "TZ": "UTC", "PYTHONPATH": str(ROOT)}
    if secret is not None:
        env["JWT_SECRET_KEY"] = secret
    return subprocess.run(
        [sys.executable, "-m", "lesson_code", *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
    )


def test_token_command_prints_a_token_pyjwt_verifies_with_the_key():
    key = secrets.token_hex(32)
    result = run_cli("token", "alice", "--minutes", "30", secret=key)
    assert (result.returncode, result.stderr) == (0, "")
    match = re.fullmatch(r"JWT Token: ([\w-]+\.[\w-]+\.[\w-]+)\n", result.stdout)
    assert match
    claims = pyjwt.decode(match[1], key, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 1800


@pytest.mark.parametrize(("args", "seconds"), [((), 900), (("--minutes", "0"), 0), (("--minutes", "525600"), 31536000)])
def test_token_command_lifetimes(capsys, args, seconds):
    assert main(["token", "bob", *args]) == 0
    token = capsys.readouterr().out.removeprefix("JWT Token: ").strip()
    claims = pyjwt.decode(token, SECRET_KEY, algorithms=["HS256"], options={"verify_exp": False})
    assert claims["exp"] - claims["iat"] == seconds


def inspect_lines(token: str, stdin: bool = False) -> list[str]:
    result = run_cli("inspect", "-" if stdin else token, secret=SECRET_KEY, stdin=token + "\n" if stdin else "")
    assert (result.returncode, result.stderr) == (0, "")
    return result.stdout.splitlines()


@pytest.mark.parametrize("stdin", [False, True], ids=["argument", "standard input"])
def test_inspect_a_fresh_token(stdin):
    token = create_access_token({"sub": "alice"}, expires_delta=timedelta(minutes=30))
    claims = pyjwt.decode(token, SECRET_KEY, algorithms=["HS256"])
    lines = inspect_lines(token, stdin)
    assert lines[:11] == [
        "Header: {",
        '  "alg": "HS256",',
        '  "typ": "JWT"',
        "}",
        "Payload: {",
        '  "sub": "alice",',
        f'  "iat": {claims["iat"]},',
        f'  "exp": {claims["exp"]}',
        "}",
        lines[9],
        lines[10],
    ]
    assert re.fullmatch(r"Expires:   (\S+ \S+) UTC \(\1 UTC local time\)", lines[9])
    assert re.fullmatch(r"Time left: 29 min 5\d s|Time left: 30 min", lines[10])
    assert lines[11:] == ["Signature: valid (HS256 with the configured secret)", "Accepted:  yes"]


def test_inspect_the_rfc_7515_example_token():
    assert inspect_lines(RFC7515_TOKEN)[:10] == [
        "Header: {",
        '  "typ": "JWT",',
        '  "alg": "HS256"',
        "}",
        "Payload: {",
        '  "iss": "joe",',
        '  "exp": 1300819380,',
        '  "http://example.com/is_root": true',
        "}",
        "Expires:   2011-03-22 18:43:00 UTC (2011-03-22 18:43:00 UTC local time)",
    ]
    lines = inspect_lines(RFC7515_TOKEN)[10:]
    assert re.fullmatch(r"Time left: expired \d{4} d \d+ h ago", lines[0])
    assert lines[1:] == [
        "Signature: not valid with the configured secret (Signature verification failed)",
        "Accepted:  no, Signature verification failed",
    ]


def test_inspect_says_why_a_token_is_not_accepted():
    token = create_access_token({"sub": "alice"}, expires_delta=timedelta(hours=-3))
    lines = inspect_lines(token)
    assert lines[-3:] == [
        "Time left: expired 3 h ago",
        "Signature: valid (HS256 with the configured secret)",
        "Accepted:  no, token has expired",
    ]


def test_inspect_a_token_without_exp():
    token = pyjwt.encode({"sub": "alice"}, SECRET_KEY, algorithm="HS256")
    assert inspect_lines(token)[-3:] == [
        "Expires:   never (no exp claim)",
        "Signature: valid (HS256 with the configured secret)",
        'Accepted:  no, missing required key "exp" among claims',
    ]


BAD_INPUT = {
    "garbage token": (
        ("inspect", "garbage"),
        "error: not a readable JWT: a token is three base64url parts joined by dots",
    ),
    "empty stdin": (("inspect", "-"), "error: not a readable JWT: a token is three base64url parts joined by dots"),
    "no command": ((), "error: the following arguments are required: COMMAND (see: python -m lesson_code --help)"),
    "unknown command": (
        ("mint",),
        "error: argument COMMAND: invalid choice: 'mint' (choose from 'token', 'inspect', 'serve')"
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
}


@pytest.mark.parametrize(("args", "line"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_line_on_stderr_and_exit_2(args, line):
    result = run_cli(*args, secret=SECRET_KEY)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", line + "\n")


@pytest.mark.parametrize(("command", "secret"), [("token", ""), ("token", "mysecretkey123"), ("serve", "changethis")])
def test_a_weak_secret_is_refused_at_start_up(command, secret):
    result = run_cli(command, *(["alice"] if command == "token" else []), secret=secret)
    assert result.returncode == 2
    assert result.stdout == ""
    assert re.fullmatch(r"error: JWT_SECRET_KEY is \d+ bytes; HS256 needs at least 32 random bytes .*\n", result.stderr)


def test_help_reads_well():
    result = run_cli("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m lesson_code [-h] COMMAND ...\n")
    for line in (
        "token     print a new access token for a user",
        "inspect   show what a token says and whether it verifies",
    ):
        assert line in result.stdout


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
def test_describe_time_left(left, text):
    assert describe(left) == text


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT, as Ctrl+C does")
def test_serve_starts_the_api_on_the_given_port_and_stops_on_ctrl_c():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "lesson_code", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
                time.sleep(0.1)
        assert response.status_code == 200
        assert "<title>JWT lesson API - Swagger UI</title>" in response.text
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=30)[0]
    assert server.returncode == 0
    assert f"Uvicorn running on http://127.0.0.1:{port}" in output
    assert "Finished server process" in output
    assert "Traceback" not in output
