"""python -m lesson_code: make a token, or look inside one."""

import argparse
import json
import sys
from datetime import timedelta

from jose import jws
from jose.exceptions import JOSEError

MAX_MINUTES = 60 * 24 * 366


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
        description="Make and inspect the lesson's JWT access tokens (HS256, python-jose). "
        "The secret comes from JWT_SECRET_KEY, or from .jwt_secret in this folder.",
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


def load_tokens():
    try:
        from lesson_code import tokens
    except RuntimeError as error:  # tokens.SecretKeyError: the secret is refused at start-up
        raise CommandLineError(str(error)) from None
    return tokens


def run_token(args) -> int:
    tokens = load_tokens()
    if not args.username.strip():
        raise CommandLineError("the username must not be empty")
    expires_delta = None if args.minutes is None else timedelta(minutes=args.minutes)
    print("JWT Token:", tokens.create_access_token({"sub": args.username}, expires_delta=expires_delta))
    return 0


def run_inspect(args) -> int:
    tokens = load_tokens()
    token = sys.stdin.read().strip() if args.token == "-" else args.token.strip()
    try:
        header = tokens.get_unverified_header(token)
        claims = tokens.get_unverified_claims(token)
        expiry = tokens.expires_at(claims)
    except tokens.TokenError as error:
        raise CommandLineError(f"not a readable JWT: {error}") from None

    print("Header:", json.dumps(header, indent=2, ensure_ascii=False))
    print("Payload:", json.dumps(claims, indent=2, ensure_ascii=False))
    if expiry is None:
        print("Expires:   never (no exp claim)")
    else:
        local = expiry.astimezone()
        print(f"Expires:   {expiry:%Y-%m-%d %H:%M:%S} UTC ({local:%Y-%m-%d %H:%M:%S} {local.tzname()} local time)")
        print(f"Time left: {describe(tokens.time_left(claims))}")
    try:
        jws.verify(token, tokens.SECRET_KEY, algorithms=[tokens.ALGORITHM])
        print(f"Signature: valid ({tokens.ALGORITHM} with the configured secret)")
    except JOSEError as error:
        print(f"Signature: not valid with the configured secret ({str(error).rstrip('.')})")
    try:
        tokens.decode_access_token(token)
        print("Accepted:  yes")
    except tokens.TokenError as error:
        print(f"Accepted:  no, {error}")
    return 0


def describe(left: timedelta) -> str:
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


def run_serve(args) -> int:
    load_tokens()
    import uvicorn

    uvicorn.run("lesson_code.app:app", host=args.host, port=args.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except CommandLineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
