"""python -m lesson_code: make a token, look inside one, or serve the API."""

import argparse
import json
import sys
from datetime import datetime, timedelta

from jose import jws
from jose.exceptions import JOSEError

from lesson_code.tokens import (
    ALGORITHM,
    MAX_TOKEN_LENGTH,
    SecretKeyError,
    TokenError,
    create_access_token,
    decode_access_token,
    expires_at,
    get_secret_key,
    get_signing_key,
    get_unverified_claims,
    get_unverified_header,
    time_left,
)

MAX_MINUTES = 60 * 24 * 366
MAX_STDIN_BYTES = MAX_TOKEN_LENGTH + 64  # a token and some white space around it
ACCEPTED, NOT_ACCEPTED, BAD_INPUT = 0, 1, 2
EXIT_STATUS = (
    "exit status: 0 done (inspect: the token is accepted), 1 inspect: the token is readable but not accepted, "
    "2 bad input, an unreadable token or an unusable secret (one line on standard error)"
)


class CommandLineError(Exception):
    """Bad input: printed as one line on standard error, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CommandLineError(f"{message} (see: python -m lesson_code --help)")


def minutes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if not 0 <= value <= MAX_MINUTES:
        raise argparse.ArgumentTypeError(f"expected 0 to {MAX_MINUTES} (a year), not {value}")
    return value


def port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, not {text!r}")
    return int(text)


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m lesson_code",
        description="Make and inspect the lesson's JWT access tokens (HS256, python-jose). The secret comes from "
        "JWT_SECRET_KEY, or else from the file JWT_SECRET_FILE names (default: .jwt_secret in the repository).",
        epilog=EXIT_STATUS,
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    token = commands.add_parser(
        "token",
        help="print a new access token for a user",
        description="Print 'JWT Token: <token>' for USERNAME (the sub claim): the seed lesson's sample program.",
    )
    token.add_argument("username", help="who the token is for, e.g. alice")
    token.add_argument("--minutes", type=minutes, default=None, metavar="N", help="lifetime in minutes (default: 15)")
    token.set_defaults(run=run_token)

    inspect = commands.add_parser(
        "inspect",
        help="show what a token says and whether it verifies",
        description="Print a token's header and payload, when it expires, and whether it verifies with the secret.",
        epilog="exit status: 0 the token is accepted, 1 it is readable but not accepted, "
        "2 it is unreadable or the secret is unusable (one line on standard error)",
    )
    inspect.add_argument("token", help="the token, or - to read it from standard input")
    inspect.set_defaults(run=run_inspect)

    serve = commands.add_parser(
        "serve",
        help="run the lesson's API with uvicorn",
        description="Serve lesson_code.app; open http://HOST:PORT/docs to try it.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=port, default=8000, help="port to listen on (default: 8000)")
    serve.set_defaults(run=run_serve)
    return parser


def say(text: str, stream=None) -> None:
    stream = stream or sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    print(text.encode(encoding, "backslashreplace").decode(encoding), file=stream)


def run_token(args) -> int:
    get_secret_key()
    if not args.username.strip():
        raise CommandLineError("the username must not be empty")
    expires_delta = None if args.minutes is None else timedelta(minutes=args.minutes)
    say(f"JWT Token: {create_access_token({'sub': args.username}, expires_delta=expires_delta)}")
    return 0


def read_token(argument: str) -> str:
    if argument != "-":
        return argument.strip()
    data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
    if len(data) > MAX_STDIN_BYTES:
        raise CommandLineError(f"not a readable JWT: token is longer than {MAX_TOKEN_LENGTH} characters")
    try:
        return data.decode().strip()
    except UnicodeDecodeError:
        raise CommandLineError("not a readable JWT: standard input is not UTF-8 text") from None


def run_inspect(args) -> int:
    get_secret_key()
    token = read_token(args.token)
    try:
        header = get_unverified_header(token)
        claims = get_unverified_claims(token)
    except TokenError as error:
        raise CommandLineError(f"not a readable JWT: {error}") from None

    say(f"Header: {json.dumps(header, indent=2, ensure_ascii=False)}")
    say(f"Payload: {json.dumps(claims, indent=2, ensure_ascii=False)}")
    for line in expiry_lines(claims):
        say(line)
    say(f"Signature: {signature_verdict(token)}")
    try:
        decode_access_token(token)
    except TokenError as error:
        say(f"Accepted:  no, {error}")
        return NOT_ACCEPTED
    say("Accepted:  yes")
    return ACCEPTED


def expiry_lines(claims: dict) -> list[str]:
    try:
        expiry = expires_at(claims)
    except TokenError as error:
        return [f"Expires:   {error}"]
    if expiry is None:
        return ["Expires:   never (no exp claim)"]
    return [
        f"Expires:   {format_moment(expiry)} UTC ({format_local_time(expiry)})",
        f"Time left: {format_time_left(time_left(claims))}",
    ]


def format_moment(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


def format_local_time(moment: datetime) -> str:
    try:
        local = moment.astimezone()
    except (OverflowError, OSError, ValueError):
        return "out of range in local time"
    return f"{format_moment(local)} {local.tzname()} local time"


def format_time_left(left: timedelta) -> str:
    seconds = int(abs(left.total_seconds()))
    units = [("d", 86400), ("h", 3600), ("min", 60), ("s", 1)]
    largest = next(index for index, (_, size) in enumerate(units) if seconds >= size or size == 1)
    parts = []
    for name, size in units[largest : largest + 2]:
        amount, seconds = divmod(seconds, size)
        if amount or not parts:
            parts.append(f"{amount} {name}")
    text = " ".join(parts)
    return text if left.total_seconds() >= 0 else f"expired {text} ago"


def signature_verdict(token: str) -> str:
    try:
        jws.verify(token, get_signing_key(), algorithms=[ALGORITHM])
    except (JOSEError, RecursionError) as error:
        return f"not valid with the configured secret ({str(error).rstrip('.')})"
    return f"valid ({ALGORITHM} with the configured secret)"


def run_serve(args) -> int:
    get_secret_key()
    import uvicorn

    uvicorn.run("lesson_code.app:app", host=args.host, port=args.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line with argv (default: sys.argv[1:]) and return the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except (CommandLineError, SecretKeyError) as error:
        say(f"error: {error}", sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        return 130
