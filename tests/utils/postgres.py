"""A throwaway PostgreSQL server for tests: its own cluster in a temporary folder, reachable only by a Unix socket.

Run as the unprivileged `postgres` user when the tests run as root (PostgreSQL refuses to run as root), as the
current user otherwise. Trust authentication is safe here: the socket's folder is open to its owner alone.
"""

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SERVER_USER = "postgres"
BIN_PATTERN = "/usr/lib/postgresql/*/bin"
HOW_TO_INSTALL = "apt-get install postgresql (Debian's package)"
SETTINGS = {
    "listen_addresses": "''",  # no TCP at all
    "fsync": "off",  # a test cluster: speed over durability
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin holding initdb and pg_ctl, or None."""
    found = [Path(path) for path in glob.glob(BIN_PATTERN) if (Path(path) / "initdb").exists()]
    return max(found, key=lambda path: int(path.parent.name), default=None) if found else None


def skip_or_fail(reason: str) -> None:
    """Skip locally; under CI (the CI variable set) fail, because there every test must run."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run every test", pytrace=False)
    pytest.skip(reason)


class PostgresServer:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="lesson-pg-"))
        self.data_dir = self.folder / "data"
        self.log_file = self.folder / "server.log"
        self.as_server_user = os.geteuid() == 0
        self.running = False

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", SERVER_USER, "--"] if self.as_server_user else []
        result = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}\n{log}")

    def init(self) -> None:
        if self.as_server_user:
            shutil.chown(self.folder, SERVER_USER, SERVER_USER)
        os.chmod(self.folder, 0o700)
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        settings = {**SETTINGS, "unix_socket_directories": f"'{self.folder}'"}
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        self._run(
            str(self.bin_dir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data_dir), "-l", str(self.log_file)
        )
        self.running = True

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "stop", "-m", "fast", "-w", "-D", str(self.data_dir))
        self.running = False

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.folder}"

    @contextmanager
    def database(self) -> Iterator[str]:
        """A new, empty database for one test; dropped afterwards, even with connections still open."""
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        name = f"test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield self.url(name)
        finally:
            if not self.running:
                self.start()  # a test stopped the server: the next test needs it
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


@contextmanager
def running_server() -> Iterator[PostgresServer]:
    """Start a cluster, yield it, then stop it (pg_ctl stop -m fast) and delete its folder."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        skip_or_fail(f"PostgreSQL is not installed ({BIN_PATTERN}/initdb not found): {HOW_TO_INSTALL}")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        skip_or_fail("running as root without runuser: cannot start PostgreSQL as an unprivileged user")
    server = PostgresServer(bin_dir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running:
            server.stop()
        server.remove()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole test run (skips locally without PostgreSQL, fails in CI)."""
    with running_server() as server:
        yield server
