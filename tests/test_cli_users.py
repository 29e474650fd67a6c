"""python -m lesson_code users ...: the user store from the command line, on SQLite and on a real PostgreSQL."""

import getpass
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from test_cli import choices

from lesson_code import session_store, store
from lesson_code.cli import main
from lesson_code.passwords import password_hash
from lesson_code.settings import Settings, get_settings
from tests.utils.postgres import PostgresServer, postgres_server  # noqa: F401  (postgres_server: a fixture)

ROOT = Path(__file__).resolve().parent.parent
SEE_HELP = "(see: python -m lesson_code --help)"
DEMO_TABLE = [
    "USERNAME  FULL NAME        EMAIL              DISABLED  SCOPES",
    "alice     Alice Liddell    alice@example.com  no        me",
    "bob       Bob the Builder  bob@example.com    yes       me",
    "carol     Carol Hatter     carol@example.com  no        me admin",
]
USERS_EXIT_STATUS = (
    "exit status: 0 done, 2 bad input, an unknown or existing user, or an unusable database "
    "(one line on standard error), 130 interrupted (Ctrl-C)"
)
NO_TERMINAL = "error: no terminal to ask for the password without echoing it: pipe it in with --password-stdin\n"


def run(capsys, *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def feed_stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


class Prompt:
    """getpass.getpass stand-in: answers in turn, and remembers the prompts it was shown."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, prompt: str = "Password: ", stream=None) -> str:
        self.prompts.append(prompt)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


@pytest.fixture
def prompt(monkeypatch) -> Iterator[Prompt]:
    """Replaces getpass.getpass; set .answers before running the command."""
    fake = Prompt()
    monkeypatch.setattr(getpass, "getpass", fake)
    return fake


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch) -> str:
    """DATABASE_URL: a SQLite file in tmp_path that does not exist yet."""
    url = f"sqlite:///{tmp_path / 'lesson.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> Iterator[str]:
    """DATABASE_URL: a new, empty database on SQLite and on a throwaway PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lesson.db'}"
        monkeypatch.setenv("DATABASE_URL", url)
        yield url
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    with server.database() as url:
        monkeypatch.setenv("DATABASE_URL", url)
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """The test's own connection to the database the command line uses, with the demo users in it."""
    engine = store.make_engine(database_url)
    store.create_schema(engine)
    store.seed_demo_users(engine, password_hash.hash)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = store.make_engine(sqlite_url)
    store.create_schema(engine)
    store.seed_demo_users(engine, password_hash.hash)
    yield engine
    engine.dispose()


def start_sessions(engine: Engine, username: str, count: int) -> list[str]:
    return [session_store.start_session(engine, username, "me", store.utc_now())[0] for _ in range(count)]


def is_live(engine: Engine, sid: str) -> bool:
    return session_store.get_session(engine, sid).ended_at is None and (
        store.active_session_user(engine, sid, store.utc_now()) is not None
    )


def password_of(engine: Engine, username: str) -> str:
    return store.get_user(engine, username).hashed_password


# The commands, on both databases


def test_list_on_a_fresh_database_shows_the_demo_users_and_no_hash(capsys, database_url):
    assert run(capsys, "users", "list") == (0, "\n".join(DEMO_TABLE) + "\n", "")
    assert run(capsys, "users", "list") == (0, "\n".join(DEMO_TABLE) + "\n", "")  # seeded once, listed twice


def test_add_stores_an_argon2id_hash_and_list_shows_the_user(capsys, monkeypatch, engine):
    feed_stdin(monkeypatch, b"open the pod bay doors\n")
    args = ("users", "add", "dave", "--full-name", "Dave Bowman", "--email", "dave@example.com", "--password-stdin")
    assert run(capsys, *args) == (0, "Added dave (scopes: me)\n", "")

    hashed = password_of(engine, "dave")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert password_hash.verify("open the pod bay doors", hashed)
    status, out, err = run(capsys, "users", "list")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "USERNAME  FULL NAME        EMAIL              DISABLED  SCOPES",
        "alice     Alice Liddell    alice@example.com  no        me",
        "bob       Bob the Builder  bob@example.com    yes       me",
        "carol     Carol Hatter     carol@example.com  no        me admin",
        "dave      Dave Bowman      dave@example.com   no        me",
    ]
    assert "$argon2" not in out


