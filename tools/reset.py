"""Return the lessons to their first state, keeping a learner's own work unless asked.

    python tools/reset.py                  remove what the lessons and python -m lesson_code made (make reset)
    python tools/reset.py --notebooks      also restore notebooks/ as git has it: edits to the lessons are lost
    python tools/reset.py --live-copies    also delete notebooks-live/, the live copies, edited or not

What is removed, at the repository's root: the signing secret .jwt_secret (and any half-written .jwt_secret.*),
the database lesson.db with its -wal, -shm and -journal files, and the key folder .jwt_keys/. They are made again on
first use: a new secret and new keys (every token made before is refused), and a database with alice, bob and carol.
notebooks-live/ and edited or added notebooks are kept, and said so, unless the options above are given.

It stops nothing: while a server has lesson.db open (python -m lesson_code serve), it refuses and removes nothing.
It runs only from inside the repository it belongs to. Standard library only (Python 3.8 and later), so that it
runs before .venv exists, on Windows as `python tools/reset.py`.

Exit status: 0 done, 1 refused or something could not be removed, 2 bad usage or not in the repository.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Files that say this is the lessons' repository: a reset.py copied anywhere else must not delete a lesson.db there.
MARKERS = ("lesson_code/tokens.py", "lesson_code/store.py", "notebooks/helpers/checks.py", "tools/notebook_tools.py")
SECRET, DATABASE, KEYS, LIVE = ".jwt_secret", "lesson.db", ".jwt_keys", "notebooks-live"
# What each removal means, said once, on the line of the main file.
MEANING = {
    SECRET: "the signing secret: a new one is made on first use, and tokens made before are refused",
    DATABASE: "users and sessions: the next start makes it again with alice, bob and carol",
    KEYS: "the ES256 and RS256 signing keys: new ones are made on first use",
}
DATABASE_FILES = (DATABASE, DATABASE + "-wal", DATABASE + "-shm", DATABASE + "-journal")
# Settings that point the lessons elsewhere: reset leaves what they name alone, and says so.
SETTINGS = {
    "JWT_SECRET_KEY": "the lessons sign with it, not with .jwt_secret",
    "JWT_SECRET_FILE": "the secret file it names is not removed",
    "JWT_KEY_DIR": "the key folder it names is not removed",
    "DATABASE_URL": "the database it names is not removed",
}
RESTART = "restart the kernel of any open notebook (Kernel > Restart Kernel): it still holds the old secret and keys"
RELOAD = "reload a restored notebook that is open in JupyterLab (File > Reload Notebook from Disk)"


class Refused(Exception):
    """The reset cannot run, and nothing was done; str() says why, in one line."""

    def __init__(self, why: str, status: int = 1) -> None:
        super().__init__(why)
        self.status = status


def check_repository(root: Path, cwd: Path) -> None:
    missing = [marker for marker in MARKERS if not (root / marker).is_file()]
    if missing:
        raise Refused(f"{root} is not the lessons' repository (no {missing[0]}): nothing removed", 2)
    try:
        cwd.resolve().relative_to(root)
    except ValueError:
        raise Refused(
            f"run it from the repository's folder, {root} (not {cwd.resolve()}): nothing removed", 2
        ) from None


def database_in_use(path: Path) -> bool:
    """Whether another process has the SQLite file open. The service keeps it in WAL mode, where every open
    connection holds a shared lock; leaving WAL needs every other connection closed. The file goes anyway."""
    if not path.is_file() or path.is_symlink():
        return False
    try:
        connection = sqlite3.connect(path.as_uri() + "?mode=rw", uri=True, timeout=0.5)
    except sqlite3.Error:
        return False  # not a database we can open: nobody else can either
    try:
        connection.execute("PRAGMA journal_mode=DELETE").fetchall()
    except sqlite3.OperationalError as error:
        return "locked" in str(error) or "busy" in str(error)
    except sqlite3.Error:
        return False
    finally:
        connection.close()
    return False


def remove(path: Path) -> None:
    """A file, a symbolic link (never what it points to) or a folder with everything in it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def git(root: Path, *words: str) -> str | None:
    """git's output, or None when this is no git checkout or git is missing."""
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *words], capture_output=True, text=True, check=True, encoding="utf-8"
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout


