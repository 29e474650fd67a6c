"""tools/reset.py (make reset): the lessons back to their first state, in a git clone of the repository.

It removes what the lessons and python -m lesson_code made (the secret, the database, the keys), keeps the live
copies and edited notebooks unless asked, stops nothing, and runs only inside its own repository.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import nbformat
import pytest

from tests.utils.uvicorn_process import free_port, wait_until_answering

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("JWT_SECRET_KEY", "JWT_SECRET_FILE", "JWT_KEY_DIR", "DATABASE_URL", "JWT_ALGORITHM")
# Untracked until the lead commits them: the clone gets the working copies.
TOOLS = ("tools/reset.py", "tools/notebook_tools.py")

REMOVED_SECRET = (
    "removed .jwt_secret (the signing secret: a new one is made on first use, and tokens made before are refused)"
)
REMOVED_DATABASE = "removed lesson.db (users and sessions: the next start makes it again with alice, bob and carol)"
REMOVED_KEYS = "removed .jwt_keys/ (the ES256 and RS256 signing keys: new ones are made on first use)"
KEPT_LIVE = "kept notebooks-live/ (the live copies, your work: --live-copies deletes them)"
RESTART = "restart the kernel of any open notebook (Kernel > Restart Kernel): it still holds the old secret and keys"
RELOAD = "reload a restored notebook that is open in JupyterLab (File > Reload Notebook from Disk)"
NOTEBOOK = "notebooks/01_anatomy_of_a_jwt.ipynb"


def plain_env(**settings) -> dict:
    """This environment without the lessons' settings (conftest sets a secret for the tests), plus settings."""
    env = {name: value for name, value in os.environ.items() if name not in SETTINGS}
    return {**env, **settings}


@pytest.fixture
def repo(tmp_path):
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    for tool in TOOLS:
        shutil.copy(ROOT / tool, clone / tool)
    return clone


def run(cwd, *words, script=None, env=None) -> subprocess.CompletedProcess:
    command = [sys.executable, str(script or cwd / "tools" / "reset.py"), *words]
    return subprocess.run(command, cwd=cwd, env=env or plain_env(), capture_output=True, text=True, timeout=60)


def lesson_code(repo, *words, **settings) -> None:
    """python -m lesson_code in the clone, as a learner runs it: its files land in the clone."""
    command = [sys.executable, "-m", "lesson_code", *words]
    subprocess.run(command, cwd=repo, env=plain_env(**settings), check=True, capture_output=True, timeout=120)


def edit_notebook(path) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("print('my own cell')"))
    nbformat.write(nb, path)


def notebooks_status(repo) -> list[str]:
    """git's view of notebooks/: what differs from the lessons as committed."""
    command = ["git", "status", "--porcelain", "--untracked-files=all", "--", "notebooks"]
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True).stdout.splitlines()


def test_a_fresh_clone_has_nothing_to_remove(repo):
    done = run(repo)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ["nothing to remove: no secret, database or keys"]


def test_it_removes_what_the_lessons_made_and_keeps_the_learners_work(repo):
    lesson_code(repo, "token", "alice")  # the secret, as notebook 02 makes it
    lesson_code(repo, "users", "list")  # the database, with the demo users
    lesson_code(repo, "keys", "rotate", JWT_ALGORITHM="ES256")  # the ES256 key folder
    (repo / ".jwt_secret.1234.abcd").write_text("half")  # a secret file whose writer was stopped midway
    (repo / "lesson.db-wal").write_bytes(b"")  # what a server stopped by force leaves
    (repo / "lesson.db-shm").write_bytes(b"")
    strip = [sys.executable, "tools/notebook_tools.py", "strip", "notebooks-live"]
    subprocess.run(strip, cwd=repo, check=True, capture_output=True)
    edit_notebook(repo / NOTEBOOK)
    (repo / "notebooks" / "my_work.ipynb").write_text("{}")

    done = run(repo)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        REMOVED_SECRET,
        "removed .jwt_secret.1234.abcd (a secret file left half-written)",
        REMOVED_DATABASE,
        "removed lesson.db-wal",
        "removed lesson.db-shm",
        REMOVED_KEYS,
        KEPT_LIVE,
        f"kept {NOTEBOOK} (edited: --notebooks restores it)",
        "kept notebooks/my_work.ipynb (not one of the lessons)",
        RESTART,
    ]
    left = {path.name for path in repo.iterdir()}
    assert not left & {".jwt_secret", ".jwt_secret.1234.abcd", "lesson.db", "lesson.db-wal", "lesson.db-shm"}
    assert ".jwt_keys" not in left
    lessons = {path.name for path in (repo / "notebooks").glob("[0-9][0-9]*_*.ipynb")}
    assert {path.name for path in (repo / "notebooks-live").glob("*.ipynb")} == lessons  # every lesson's live copy
    assert notebooks_status(repo) == [f" M {NOTEBOOK}", "?? notebooks/my_work.ipynb"]

    lesson_code(repo, "users", "list")  # the first state comes back on first use
    assert (repo / "lesson.db").exists() and not (repo / ".jwt_secret").exists()


