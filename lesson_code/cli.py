"""python -m lesson_code: make a token, look inside one, manage the users and keys, or serve the API."""

import argparse
import getpass
import ipaddress
import json
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import anyio
from jose import jws
from jose.exceptions import JOSEError
from sqlalchemy import Engine

from lesson_code import jwks_verify, key_store, keys, store
from lesson_code.hashing import PasswordChecks
from lesson_code.passwords import password_hash
from lesson_code.protection import LimitsUnavailable, LoginThrottle
from lesson_code.settings import DEFAULT_DATABASE_FILE, SettingsError, checked_settings
from lesson_code.tokens import (
    ALGORITHM,
    MAX_TOKEN_LENGTH,
    SecretKeyError,
    TokenError,
    create_access_token,
    decode_access_token,
    expires_at,
    get_signing_key,
    get_unverified_claims,
    get_unverified_header,
    time_left,
)

MAX_MINUTES = 60 * 24 * 366
MAX_COUNT = 100_000
MAX_STDIN_BYTES = MAX_TOKEN_LENGTH + 64  # a token and some white space around it
ACCEPTED, NOT_ACCEPTED, BAD_INPUT, INTERRUPTED = 0, 1, 2, 130
EXIT_STATUS = (
    "exit status: 0 done (inspect: the token is accepted), 1 inspect: the token is readable but not accepted, "
    "2 bad input, an unreadable token, an unusable secret or database (one line on standard error), "
    "130 interrupted (Ctrl-C)"
)
USERS_EXIT_STATUS = (
    "exit status: 0 done, 2 bad input, an unknown or existing user, or an unusable database "
    "(one line on standard error), 130 interrupted (Ctrl-C)"
)
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a forward path
MAX_FULL_NAME_LENGTH = 200
MIN_PASSWORD_LENGTH = 12  # OWASP ASVS V2.1.1
MAX_PASSWORD_BYTES = 1024
KEYS_EXIT_STATUS = "exit status: 0 done, 2 an unusable key folder, key file or setting (one line on standard error)"
PASSWORD_INPUT = (
    "The password is asked twice at a prompt that does not echo it, or read from the first line of standard "
    f"input with --password-stdin (for scripts and pipes). It must be at least {MIN_PASSWORD_LENGTH} characters "
    f"(OWASP ASVS V2.1.1) and at most {MAX_PASSWORD_BYTES} bytes."
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


def count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {MAX_COUNT}, not {text!r}")
    return int(text)


def trusted_addresses(text: str) -> str:
    for item in text.split(","):
        if item.strip() == "*":
            continue
        try:
            ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected addresses or networks separated by commas (127.0.0.1,10.0.0.0/8) or *, not {text!r}"
            ) from None
    return text


def username(text: str) -> str:
    if not store.is_username(text):
        raise argparse.ArgumentTypeError(f"a username is {store.USERNAME_RULE}, not {text!r}")
    return text


def full_name(text: str) -> str:
    if not text.strip() or not text.isprintable() or len(text) > MAX_FULL_NAME_LENGTH:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_FULL_NAME_LENGTH} printable characters, not {text!r}")
    return text


def email(text: str) -> str:
    if not EMAIL.fullmatch(text) or not text.isprintable() or len(text) > MAX_EMAIL_LENGTH:
        raise argparse.ArgumentTypeError(f"expected an address such as dave@example.com, not {text!r}")
    return text