def notebook_changes(root: Path) -> tuple[list[str], list[str]] | None:
    """(tracked files of notebooks/ that differ from git's, files git does not know there), or None without git.
    Ignored files (.ipynb_checkpoints/, __pycache__/) are neither."""
    status = git(root, "status", "--porcelain", "-z", "--untracked-files=all", "--", "notebooks")
    if status is None:
        return None
    changed, added = [], []
    entries = iter(status.split("\0"))
    for entry in entries:
        if not entry:
            continue
        code, path = entry[:2], entry[3:]
        if "R" in code or "C" in code:
            next(entries, None)  # -z gives a rename's old name next: the new one is what is there now
        (added if code == "??" else changed).append(path)
    return sorted(changed), sorted(added)


def reset(root: Path, notebooks: bool = False, live_copies: bool = False, environ=os.environ):
    """Do the reset: (the lines to print, what could not be done). Refused, with nothing done, when it cannot run."""
    state = [root / SECRET, *sorted(root.glob(SECRET + ".*")), *(root / name for name in DATABASE_FILES), root / KEYS]
    if live_copies:
        state.append(root / LIVE)
    # Listed first: looking whether the database is in use opens it, and SQLite may then delete its -wal and -shm.
    state = [(path, path.name + ("/" if path.is_dir() and not path.is_symlink() else "")) for path in state]
    state = [(path, name) for path, name in state if path.exists() or path.is_symlink()]
    if database_in_use(root / DATABASE):
        raise Refused(
            f"{DATABASE} is open in a running server (python -m lesson_code serve, or uvicorn): stop it with Ctrl-C"
            " in its terminal, then reset again. Nothing removed"
        )
    changes = notebook_changes(root)
    if notebooks and changes is None:
        raise Refused("--notebooks restores the notebooks with git, and this is no git checkout: nothing removed", 2)
    lines, problems = [], []
    for path, name in state:
        try:
            if path.exists() or path.is_symlink():
                remove(path)
        except OSError as error:
            problems.append(f"could not remove {name}: {error.strerror or error}")
            continue
        if path.name == LIVE:
            meaning = "the live copies, edited or not: make live-copies writes new ones"
        elif path.name.startswith(SECRET + "."):
            meaning = "a secret file left half-written"
        else:
            meaning = MEANING.get(path.name, "")
        lines.append(f"removed {name}" + (f" ({meaning})" if meaning else ""))
    if not lines and not problems:
        lines.append("nothing to remove: no secret, database or keys")
    if not live_copies and (root / LIVE).is_dir():
        lines.append(f"kept {LIVE}/ (the live copies, your work: --live-copies deletes them)")
    if changes is None:
        lines.append("kept notebooks/ (no git checkout, so edited notebooks cannot be told apart)")
    else:
        changed, added = changes
        if notebooks and changed:
            if git(root, "checkout", "--", *changed) is None:
                problems.append("git checkout could not restore " + ", ".join(changed))
            else:
                lines += [f"restored {path} (as git has it: its edits are gone)" for path in changed]
        else:
            lines += [f"kept {path} (edited: --notebooks restores it)" for path in changed]
        lines += [f"kept {path} (not one of the lessons)" for path in added]
    lines += [f"note: {name} is set: {why}" for name, why in SETTINGS.items() if environ.get(name)]
    if any(line.startswith("removed") and not line.startswith(f"removed {LIVE}/") for line in lines):
        lines.append(RESTART)
    if any(line.startswith("restored") for line in lines):
        lines.append(RELOAD)
    return lines, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="reset.py",
        description="Return the lessons to their first state: remove .jwt_secret, lesson.db (with its -wal, -shm "
        "and -journal files) and .jwt_keys/, made again on first use. Keeps notebooks-live/ and edited notebooks "
        "unless asked. Stops nothing.",
    )
    parser.add_argument("--notebooks", action="store_true", help="restore notebooks/ as git has it (edits lost)")
    parser.add_argument("--live-copies", action="store_true", help="delete notebooks-live/, edited or not")
    options = parser.parse_args(argv)
    try:
        check_repository(ROOT, Path.cwd())
        lines, problems = reset(ROOT, notebooks=options.notebooks, live_copies=options.live_copies)
    except Refused as refused:
        print(f"reset.py: {refused}", file=sys.stderr)
        return refused.status
    print("\n".join(lines))
    for problem in problems:
        print(f"reset.py: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