def test_disable_ends_every_session_of_the_user_and_enable_does_not_revive_them(capsys, engine):
    alices = start_sessions(engine, "alice", 2)
    carols = start_sessions(engine, "carol", 1)

    assert run(capsys, "users", "disable", "alice") == (0, "Disabled alice and ended 2 sessions\n", "")
    assert store.get_user(engine, "alice").disabled is True
    assert [session_store.get_session(engine, sid).ended_at is not None for sid in alices] == [True, True]
    assert [is_live(engine, sid) for sid in alices + carols] == [False, False, True]

    assert run(capsys, "users", "enable", "alice") == (0, "Enabled alice\n", "")
    assert store.get_user(engine, "alice").disabled is False
    assert [is_live(engine, sid) for sid in alices] == [False, False]
    assert run(capsys, "users", "disable", "alice") == (0, "Disabled alice and ended 0 sessions\n", "")


def test_set_password_replaces_the_hash_and_ends_every_session(capsys, monkeypatch, engine):
    alices = start_sessions(engine, "alice", 1)
    carols = start_sessions(engine, "carol", 1)
    feed_stdin(monkeypatch, b"through the looking-glass\n")

    assert run(capsys, "users", "set-password", "alice", "--password-stdin") == (
        0,
        "Set a new password for alice and ended 1 session\n",
        "",
    )
    hashed = password_of(engine, "alice")
    assert password_hash.verify("through the looking-glass", hashed)
    assert not password_hash.verify("wonderland", hashed)
    assert [is_live(engine, sid) for sid in alices + carols] == [False, True]


def test_logout_ends_every_session_at_once(capsys, engine):
    alices = start_sessions(engine, "alice", 3)
    carols = start_sessions(engine, "carol", 1)
    session_store.end_session(engine, alices[0], store.utc_now())  # already over: not counted again

    assert run(capsys, "users", "logout", "alice") == (0, "Logged alice out everywhere: ended 2 sessions\n", "")
    assert [is_live(engine, sid) for sid in alices + carols] == [False, False, False, True]
    assert store.get_user(engine, "alice").disabled is False
    assert run(capsys, "users", "logout", "alice") == (0, "Logged alice out everywhere: ended 0 sessions\n", "")


def test_scopes_taking_one_away_ends_the_sessions_adding_one_does_not(capsys, engine):
    alices = start_sessions(engine, "alice", 2)
    carols = start_sessions(engine, "carol", 1)

    assert run(capsys, "users", "scopes", "alice", "me", "admin") == (
        0,
        "Scopes of alice: me admin (none taken away: sessions go on)\n",
        "",
    )
    assert store.get_user(engine, "alice").scopes == "me admin"
    assert [is_live(engine, sid) for sid in alices] == [True, True]

    assert run(capsys, "users", "scopes", "carol", "me") == (
        0,
        "Scopes of carol: me (took away admin and ended 1 session)\n",
        "",
    )
    assert store.get_user(engine, "carol").scopes == "me"
    assert [is_live(engine, sid) for sid in alices + carols] == [True, True, False]


def test_unknown_user_is_one_line_and_exit_2_and_asks_no_password(capsys, engine, prompt):
    for args in (
        ("disable", "zed"),
        ("enable", "zed"),
        ("set-password", "zed"),
        ("logout", "zed"),
        ("scopes", "zed", "me"),
    ):
        assert run(capsys, "users", *args) == (2, "", "error: no user named 'zed'\n"), args
    assert prompt.prompts == []
    assert [user.username for user in store.list_users(engine)] == ["alice", "bob", "carol"]