def build_parser() -> Parser:
    parser = Parser(
        prog="python -m lesson_code",
        description="Make and inspect the lesson's JWT access tokens (HS256, python-jose), manage the API's users "
        "and signing keys, or serve the API and a resource server. The secret comes from "
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
        description="Print a token's header and payload, when it expires, and whether the API would accept it: "
        "checked with the secret (HS256), or with the key folder's live keys, JWT_ISSUER and JWT_AUDIENCE "
        "(ES256, RS256).",
        epilog="exit status: 0 the token is accepted, 1 it is readable but not accepted, "
        "2 it is unreadable or the secret is unusable (one line on standard error)",
    )
    inspect.add_argument("token", help="the token, or - to read it from standard input")
    inspect.set_defaults(run=run_inspect)

    serve = commands.add_parser(
        "serve",
        help="run the finished API (users, sessions, scopes) with uvicorn",
        description="Serve lesson_code.service, the finished API: logins, refresh, logout and scopes, with users and "
        "sessions in the database DATABASE_URL names (else lesson.db). Open http://HOST:PORT/docs to try it. The "
        "secret, the settings and the database are checked before the server starts.",
        epilog="exit status: 0 stopped (Ctrl-C), 2 an unusable secret, setting or database (one line on standard "
        "error)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=port, default=8000, help="port to listen on (default: 8000)")
    serve.add_argument(
        "--workers",
        type=count,
        default=1,
        metavar="N",
        help="worker processes (default: 1). More than one needs LOGIN_LIMITS_STORAGE_URL=async+redis://..., so "
        "that every worker counts the same logins; the cap on password hashes holds for the machine either way",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        type=trusted_addresses,
        metavar="ADDRESSES",
        help="the reverse proxy's addresses, separated by commas: only a request from one of them is taken to come "
        "from the client its X-Forwarded-For names, so login limits count each client, not the proxy "
        "(default: FORWARDED_ALLOW_IPS, else 127.0.0.1)",
    )
    serve.add_argument(
        "--limit-concurrency",
        type=count,
        metavar="N",
        help="connections and requests at once, per worker, beyond which uvicorn answers 503 (default: no limit); "
        "keep it under the open-file limit (ulimit -n)",
    )
    serve.set_defaults(run=run_serve)

    serve_resource = commands.add_parser(
        "serve-resource",
        help="run the resource server: it checks the API's ES256 tokens with the public keys",
        description="Serve lesson_code.resource_server: a second API that holds no key and no database. It fetches "
        "the public keys of the issuer (JWKS_URL, by default JWT_ISSUER/.well-known/jwks.json) and accepts the "
        "issuer's ES256 or RS256 access tokens naming JWT_ISSUER and JWT_AUDIENCE. Start the issuer with "
        "JWT_ALGORITHM=ES256 python -m lesson_code serve.",
        epilog="exit status: 0 stopped (Ctrl-C), 2 an unusable setting (one line on standard error)",
    )
    serve_resource.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve_resource.add_argument("--port", type=port, default=8001, help="port to listen on (default: 8001)")
    serve_resource.set_defaults(run=run_serve_resource)
    add_users_commands(commands)
    add_keys_commands(commands)
    return parser


def add_keys_commands(commands) -> None:
    keys_parser = commands.add_parser(
        "keys",
        help="make, list and prune the ES256 or RS256 signing keys",
        description="Manage the signing keys of JWT_ALGORITHM=ES256 or RS256, kept in the folder JWT_KEY_DIR names "
        f"(default: {keys.KEY_DIR_NAME} next to the secret file), or, when DATABASE_URL names a database server, in "
        "its table signing_keys, shared by every instance (private halves encrypted with JWT_KEY_ENCRYPTION_KEY, "
        "which keys rotate needs). The newest key signs; the others stay published "
        "at /.well-known/jwks.json and accepted until every token they signed has expired (ACCESS_TOKEN_MINUTES "
        "after they were retired, plus a leeway), then they can be pruned. Running servers see a change within "
        f"{keys.CHECK_EVERY_SECONDS:g} second.",
        epilog=KEYS_EXIT_STATUS,
    )
    actions = keys_parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    rotate = actions.add_parser(
        "rotate",
        help="make a new signing key; the current one is retired, its tokens still accepted",
        description="Make a new signing key. It is published at once and signs "
        f"{keys.PUBLISH_AHEAD_SECONDS} seconds later, when every verifier can have fetched it; then new tokens name "
        "it, and tokens of the previous keys are still accepted until they expire, so nobody is logged out.",
        epilog=KEYS_EXIT_STATUS,
    )
    rotate.add_argument(
        "--algorithm",
        choices=keys.ASYMMETRIC_ALGORITHMS,
        help="the new key's algorithm (default: JWT_ALGORITHM when it is ES256 or RS256)",
    )
    rotate.set_defaults(run=run_keys_rotate)
    listing = actions.add_parser(
        "list",
        help="show each key: published, signing, retired (since when), or prunable",
        description="Show every key of the folder, oldest first, with its algorithm, when it was made and its state.",
        epilog=KEYS_EXIT_STATUS,
    )
    listing.set_defaults(run=run_keys_list)
    prune = actions.add_parser(
        "prune",
        help="delete the retired keys no valid token can name any more",
        description="Delete the keys retired longer ago than ACCESS_TOKEN_MINUTES plus a leeway: they are no longer "
        "published, and no token they signed can still be valid. The signing key is never deleted.",
        epilog=KEYS_EXIT_STATUS,
    )
    prune.set_defaults(run=run_keys_prune)


def add_users_commands(commands) -> None:
    users = commands.add_parser(
        "users",
        help="manage users, their passwords, scopes and sessions",
        description="Manage the API's users in its database: the one DATABASE_URL names (any SQLAlchemy URL), or "
        f"else the SQLite file {DEFAULT_DATABASE_FILE.name} in the repository. The first use creates the "
        "tables and, in a database with no user yet, the demo users alice, bob and carol (unless DEMO_USERS=false: "
        "set it for any real deployment). A username is " + store.USERNAME_RULE + ".",
        epilog=USERS_EXIT_STATUS,
    )
    actions = users.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def action(name: str, run, help: str, description: str):
        parser = actions.add_parser(name, help=help, description=description, epilog=USERS_EXIT_STATUS)
        parser.set_defaults(run=run)
        return parser

    def password_stdin(parser) -> None:
        parser.add_argument(
            "--password-stdin", action="store_true", help="read the password from the first line of standard input"
        )

    add = action(
        "add",
        run_users_add,
        "add a user, with a password",
        "Add a user who holds the scope 'me'. " + PASSWORD_INPUT + " It is stored as an Argon2id hash.",
    )
    add.add_argument("name", type=username, metavar="NAME", help="the new username, e.g. dave")
    add.add_argument("--full-name", type=full_name, help="e.g. 'Dave Bowman'")
    add.add_argument("--email", type=email, help="e.g. dave@example.com")
    password_stdin(add)

    action(
        "list",
        run_users_list,
        "show every user (never a password hash)",
        "Show every user as a table: username, full name, email, whether disabled, and scopes.",
    )

    disable = action(
        "disable",
        run_users_disable,
        "stop a user logging in, and end every session of theirs",
        "Disable a user: their logins are refused, and every session of theirs ends now, so their access and "
        "refresh tokens are refused on the next request. Says how many sessions were ended.",
    )
    disable.add_argument("name", type=username, metavar="NAME")

    enable = action(
        "enable",
        run_users_enable,
        "let a disabled user log in again",
        "Enable a user. Sessions ended when the user was disabled stay ended: the user logs in again.",
    )
    enable.add_argument("name", type=username, metavar="NAME")

    set_password = action(
        "set-password",
        run_users_set_password,
        "give a user a new password, and end every session of theirs",
        "Store a new password for a user and end every session of theirs (say, after a leak). "
        + PASSWORD_INPUT
        + " Says how many sessions were ended.",
    )
    set_password.add_argument("name", type=username, metavar="NAME")
    password_stdin(set_password)

    logout = action(
        "logout",
        run_users_logout,
        "end every session of a user (log them out everywhere)",
        "End every session of a user now: their access and refresh tokens are refused on the next request. "
        "The user can still log in. Says how many sessions were ended.",
    )
    logout.add_argument("name", type=username, metavar="NAME")

    scopes = action(
        "scopes",
        run_users_scopes,
        "set the scopes a user may be granted",
        "Replace the scopes a user may be granted at login. The API knows "
        + ", ".join(f"{name} ({description})" for name, description in store.SCOPES.items())
        + "; any other is refused. Taking a scope away ends every session of the user, so no token outlives the "
        "privilege it carried; adding one does not.",
    )
    scopes.add_argument("name", type=username, metavar="NAME")
    scopes.add_argument("scopes", nargs="+", metavar="SCOPE", help="every scope the user keeps, e.g. me admin")


def escaped(character: str) -> str:
    """A character as JSON writes it escaped: \\u009b, or a surrogate pair past U+FFFF."""
    code = ord(character)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def visible(text: str) -> str:
    """text with every character that is not printable (C0 and C1 controls, bidi and other format characters, line
    separators, unassigned code points) escaped, newlines kept: what a token says cannot steer the terminal, nor
    write over the lines around it. Inside a JSON string the escape is JSON's own."""
    if text.isprintable():
        return text
    return "".join(
        character if character.isprintable() or character == "\n" else escaped(character) for character in text
    )


def say(text: str, stream=None) -> None:
    """Print one or more lines, every character that is not printable escaped (visible), in the stream's encoding."""
    stream = stream or sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    print(visible(text).encode(encoding, "backslashreplace").decode(encoding), file=stream)


def run_token(args) -> int:
    get_signing_key()
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
    get_signing_key()
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
    if header.get("alg") in keys.ASYMMETRIC_ALGORITHMS:
        return judge_with_key_folder(token, header)
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


def judge_with_key_folder(token: str, header: dict) -> int:
    """The Signature and Accepted lines of an ES256 or RS256 token, checked as the API checks it: with the live keys
    of the key folder, JWT_ISSUER and JWT_AUDIENCE."""
    settings, now = checked_settings(), datetime.now(timezone.utc)
    if key_store.keys_in_database(settings.database_url):
        ring, longest, where = public_keys_in_database(settings)
        store_name, of = f"the {where}", f"the {where}"
    else:
        directory = keys.key_dir_path()
        ring = keys.load_keys(directory) if directory.exists() or directory.is_symlink() else None
        longest = kept_for(directory) if ring is not None else None
        store_name, of = f"the key folder {directory}", str(directory)
    live = {} if ring is None else {key.kid: key.public_jwk() for key in ring.live(now, longest)}
    public_jwk = live.get(header.get("kid")) if isinstance(header.get("kid"), str) else None
    if public_jwk is None:
        say(f"Signature: not checked: {store_name} has no live key named by this kid")
    else:
        try:
            jws.verify(token, public_jwk, algorithms=[public_jwk["alg"]])
            say(f"Signature: valid ({public_jwk['alg']} with key {public_jwk['kid']} of {of})")
        except (JOSEError, RecursionError) as error:
            say(f"Signature: not valid with key {public_jwk['kid']} of {of} ({str(error).rstrip('.')})")
    try:
        jwks_verify.decode_signed_token(token, live, settings.jwt_issuer, settings.jwt_audience)
    except TokenError as error:
        say(f"Accepted:  no, {error}")
        return NOT_ACCEPTED
    say("Accepted:  yes")
    return ACCEPTED


@contextmanager
def open_database() -> Iterator[Engine]:
    """The store's engine on DATABASE_URL, with its tables, and the demo users in a database with no user (unless
    DEMO_USERS is off, as the service does); disposed afterwards."""
    settings = checked_settings()
    engine = store.make_engine(settings.database_url, pool_size=1)
    try:
        store.create_schema(engine)
        if settings.demo_users:
            store.seed_demo_users(engine, password_hash.hash)
        yield engine
    finally:
        engine.dispose()


def existing_user(engine: Engine, name: str) -> store.UserRecord:
    user = store.get_user(engine, name)
    if user is None:
        raise store.UnknownUser(f"no user named {name!r}")
    return user


def read_password_line() -> str:
    data = sys.stdin.buffer.readline(MAX_PASSWORD_BYTES + 2)
    line = data.removesuffix(b"\n").removesuffix(b"\r")
    if len(line) > MAX_PASSWORD_BYTES:
        raise CommandLineError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    try:
        return line.decode()
    except UnicodeDecodeError:
        raise CommandLineError("the password on standard input is not UTF-8 text") from None


def checked_password(password: str) -> str:
    if not password:
        raise CommandLineError("the password must not be empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise CommandLineError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters (OWASP ASVS V2.1.1)")
    if len(password.encode(errors="surrogatepass")) > MAX_PASSWORD_BYTES:
        raise CommandLineError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    return password


def ask_password(name: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("error", getpass.GetPassWarning)  # getpass would echo the password: refuse instead
        try:
            first = checked_password(getpass.getpass(f"New password for {name}: "))
            second = getpass.getpass("Repeat the password: ")
        except getpass.GetPassWarning:
            raise CommandLineError(
                "no terminal to ask for the password without echoing it: pipe it in with --password-stdin"
            ) from None
        except EOFError:
            raise CommandLineError("no password given (end of input at the prompt)") from None
        except UnicodeDecodeError:
            raise CommandLineError("the password typed is not text in the terminal's encoding") from None
    if first != second:
        raise CommandLineError("the passwords do not match")
    return first


def new_password_hash(args) -> str:
    password = read_password_line() if args.password_stdin else ask_password(args.name)
    return password_hash.hash(checked_password(password))


def sessions_ended(count: int) -> str:
    return f"ended {count} session{'' if count == 1 else 's'}"


def run_users_add(args) -> int:
    with open_database() as engine:
        if store.get_user(engine, args.name) is not None:
            raise store.UserExists(f"user {args.name!r} already exists")
        user = store.add_user(engine, args.name, new_password_hash(args), full_name=args.full_name, email=args.email)
    say(f"Added {user.username} (scopes: {user.scopes})")
    return 0


def table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def user_table(users: list[store.UserPublic]) -> list[str]:
    rows = [("USERNAME", "FULL NAME", "EMAIL", "DISABLED", "SCOPES")]
    for user in users:
        disabled = "yes" if user.disabled else "no"
        rows.append((user.username, user.full_name or "-", user.email or "-", disabled, user.scopes))
    return table(rows)


def run_users_list(args) -> int:
    with open_database() as engine:
        users = store.list_users(engine)
    for line in user_table(users):
        say(line)
    return 0


def run_users_disable(args) -> int:
    with open_database() as engine:
        ended = store.set_disabled(engine, args.name, True)
    say(f"Disabled {args.name} and {sessions_ended(ended)}")
    return 0


def run_users_enable(args) -> int:
    with open_database() as engine:
        store.set_disabled(engine, args.name, False)
    say(f"Enabled {args.name}")
    return 0


def run_users_set_password(args) -> int:
    with open_database() as engine:
        existing_user(engine, args.name)
        ended = store.set_password(engine, args.name, new_password_hash(args))
    say(f"Set a new password for {args.name} and {sessions_ended(ended)}")
    return 0


def run_users_logout(args) -> int:
    with open_database() as engine:
        existing_user(engine, args.name)
        ended = store.end_user_sessions(engine, args.name)
    say(f"Logged {args.name} out everywhere: {sessions_ended(ended)}")
    return 0


def run_users_scopes(args) -> int:
    with open_database() as engine:
        before = existing_user(engine, args.name).scopes.split()
        ended = store.set_scopes(engine, args.name, args.scopes)
        after = existing_user(engine, args.name).scopes.split()
    taken = [scope for scope in before if scope not in after]
    if taken:
        say(f"Scopes of {args.name}: {' '.join(after)} (took away {' '.join(taken)} and {sessions_ended(ended)})")
    else:
        say(f"Scopes of {args.name}: {' '.join(after)} (none taken away: sessions go on)")
    return 0


def kept_for(directory) -> timedelta:
    """How long a retired key stays: ACCESS_TOKEN_MINUTES, or the longer lifetime a server recorded in the folder."""
    setting = timedelta(minutes=checked_settings().access_token_minutes)
    return max(setting, keys.recorded_longest_token(directory)) if directory.exists() else setting


@contextmanager
def key_database(settings) -> Iterator[Engine]:
    """An engine on DATABASE_URL with the key tables (made if missing), for the keys commands; disposed afterwards."""
    engine = store.make_engine(settings.database_url, pool_size=1)
    try:
        key_store.create_schema(engine)
        yield engine
    finally:
        engine.dispose()


def public_keys_in_database(settings) -> tuple[keys.KeyRing | None, timedelta, str]:
    """The keys' public halves (no encryption key needed), how long retired ones are kept, and where they are."""
    with key_database(settings) as engine:
        return key_store.load_public_keys(engine), database_kept_for(engine), key_store.place(engine)


def database_kept_for(engine: Engine) -> timedelta:
    """kept_for() of the keys in the database: ACCESS_TOKEN_MINUTES, or the longer lifetime an instance recorded."""
    setting = timedelta(minutes=checked_settings().access_token_minutes)
    return max(setting, key_store.recorded_longest_token(engine))


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_state(ring: keys.KeyRing, key: keys.SigningKey, now: datetime, longest: timedelta) -> str:
    state = ring.state(key, now, longest)
    if state is keys.KeyState.SIGNING:
        return "signing"
    if state is keys.KeyState.PUBLISHED:
        return f"published, signs from {when(ring.signs_from(key))}"
    retired = ring.retired_at(key)
    prunable = retired + longest + timedelta(seconds=keys.LEEWAY_SECONDS)
    if state is keys.KeyState.RETIRED:
        return f"retired {when(retired)}, published until {when(prunable)}"
    return f"prunable since {when(prunable)} (retired {when(retired)})"


def run_keys_rotate(args) -> int:
    algorithm = args.algorithm or checked_settings().jwt_algorithm
    if algorithm not in keys.ASYMMETRIC_ALGORITHMS:
        raise CommandLineError(
            f"JWT_ALGORITHM is {algorithm}, which signs with the secret, not a key: give --algorithm ES256 or RS256"
        )
    settings = checked_settings()
    if key_store.keys_in_database(settings.database_url):
        return rotate_in_database(settings, algorithm)
    directory, now = keys.key_dir_path(), datetime.now(timezone.utc)
    before = keys.load_keys(directory, create=True)
    key = keys.rotate(directory, algorithm, now)
    if before is None:
        say(f"New signing key {key.kid} ({algorithm}) in {directory}")
        return 0
    ring = keys.load_keys(directory)
    starts = ring.signs_from(key)
    until = starts + kept_for(directory) + timedelta(seconds=keys.LEEWAY_SECONDS)
    say(f"New key {key.kid} ({algorithm}) in {directory}: published now, signs from {when(starts)}")
    say(
        f"Then {before.signing_key(starts).kid} is retired: its tokens are accepted, and it is published, until "
        f"{when(until)}"
    )
    return 0


def rotate_in_database(settings, algorithm: str) -> int:
    """keys rotate on the database's table: once for every instance, the key made at the database server's time."""
    encryption = key_store.KeyEncryption(settings.jwt_key_encryption_key.get_secret_value())
    with key_database(settings) as engine:
        where = key_store.place(engine)
        before = key_store.load_public_keys(engine)
        key = key_store.rotate(engine, encryption, algorithm)
        if before is None:
            say(f"New signing key {key.kid} ({algorithm}) in the {where}")
            return 0
        ring = key_store.load_public_keys(engine)
        until_after = database_kept_for(engine) + timedelta(seconds=keys.LEEWAY_SECONDS)
    starts = ring.signs_from(key)
    say(f"New key {key.kid} ({algorithm}) in the {where}: published now, signs from {when(starts)}")
    say(
        f"Then {before.signing_key(starts).kid} is retired: its tokens are accepted, and it is published, until "
        f"{when(starts + until_after)}"
    )
    return 0


def run_keys_list(args) -> int:
    settings = checked_settings()
    if key_store.keys_in_database(settings.database_url):
        ring, longest, where = public_keys_in_database(settings)
        if ring is None:
            say(f"No key in the {where} yet: the API makes one when it starts, or run keys rotate")
            return 0
        return list_keys(ring, longest, f"Keys in the {where}, oldest first:")
    directory = keys.key_dir_path()
    ring = keys.load_keys(directory) if directory.exists() or directory.is_symlink() else None
    if ring is None:
        say(f"No key in {directory} yet: the API makes one when it starts with JWT_ALGORITHM=ES256, or run keys rotate")
        return 0
    return list_keys(ring, kept_for(directory), f"Keys in {directory}, oldest first:")


def list_keys(ring: keys.KeyRing, longest: timedelta, title: str) -> int:
    now = datetime.now(timezone.utc)
    rows = [("KID", "ALG", "MADE", "STATE")]
    rows += [(key.kid, key.algorithm, when(key.created), describe_state(ring, key, now, longest)) for key in ring.keys]
    say(title)
    for line in table(rows):
        say(line)
    return 0


def run_keys_prune(args) -> int:
    settings = checked_settings()
    if key_store.keys_in_database(settings.database_url):
        with key_database(settings) as engine:
            gone = key_store.prune(engine, timedelta(minutes=settings.access_token_minutes))
        return say_pruned(gone)
    directory = keys.key_dir_path()
    if not (directory.exists() or directory.is_symlink()):
        say(f"No key in {directory}: nothing to prune")
        return 0
    return say_pruned(keys.prune(directory, datetime.now(timezone.utc), kept_for(directory)))


def say_pruned(gone: list[keys.SigningKey]) -> int:
    for key in gone:
        say(f"Deleted {key.kid} ({key.algorithm}, made {when(key.created)})")
    if not gone:
        say("Nothing to prune: every retired key may still have valid tokens")
    return 0


def check_login_limits(settings, workers: int) -> None:
    """Refuse, in one line, what would make the login limits or the hashing cap mean less than they say."""
    throttle = LoginThrottle(settings.login_limits_storage_url)
    if workers > 1 and not throttle.shared:
        raise CommandLineError(
            f"--workers {workers} with LOGIN_LIMITS_STORAGE_URL={settings.login_limits_storage_url}: each worker "
            f"would count logins on its own ({workers} times the limits); set LOGIN_LIMITS_STORAGE_URL="
            "async+redis://HOST:6379, or serve one worker"
        )
    anyio.run(throttle.check)
    checks = PasswordChecks(settings.max_logins_waiting_to_hash, settings.max_logins_hashing_per_client)
    checks.close()
    if workers > 1 and not checks.shared:
        raise CommandLineError(
            f"--workers {workers}: this system has no flock, so each worker would hash passwords on its own; serve one"
        )


def run_serve(args) -> int:
    get_signing_key()
    settings = checked_settings()
    with open_database():
        pass
    if settings.jwt_algorithm in keys.ASYMMETRIC_ALGORITHMS:
        source = key_store.key_source_for(settings)  # the folder, or the database's table: made once if empty
        try:
            source.ring()
        finally:
            if isinstance(source, key_store.DatabaseKeySource):
                source.close()
    check_login_limits(settings, args.workers)
    import uvicorn

    uvicorn.run(
        "lesson_code.service:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        limit_concurrency=args.limit_concurrency,
    )
    return 0


def run_serve_resource(args) -> int:
    jwks_verify.check_jwks_url(checked_settings().jwks_location)
    import uvicorn

    uvicorn.run("lesson_code.resource_server:app", host=args.host, port=args.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line with argv (default: sys.argv[1:]) and return the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except (
        CommandLineError,
        SecretKeyError,
        SettingsError,
        store.StoreError,
        keys.KeyStoreError,
        LimitsUnavailable,
        jwks_verify.JwksUrlError,
    ) as error:
        say(f"error: {error}", sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        return INTERRUPTED
