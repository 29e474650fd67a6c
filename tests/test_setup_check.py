"""tools/setup_check.py (make check): one line per item, the verdict, exit status 0 or 1, in under a minute."""

import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import setup_check
from setup_check import Line

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "tools" / "setup_check.py"
ITEMS = 6


def run_check(*arguments: str, **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **environment},
        timeout=120,
        check=False,
    )


def snapshot(folder: Path) -> dict:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_a_ready_laptop_gets_one_ok_line_per_item_and_exit_status_0():
    notebooks_before = snapshot(ROOT / "notebooks")
    started = time.monotonic()
    result = run_check()
    seconds = time.monotonic() - started
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(lines) == ITEMS + 1
    assert all(line.startswith("ok   ") for line in lines[:-1]), lines
    assert lines[0] == f"ok   Python {'.'.join(map(str, sys.version_info[:3]))} ({setup_check.python_command()})"
    assert lines[1].startswith("ok   packages: all ") and lines[1].endswith(
        " of requirements.txt installed at their pinned versions, and import"
    )
    assert lines[2] == "ok   signing secret usable (from JWT_SECRET_KEY)"  # the suite's own secret (conftest.py)
    assert lines[3].startswith("ok   127.0.0.1 accepts a local server (port ")
    assert lines[4] == "ok   uvicorn serves lesson_code.app:app: GET /openapi.json answers 200"
    assert lines[5].startswith("ok   Jupyter kernel runs notebook 01 (")
    assert lines[-1] == "Ready for the workshop."
    assert result.stderr == ""  # the kernel's warnings are kept, and shown only when it fails
    assert seconds < 60
    # Notebook 01 ran in a temporary copy: nothing in notebooks/ changed, no checkpoint or output appeared.
    assert snapshot(ROOT / "notebooks") == notebooks_before


def test_a_port_in_use_is_one_fail_line_and_exit_status_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_check("--only", "port", "--only", "server", "--port", str(port))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"FAIL 127.0.0.1:{port}: cannot start a local server ([Errno 98] Address already in use); the lessons run "
        "servers on 127.0.0.1: close the program holding the port, or allow local servers in your firewall or "
        "security tool",
        "FAIL local server: not tried, 127.0.0.1 refused the socket (see above)",
        "Not ready: fix the lines marked FAIL.",
    ]


def test_a_missing_package_and_a_wrong_version_are_named(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "# what the lessons need\n"
        "no-such-package-for-the-lessons==1.0\n"
        "fastapi==0.0.1  # not the installed one\n"
        'cryptography==1.0; sys_platform == "beos"  # not for this machine: not checked\n'
        "pytest\n"
    )
    hint = setup_check.install_hint()
    assert hint == f"run: {setup_check.python_command()} -m pip install -r requirements.txt"
    import fastapi

    assert setup_check.check_packages(requirements) == [
        Line(False, f"package no-such-package-for-the-lessons: not installed; {hint}"),
        Line(False, f"package fastapi {fastapi.__version__}: requirements.txt pins 0.0.1; {hint}"),
    ]
    result = run_check("--only", "packages", "--requirements", str(requirements))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == f"FAIL package no-such-package-for-the-lessons: not installed; {hint}"
    assert result.stdout.splitlines()[-1] == "Not ready: fix the lines marked FAIL."


def test_packages_of_this_requirements_txt_are_all_there():
    count = len(setup_check.pinned_requirements(ROOT / "requirements.txt"))
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    names = {line.split(";")[0].split("[")[0].split("=")[0] for line in lines if line}
    assert count == len(names)  # the two cryptography lines are for different machines: one of them applies here
    assert setup_check.check_packages() == [
        Line(True, f"packages: all {count} of requirements.txt installed at their pinned versions, and import")
    ]


def test_the_kit_s_wheels_go_into_the_install_hint(tmp_path, monkeypatch):
    kit = tmp_path / "kit" / "wheels"
    kit.mkdir(parents=True)
    (kit / "kit.json").write_text("{}\n")
    monkeypatch.setattr(setup_check, "ROOT", tmp_path)
    assert setup_check.install_hint().endswith(" -m pip install --no-index --find-links kit/wheels -r requirements.txt")


def test_an_old_python_is_told_what_to_do():
    assert str(setup_check.check_python((3, 9, 18))) == (
        "FAIL Python 3.9.18: the lessons need Python 3.10 or newer; install one (python.org) and make the venv with "
        "it: make PYTHON=python3.12 check (on Windows: py -3.12 -m venv .venv)"
    )


def test_a_weak_secret_is_one_fail_line_and_so_is_the_server_it_stops():
    result = run_check("--only", "secret", "--only", "server", JWT_SECRET_KEY="short")
    assert result.returncode == 1
    secret, server, verdict = result.stdout.splitlines()
    assert secret.startswith("FAIL signing secret: JWT_SECRET_KEY ")
    # uvicorn's traceback is boiled down to the exception, on the one line.
    assert server.startswith("FAIL local server: uvicorn could not start lesson_code.app:app (")
    assert "SecretKeyError: JWT_SECRET_KEY " in server
    assert verdict == "Not ready: fix the lines marked FAIL."
    assert result.stderr == ""


def test_a_failing_notebook_cell_is_one_line_naming_the_cell(tmp_path):
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# A broken copy"), nbformat.v4.new_code_cell("1 / 0")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    broken = tmp_path / "01_broken.ipynb"
    nbformat.write(notebook, broken)
    assert str(setup_check.check_notebook(broken)) == (
        "FAIL notebook 01: cell 2 fails (ZeroDivisionError: division by zero); edited? take a fresh copy of it, "
        "else ask the instructor"
    )


@pytest.mark.parametrize("item", ["python", "secret", "port", "server"])
def test_each_item_can_be_checked_alone(item):
    result = run_check("--only", item)
    assert result.returncode == 0, result.stdout
    assert [line[:5] for line in result.stdout.splitlines()] == ["ok   ", "Ready"]