def test_notebooks_and_live_copies_go_only_when_asked(repo):
    strip = [sys.executable, "tools/notebook_tools.py", "strip", "notebooks-live"]
    subprocess.run(strip, cwd=repo, check=True, capture_output=True)
    edit_notebook(repo / NOTEBOOK)
    (repo / "notebooks" / "helpers" / "checks.py").write_text("# broken by a learner\n")
    (repo / "notebooks" / "my_work.ipynb").write_text("{}")

    done = run(repo, "--notebooks", "--live-copies")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "removed notebooks-live/ (the live copies, edited or not: make live-copies writes new ones)",
        f"restored {NOTEBOOK} (as git has it: its edits are gone)",
        "restored notebooks/helpers/checks.py (as git has it: its edits are gone)",
        "kept notebooks/my_work.ipynb (not one of the lessons)",
        RELOAD,
    ]
    assert not (repo / "notebooks-live").exists()
    assert notebooks_status(repo) == ["?? notebooks/my_work.ipynb"]


def test_a_running_server_is_left_running_and_nothing_is_removed(repo):
    port = free_port()
    command = [sys.executable, "-m", "lesson_code", "serve", "--port", str(port)]
    server = subprocess.Popen(command, cwd=repo, env=plain_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{base_url}/openapi.json", server)
        login = httpx.post(f"{base_url}/token", data={"username": "alice", "password": "wonderland"})
        assert login.status_code == 200
        made = sorted(path.name for path in repo.iterdir() if path.name.startswith((".jwt", "lesson.db")))
        assert made == [".jwt_secret", "lesson.db", "lesson.db-shm", "lesson.db-wal"]

        done = run(repo)
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == (
            "reset.py: lesson.db is open in a running server (python -m lesson_code serve, or uvicorn): stop it"
            " with Ctrl-C in its terminal, then reset again. Nothing removed\n"
        )
        assert sorted(path.name for path in repo.iterdir() if path.name.startswith((".jwt", "lesson.db"))) == made
        assert server.poll() is None
        me = httpx.get(f"{base_url}/users/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
        assert me.status_code == 200
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C, as the message says: the server closes the database
        server.wait(30)
    done = run(repo)
    assert done.stdout.splitlines() == [REMOVED_SECRET, REMOVED_DATABASE, RESTART]


def test_it_refuses_to_run_from_outside_the_repository(repo, tmp_path):
    (repo / ".jwt_secret").write_text("kept")
    done = run(tmp_path, script=repo / "tools" / "reset.py")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"reset.py: run it from the repository's folder, {repo.resolve()} (not {tmp_path.resolve()}): nothing removed\n"
    )
    assert (repo / ".jwt_secret").read_text() == "kept"


def test_a_copy_of_it_elsewhere_removes_nothing_there(tmp_path):
    elsewhere = tmp_path / "my-project"
    (elsewhere / "tools").mkdir(parents=True)
    shutil.copy(ROOT / "tools" / "reset.py", elsewhere / "tools" / "reset.py")
    (elsewhere / "lesson.db").write_text("somebody else's database")
    (elsewhere / ".jwt_secret").write_text("somebody else's secret")
    done = run(elsewhere)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"reset.py: {elsewhere.resolve()} is not the lessons' repository (no lesson_code/tokens.py): nothing removed\n"
    )
    assert sorted(path.name for path in elsewhere.iterdir()) == [".jwt_secret", "lesson.db", "tools"]


def test_settings_that_point_elsewhere_are_named_and_left_alone(repo, tmp_path):
    database = tmp_path / "elsewhere.db"
    database.write_text("")
    env = plain_env(JWT_SECRET_KEY="a" * 64, DATABASE_URL=f"sqlite:///{database}")
    done = run(repo, env=env)
    assert done.stdout.splitlines() == [
        "nothing to remove: no secret, database or keys",
        "note: JWT_SECRET_KEY is set: the lessons sign with it, not with .jwt_secret",
        "note: DATABASE_URL is set: the database it names is not removed",
    ]
    assert database.exists()


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="symbolic links need POSIX")
def test_a_secret_that_is_a_link_goes_and_what_it_points_at_stays(repo, tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("not the lessons'")
    (repo / ".jwt_secret").symlink_to(target)
    (repo / ".jwt_keys").symlink_to(tmp_path, target_is_directory=True)
    done = run(repo)
    assert done.stdout.splitlines() == [
        REMOVED_SECRET,
        "removed .jwt_keys (the ES256 and RS256 signing keys: new ones are made on first use)",
        RESTART,
    ]
    assert target.read_text() == "not the lessons'" and (tmp_path / "repo").is_dir()


def test_without_git_it_keeps_every_notebook_and_cannot_restore_them(repo, tmp_path):
    plain = tmp_path / "downloaded"
    shutil.copytree(repo, plain, ignore=shutil.ignore_patterns(".git"))
    (plain / "lesson.db").write_text("")
    done = run(plain)
    assert done.stdout.splitlines() == [
        REMOVED_DATABASE,
        "kept notebooks/ (no git checkout, so edited notebooks cannot be told apart)",
        RESTART,
    ]
    done = run(plain, "--notebooks")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "reset.py: --notebooks restores the notebooks with git, and this is no git checkout: nothing removed\n"
    )
