"""The databases tests run on: SQLite in a file, and a real PostgreSQL server, each able to fail on demand."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from lesson_code import store
from tests.utils import postgres


@dataclass
class Database:
    kind: str
    url: str
    engine: Engine
    make_unavailable: Callable[[], None]
    unavailable_message: Callable[[str], bool]


def garble_sqlite_files(path: Path) -> None:
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists():
            with open(name, "r+b") as file:
                file.write(b"garbage!" * (name.stat().st_size // 8))


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database, with no schema yet: SQLite in tmp_path, then a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        path = tmp_path / "lesson.db"
        engine = store.make_engine(f"sqlite:///{path}")
        corrupt = (
            f"SQLite database {path} is corrupt or not an SQLite file (file is not a database): "
            "restore it or move it away"
        )
        yield Database("sqlite", f"sqlite:///{path}", engine, lambda: garble_sqlite_files(path), corrupt.__eq__)
        engine.dispose()
        return
    server: postgres.PostgresServer = request.getfixturevalue("postgres_server")
    with server.database() as url:
        engine = store.make_engine(url)
        prefix = f"database {engine.url.database!r} on {server.folder} is unavailable: "
        yield Database("postgresql", url, engine, server.stop, lambda message: message.startswith(prefix))
        engine.dispose()