# Password input


def test_add_asks_for_the_password_twice_without_echo(capsys, sqlite_engine, prompt):
    prompt.answers = ["daisy, daisy", "daisy, daisy"]
    assert run(capsys, "users", "add", "hal") == (0, "Added hal (scopes: me)\n", "")
    assert prompt.prompts == ["New password for hal: ", "Repeat the password: "]
    assert password_hash.verify("daisy, daisy", password_of(sqlite_engine, "hal"))


def test_set_password_asks_twice_too(capsys, sqlite_engine, prompt):
    prompt.answers = ["mad hatter's tea", "mad hatter's tea"]
    assert run(capsys, "users", "set-password", "carol") == (
        0,
        "Set a new password for carol and ended 0 sessions\n",
        "",
    )
    assert prompt.prompts == ["New password for carol: ", "Repeat the password: "]
    assert password_hash.verify("mad hatter's tea", password_of(sqlite_engine, "carol"))


PROMPTED = {
    "do not match": (["daisy, daisy", "daisy, daisey"], "error: the passwords do not match", 2),
    "empty, not asked again": ([""], "error: the password must not be empty", 1),
    "too short, not asked again": (
        ["eleven char"],
        "error: the password must be at least 12 characters (OWASP ASVS V2.1.1)",
        1,
    ),
    "too long, not asked again": (["é" * 513], "error: the password is longer than 1024 bytes", 1),
    "Ctrl-D": ([EOFError()], "error: no password given (end of input at the prompt)", 1),
    "not text": (
        [UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")],
        "error: the password typed is not text in the terminal's encoding",
        1,
    ),
}


@pytest.mark.parametrize(("answers", "line", "asked"), PROMPTED.values(), ids=PROMPTED.keys())
@pytest.mark.parametrize("command", ["add", "set-password"])
def test_bad_password_at_the_prompt_is_one_line_and_changes_nothing(
    capsys, sqlite_engine, prompt, command, answers, line, asked
):
    name = "hal" if command == "add" else "alice"
    before = password_of(sqlite_engine, "alice")
    prompt.answers = list(answers)
    assert run(capsys, "users", command, name) == (2, "", line + "\n")
    assert len(prompt.prompts) == asked
    assert store.get_user(sqlite_engine, "hal") is None
    assert password_of(sqlite_engine, "alice") == before


def test_ctrl_c_at_the_prompt_exits_130_and_adds_nobody(capsys, sqlite_engine, prompt):
    prompt.answers = ["daisy, daisy", KeyboardInterrupt()]
    assert run(capsys, "users", "add", "hal") == (130, "", "")
    assert store.get_user(sqlite_engine, "hal") is None


def test_without_a_terminal_the_prompt_refuses_rather_than_echo(capsys, monkeypatch, sqlite_engine):
    monkeypatch.setattr(getpass, "getpass", getpass.fallback_getpass)  # what getpass does with no terminal
    feed_stdin(monkeypatch, b"would be echoed\n")
    assert run(capsys, "users", "add", "hal") == (2, "", NO_TERMINAL)
    assert sys.stdin.read() == "would be echoed\n"
    assert store.get_user(sqlite_engine, "hal") is None


@pytest.mark.parametrize(
    ("data", "password"),
    [
        (b"  spaces kept  \r\nsecond line ignored\n", "  spaces kept  "),
        (b"no line ending", "no line ending"),
        ("zoë's pässword\n".encode(), "zoë's pässword"),
        ("é".encode() * 512 + b"\n", "é" * 512),
    ],
    ids=["CRLF, spaces", "no newline", "UTF-8", "1024 bytes"],
)
def test_password_stdin_reads_the_first_line(capsys, monkeypatch, sqlite_engine, data, password):
    feed_stdin(monkeypatch, data)
    assert run(capsys, "users", "add", "hal", "--password-stdin") == (0, "Added hal (scopes: me)\n", "")
    assert password_hash.verify(password, password_of(sqlite_engine, "hal"))


STDIN = {
    "empty": (b"", "error: the password must not be empty"),
    "empty line": (b"\n", "error: the password must not be empty"),
    "11 characters": (b"eleven char\n", "error: the password must be at least 12 characters (OWASP ASVS V2.1.1)"),
    "11 characters, 22 bytes": (
        "ééééééééééé\n".encode(),
        "error: the password must be at least 12 characters (OWASP ASVS V2.1.1)",
    ),
    "too long": (b"x" * 1025 + b"\n", "error: the password is longer than 1024 bytes"),
    "endless line": (b"x" * 100_000, "error: the password is longer than 1024 bytes"),
    "not UTF-8": (b"\xffpassword\n", "error: the password on standard input is not UTF-8 text"),
}


@pytest.mark.parametrize(("data", "line"), STDIN.values(), ids=STDIN.keys())
@pytest.mark.parametrize("command", ["add", "set-password"])
def test_bad_password_on_stdin_is_one_line_and_changes_nothing(capsys, monkeypatch, sqlite_engine, command, data, line):
    name = "hal" if command == "add" else "alice"
    before = password_of(sqlite_engine, "alice")
    feed_stdin(monkeypatch, data)
    assert run(capsys, "users", command, name, "--password-stdin") == (2, "", line + "\n")
    assert store.get_user(sqlite_engine, "hal") is None
    assert password_of(sqlite_engine, "alice") == before


def test_password_stdin_through_a_real_pipe(sqlite_url):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": sqlite_url}
    command = [sys.executable, "-m", "lesson_code", "users", "add", "hal", "--password-stdin"]
    result = subprocess.run(command, input="daisy, daisy\n", capture_output=True, text=True, env=env, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "Added hal (scopes: me)\n", "")
    engine = store.make_engine(sqlite_url)
    try:
        assert password_hash.verify("daisy, daisy", password_of(engine, "hal"))
    finally:
        engine.dispose()


@pytest.mark.skipif(sys.platform == "win32", reason="getpass has no /dev/tty to fall back from on Windows")
def test_a_process_with_no_terminal_is_refused_the_prompt(sqlite_url):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": sqlite_url}
    command = [sys.executable, "-m", "lesson_code", "users", "add", "hal"]
    result = subprocess.run(
        command, input="daisy\n", capture_output=True, text=True, env=env, timeout=60, start_new_session=True
    )
    assert (result.returncode, result.stdout, result.stderr) == (2, "", NO_TERMINAL)


# Bad arguments and databases


def test_adding_a_user_twice_is_one_line_and_asks_no_password(capsys, sqlite_engine, prompt):
    before = password_of(sqlite_engine, "alice")
    assert run(capsys, "users", "add", "alice") == (2, "", "error: user 'alice' already exists\n")
    assert prompt.prompts == []
    assert password_of(sqlite_engine, "alice") == before


@pytest.mark.parametrize("name", ["a", "A" * 64, "dave.bowman@example.com", "Hal_9000-x"])
def test_usernames_the_rule_allows(capsys, monkeypatch, sqlite_engine, name):
    feed_stdin(monkeypatch, b"twelve chars\n")  # the shortest password allowed
    assert run(capsys, "users", "add", name, "--password-stdin") == (0, f"Added {name} (scopes: me)\n", "")


@pytest.mark.parametrize("name", ["", "a" * 65, "zoë", "dave bowman", "dave/bowman", "hal\x00", "x\udcff"])
@pytest.mark.parametrize("command", ["add", "disable", "set-password", "scopes"])
def test_a_username_the_rule_refuses_is_one_line_and_exit_2(capsys, sqlite_url, command, name):
    args = ["users", command, name] + (["me"] if command == "scopes" else [])
    line = f"error: argument NAME: a username is 1 to 64 characters: ASCII letters, digits and . _ - @, not {name!r}"
    assert run(capsys, *args) == (2, "", f"{line} {SEE_HELP}\n")


BAD_ARGUMENTS = {
    "no users command": (
        ("users",),
        f"error: the following arguments are required: COMMAND {SEE_HELP}",
    ),
    "unknown users command": (
        ("users", "delete", "alice"),
        "error: argument COMMAND: invalid choice: 'delete' (choose from "
        f"{choices('add', 'list', 'disable', 'enable', 'set-password', 'logout', 'scopes')}) {SEE_HELP}",
    ),
    "no name": (("users", "disable"), f"error: the following arguments are required: NAME {SEE_HELP}"),
    "no scope": (("users", "scopes", "alice"), f"error: the following arguments are required: SCOPE {SEE_HELP}"),
    "bad email": (
        ("users", "add", "hal", "--email", "hal at example.com"),
        f"error: argument --email: expected an address such as dave@example.com, not 'hal at example.com' {SEE_HELP}",
    ),
    "blank full name": (
        ("users", "add", "hal", "--full-name", " "),
        f"error: argument --full-name: expected 1 to 200 printable characters, not ' ' {SEE_HELP}",
    ),
    "full name on two lines": (
        ("users", "add", "hal", "--full-name", "HAL\n9000"),
        f"error: argument --full-name: expected 1 to 200 printable characters, not 'HAL\\n9000' {SEE_HELP}",
    ),
    "bad scope": (
        ("users", "scopes", "alice", "me", 'ad"min'),
        "error: invalid scope 'ad\"min': use printable ASCII without spaces, quotes or backslashes",
    ),
    "unknown scope": (
        ("users", "scopes", "alice", "me", "root"),
        "error: unknown scope 'root': the API knows me, admin",
    ),
}


@pytest.mark.parametrize(("args", "line"), BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_bad_arguments_are_one_line_and_exit_2(capsys, sqlite_engine, args, line):
    assert run(capsys, *args) == (2, "", line + "\n")
    assert store.get_user(sqlite_engine, "alice").scopes == "me"
    assert store.get_user(sqlite_engine, "hal") is None


def test_a_corrupt_sqlite_file_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    path = tmp_path / "lesson.db"
    path.write_bytes(b"garbage!" * 512)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    line = (
        f"error: SQLite database {path} is corrupt or not an SQLite file (file is not a database): "
        "restore it or move it away\n"
    )
    assert run(capsys, "users", "list") == (2, "", line)


def test_a_sqlite_file_in_a_missing_folder_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    path = tmp_path / "missing" / "lesson.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    line = f"error: SQLite database {path}: the folder {path.parent} does not exist\n"
    assert run(capsys, "users", "disable", "alice") == (2, "", line)
    assert not path.parent.exists()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("nonsense", "Could not parse SQLAlchemy URL from given URL string"),
        ("nosuchdb://user:hunter2@host/db", "Can't load plugin: sqlalchemy.dialects:nosuchdb"),
    ],
)
def test_a_database_url_that_cannot_be_used_is_one_line_and_exit_2(capsys, monkeypatch, url, reason):
    monkeypatch.setenv("DATABASE_URL", url)
    line = f"error: DATABASE_URL is not a database URL this code can open: {reason}\n"
    assert run(capsys, "users", "list") == (2, "", line)


def test_an_unreachable_postgresql_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres:hunter2@/lesson?host={tmp_path}")
    status, out, err = run(capsys, "users", "list")
    assert (status, out) == (2, "")
    assert err.startswith(f"error: database 'lesson' on {tmp_path} is unavailable: ")
    assert err.count("\n") == 1 and "hunter2" not in err


# Help


def test_users_help_lists_the_commands_and_the_exit_statuses(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["users", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: python -m lesson_code users [-h] COMMAND ... Manage the API's users")
    for line in (
        "add add a user, with a password",
        "list show every user (never a password hash)",
        "disable stop a user logging in, and end every session of theirs",
        "enable let a disabled user log in again",
        "set-password give a user a new password, and end every session of theirs",
        "logout end every session of a user (log them out everywhere)",
        "scopes set the scopes a user may be granted",
        "A username is 1 to 64 characters: ASCII letters, digits and . _ - @.",
    ):
        assert line in text
    assert text.endswith(USERS_EXIT_STATUS)


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("add", "The password is asked twice at a prompt that does not echo it"),
        ("list", "Show every user as a table"),
        ("disable", "Says how many sessions were ended."),
        ("enable", "Sessions ended when the user was disabled stay ended"),
        ("set-password", "Says how many sessions were ended."),
        ("logout", "Says how many sessions were ended."),
        ("scopes", "Taking a scope away ends every session of the user"),
        (
            "scopes",
            "The API knows me (Read your own profile), admin (Manage users: list them, disable them); any other is "
            "refused.",
        ),
    ],
)
def test_each_users_command_says_what_it_does_and_its_exit_statuses(capsys, command, says):
    with pytest.raises(SystemExit) as exit_:
        main(["users", command, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert says in text
    assert text.endswith(USERS_EXIT_STATUS)


# Demo users


def test_a_database_that_has_users_gets_no_demo_users(capsys, database_url):
    engine = store.make_engine(database_url)
    store.create_schema(engine)
    store.add_user(engine, "dave", password_hash.hash("open the pod bay doors"))
    try:
        assert run(capsys, "users", "list") == (
            0,
            "USERNAME  FULL NAME  EMAIL  DISABLED  SCOPES\ndave      -          -      no        me\n",
            "",
        )
    finally:
        engine.dispose()


def test_deleted_demo_users_do_not_come_back(capsys, engine):
    with engine.begin() as connection:
        connection.execute(store.users.delete().where(store.users.c.username.in_(["alice", "carol"])))
    assert run(capsys, "users", "list") == (
        0,
        "USERNAME  FULL NAME        EMAIL            DISABLED  SCOPES\n"
        "bob       Bob the Builder  bob@example.com  yes       me\n",
        "",
    )
    assert [user.username for user in store.list_users(engine)] == ["bob"]


@pytest.mark.parametrize("value", ["false", "0", "no"])
def test_demo_users_false_seeds_no_one(capsys, monkeypatch, sqlite_url, value):
    monkeypatch.setenv("DEMO_USERS", value)
    assert run(capsys, "users", "list") == (0, "USERNAME  FULL NAME  EMAIL  DISABLED  SCOPES\n", "")
    feed_stdin(monkeypatch, b"open the pod bay doors\n")
    assert run(capsys, "users", "add", "dave", "--password-stdin") == (0, "Added dave (scopes: me)\n", "")
    monkeypatch.delenv("DEMO_USERS")
    get_settings.cache_clear()
    assert run(capsys, "users", "list")[1].splitlines()[1:] == ["dave      -          -      no        me"]


def test_the_demo_users_setting_says_to_turn_it_off(capsys):
    field = Settings.model_fields["demo_users"]
    assert field.default is True
    assert field.description.endswith("turn off for any real deployment.")


@pytest.mark.parametrize(
    "url",
    ["postgresql://h:notaport/db", "sqlite:///{tmp_path}/x.db?timeout=abc"],
)
@pytest.mark.parametrize("command", [("users", "list"), ("users", "disable", "alice"), ("serve",)])
def test_a_malformed_database_url_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path, url, command):
    import uvicorn

    monkeypatch.setenv("DATABASE_URL", url.format(tmp_path=tmp_path))
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("served anyway"))
    reason = (
        "invalid literal for int() with base 10: 'notaport'"
        if "notaport" in url
        else "could not convert string to float: 'abc'"
    )
    line = f"error: DATABASE_URL is not a database URL this code can open: {reason}\n"
    assert run(capsys, *command) == (2, "", line)
    assert not (tmp_path / "x.db").exists()
