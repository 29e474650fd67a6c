"""Is this laptop ready for the workshop? Run it the day before; once installed it needs no network.

    make check                                   macOS and Linux (installs into .venv first when needed)
    .venv/bin/python tools/setup_check.py        the same without make
    .venv\\Scripts\\python tools\\setup_check.py    Windows, from the repository's folder

One line per item, "ok   ..." or "FAIL ...: what to do", then "Ready for the workshop." (exit status 0) or
"Not ready: fix the lines marked FAIL." (exit status 1). It takes a few seconds, at most a minute. It writes
nothing into the repository except the signing secret .jwt_secret, which the lessons make on first use anyway;
notebook 01 runs in a temporary copy.
"""

from __future__ import annotations  # so that an old Python reads this file and is told it is too old

import argparse
import atexit
import contextlib
import dataclasses
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
NOTEBOOK = ROOT / "notebooks" / "01_anatomy_of_a_jwt.ipynb"
APP = "lesson_code.app:app"
OLDEST_PYTHON = (3, 10)
CELL_TIMEOUT = 20  # seconds for one cell of notebook 01; the whole notebook takes a few seconds
KERNEL_TIMEOUT = 30  # seconds for a kernel to start: a few on most laptops, more on a first run under antivirus
SERVER_TIMEOUT = 15
ITEMS = ("python", "packages", "secret", "port", "server", "notebook")
# Test tools and helpers that come with the packages but are not modules to import on their own.
NOT_MODULES = {"py", "tests", "test", "docs", "examples", "benchmarks"}


@dataclasses.dataclass(frozen=True)
class Line:
    """One item's verdict: ok, or FAIL with what to do."""

    ok: bool
    text: str

    def __str__(self) -> str:
        return ("ok   " if self.ok else "FAIL ") + self.text


def python_command() -> str:
    """This Python as the learner would type it: .venv/bin/python, or .venv\\Scripts\\python on Windows."""
    try:
        return str(Path(sys.executable).relative_to(Path.cwd()))
    except ValueError:
        return sys.executable


def kit_wheels() -> Path | None:
    """The offline kit's wheelhouse, as the Makefile finds it: kit/wheels, or ../wheels in the kit's copy."""
    for folder in (ROOT / "kit" / "wheels", ROOT.parent / "wheels"):
        if (folder / "kit.json").is_file():
            return folder
    return None


def install_hint() -> str:
    wheels = kit_wheels()
    offline = f" --no-index --find-links {_shown(wheels)}" if wheels else ""
    return f"run: {python_command()} -m pip install{offline} -r requirements.txt"


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def check_python(version: tuple = tuple(sys.version_info[:3])) -> Line:
    shown = ".".join(str(part) for part in version)
    if tuple(version[:2]) < OLDEST_PYTHON:
        return Line(
            False,
            f"Python {shown}: the lessons need Python 3.10 or newer; install one (python.org) and make the venv with "
            "it: make PYTHON=python3.12 check (on Windows: py -3.12 -m venv .venv)",
        )
    return Line(True, f"Python {shown} ({python_command()})")


def pinned_requirements(requirements: Path) -> list:
    """The requirements of the file that apply to this machine (their environment markers hold), as Requirements."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # packaging comes with JupyterLab; pip always carries a copy
        from pip._vendor.packaging.requirements import Requirement
    found = []
    for line in requirements.read_text().splitlines():
        text = line.split(" #")[0].strip()
        if not text or text.startswith(("#", "-")):
            continue
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate():
            found.append(requirement)
    return found


def _modules_of(distribution: str, modules_by_distribution: dict) -> list:
    """The modules to import for a distribution: the one named after it, else every public one it installs."""
    own = distribution.lower().replace("-", "_").replace(".", "_")
    names = modules_by_distribution.get(distribution.lower().replace("_", "-"), [])
    if own in names:
        return [own]
    modules = sorted(name for name in names if not name.startswith("_") and name not in NOT_MODULES)
    return modules or [own]


def check_packages(requirements: Path = REQUIREMENTS) -> list:
    """Each package of requirements.txt: installed, at its pinned version, with its extras, and importable."""
    import importlib
    import importlib.metadata as metadata

    try:
        wanted = pinned_requirements(requirements)
    except Exception as error:  # a broken requirements.txt is one FAIL line, not a traceback
        return [Line(False, f"packages: cannot read {requirements.name} ({one_line(error)})")]
    modules_by_distribution: dict = {}
    for module, distributions in metadata.packages_distributions().items():
        for distribution in distributions:
            modules_by_distribution.setdefault(distribution.lower().replace("_", "-"), []).append(module)
    failures = []
    for requirement in wanted:
        name = requirement.name
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            failures.append(Line(False, f"package {name}: not installed; {install_hint()}"))
            continue
        pins = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if pins and not requirement.specifier.contains(installed, prereleases=True):
            failures.append(
                Line(False, f"package {name} {installed}: {requirements.name} pins {pins[0]}; {install_hint()}")
            )
            continue
        missing = _missing_extras(name, requirement.extras)
        if missing:
            failures.append(Line(False, f"package {name}: {missing} not installed; {install_hint()}"))
            continue
        for module in _modules_of(metadata.distribution(name).metadata["Name"], modules_by_distribution):
            try:
                with warnings.catch_warnings():  # a deprecation inside a package is not the learner's to fix
                    warnings.simplefilter("ignore")
                    importlib.import_module(module)
            except Exception as error:
                failures.append(
                    Line(False, f"package {name}: import {module} fails ({one_line(error)}); {install_hint()}")
                )
                break
    if failures:
        return failures
    return [
        Line(True, f"packages: all {len(wanted)} of {requirements.name} installed at their pinned versions, and import")
    ]


def _missing_extras(name: str, extras: set) -> str:
    """What name[extras] needs beyond name itself and is not installed, as 'a, b', or ''."""
    import importlib.metadata as metadata

    try:
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement
    missing = []
    for text in metadata.requires(name) or []:
        needed = Requirement(text)
        if needed.marker is None or not any(needed.marker.evaluate({"extra": extra}) for extra in extras):
            continue
        try:
            metadata.version(needed.name)
        except metadata.PackageNotFoundError:
            missing.append(f"{needed.name} (for {name}[{','.join(sorted(extras))}])")
    return ", ".join(missing)


def _ensure_importable() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def check_secret() -> Line:
    """The signing secret lesson_code signs with (JWT_SECRET_KEY, or the secret file made on first use) is usable."""
    _ensure_importable()
    import importlib

    try:
        from lesson_code import tokens

        # get_signing_key() checks the secret's strength; older code had get_secret_key() in tokens.py.
        read = getattr(tokens, "get_signing_key", None) or getattr(tokens, "get_secret_key", None)
        if read is None:
            return Line(False, "signing secret: lesson_code/tokens.py has no get_signing_key(); update this check")
        read()
    except Exception as error:  # SecretKeyError says how to make a good one
        return Line(False, f"signing secret: {one_line(error)}")
    environment_variable = getattr(tokens, "ENV_VAR", "JWT_SECRET_KEY")
    if os.environ.get(environment_variable):
        return Line(True, f"signing secret usable (from {environment_variable})")
    where = None
    for name in ("lesson_code.secret_file", "lesson_code.tokens"):
        with contextlib.suppress(Exception):  # moved or renamed: the secret works, only its place is not shown
            where = where or importlib.import_module(name).secret_file_path()
    return Line(True, "signing secret usable" + (f" (kept in {_shown(where)})" if where else ""))


def _shown(path: Path) -> str:
    """path as seen from the repository's folder, where the learner runs the commands."""
    try:
        return os.path.relpath(Path(path).resolve(), ROOT)
    except ValueError:  # Windows: on another drive
        return str(path)


def check_port(port: int = 0) -> tuple:
    """A socket bound to 127.0.0.1 (port 0: any free one, as the notebooks' servers use), and the verdict."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(16)
    except OSError as error:
        sock.close()
        return None, Line(
            False,
            f"127.0.0.1:{port}: cannot start a local server ({one_line(error)}); the lessons run servers on "
            "127.0.0.1: close the program holding the port, or allow local servers in your firewall or security tool",
        )
    return sock, Line(True, f"127.0.0.1 accepts a local server (port {sock.getsockname()[1]})")


def check_server(sock: socket.socket | None) -> Line:
    """uvicorn serves the lesson's app on sock, and GET /openapi.json answers 200 with the API's description."""
    if sock is None:
        return Line(False, "local server: not tried, 127.0.0.1 refused the socket (see above)")
    _ensure_importable()
    import json
    import logging
    import urllib.request

    errors: list = []

    class Keep(logging.Handler):  # uvicorn's errors, for the FAIL line: an exception first, when there is one
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info and record.exc_info[1] is not None:
                errors.insert(0, f"{type(record.exc_info[1]).__name__}: {one_line(record.exc_info[1])}")
            elif "Traceback (most recent call last)" in record.getMessage():  # starlette logs the text of one
                errors.insert(0, _exception_of(record.getMessage()))
            else:
                errors.append(record.getMessage())

    try:
        import uvicorn

        from lesson_code.app import app
    except Exception as error:
        sock.close()
        return Line(False, f"local server: {APP} does not import ({one_line(error)}); {install_hint()}")
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(Keep(logging.ERROR))
    logger.propagate = False
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/openapi.json"
    try:
        deadline = time.monotonic() + SERVER_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                why = errors[0] if errors else f"not started after {SERVER_TIMEOUT} s"
                return Line(False, f"local server: uvicorn could not start {APP} ({why})")
            time.sleep(0.02)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
        with opener.open(url, timeout=SERVER_TIMEOUT) as answer:
            status, description = answer.status, json.loads(answer.read())
        if status != 200 or "openapi" not in description:
            return Line(False, f"local server: GET {url} answered {status} without an OpenAPI description")
    except Exception as error:
        return Line(False, f"local server: GET {url} failed ({one_line(error)}); a firewall may block 127.0.0.1")
    finally:
        server.should_exit = True
        thread.join(SERVER_TIMEOUT)
        sock.close()
    return Line(True, f"uvicorn serves {APP}: GET /openapi.json answers {status}")


def _exception_of(traceback_text: str) -> str:
    """The exception at the end of a printed traceback, its type and message, on one line."""
    lines = traceback_text.splitlines()
    frames = [number for number, line in enumerate(lines) if line.lstrip().startswith('File "')]
    after = lines[frames[-1] + 1 :] if frames else lines
    start = next((number for number, line in enumerate(after) if line and not line[0].isspace()), 0)
    kept = [line for line in after[start:] if not line.strip().startswith("For further information")]
    return one_line(Exception(" ".join(kept)))


PREFIX_PROBE = "import sys; print(sys.prefix)"


def check_notebook(notebook: Path = NOTEBOOK) -> Line:
    """A Jupyter kernel starts, runs in this Python's environment, and runs the notebook, in a temporary copy."""
    label = f"notebook {notebook.name.split('_')[0]}"
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except Exception as error:
        return Line(False, f"Jupyter: cannot run notebooks ({one_line(error)}); {install_hint()}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="setup-check-") as scratch:
        copy = Path(scratch) / notebook.name
        shutil.copy(notebook, copy)
        if (notebook.parent / "helpers").is_dir():
            shutil.copytree(
                notebook.parent / "helpers",
                Path(scratch) / "helpers",
                ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"),
            )
        nb = nbformat.read(copy, as_version=4)
        cells = sum(cell.cell_type == "code" for cell in nb.cells)
        nb.cells.append(nbformat.v4.new_code_cell(PREFIX_PROBE))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        client = NotebookClient(
            nb,
            timeout=CELL_TIMEOUT,
            startup_timeout=KERNEL_TIMEOUT,
            kernel_name="python3",
            resources={"metadata": {"path": scratch}},
        )
        kernel_log = Path(scratch) / "kernel.log"
        try:
            with open(kernel_log, "w") as log:  # the kernel's own warnings, shown only when it fails
                client.execute(stderr=log)
        except CellExecutionError as error:
            failed = next((n for n, cell in enumerate(nb.cells, 1) if _error_of(cell)), None)
            where = f"cell {failed}" if failed else "a cell"
            why = _error_of(nb.cells[failed - 1]) if failed else one_line(error)
            return Line(
                False, f"{label}: {where} fails ({why}); edited? take a fresh copy of it, else ask the instructor"
            )
        except Exception as error:  # the kernel did not start, died, or a cell ran too long
            if type(error).__name__ == "NoSuchKernel":
                return Line(False, f"Jupyter kernel: none named python3 (is ipykernel installed?); {install_hint()}")
            said = [line for line in kernel_log.read_text(errors="replace").splitlines() if "Error" in line]
            why = f"{type(error).__name__}: {one_line(error)}" + (
                f"; the kernel said: {one_line(Exception(said[-1]))}" if said else ""
            )
            return Line(
                False,
                f"Jupyter kernel: {why}; kernels talk to Jupyter over 127.0.0.1: a firewall or security tool may "
                f"block it, else reinstall: {install_hint().removeprefix('run: ')}",
            )
        finally:  # nbclient's clean-up at exit fails for a kernel that never started: the kernel is gone by now
            atexit.unregister(client._cleanup_kernel)
    outputs = [output.get("text", "") for output in nb.cells[-1].get("outputs", [])]
    kernel_prefix = "".join(outputs).strip()
    if os.path.realpath(kernel_prefix) != os.path.realpath(sys.prefix):
        return Line(
            False,
            f"Jupyter kernel: 'python3' runs in {kernel_prefix or 'another Python'}, not in {sys.prefix}: another "
            "kernel named python3 is installed (see: jupyter kernelspec list); remove it or run jupyter from this venv",
        )
    return Line(True, f"Jupyter kernel runs {label} ({cells} code cells, {time.monotonic() - started:.1f} s)")


def _error_of(cell) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return one_line(Exception(f"{output.get('ename')}: {output.get('evalue')}"))
    return ""


def run(items: tuple = ITEMS, port: int = 0, requirements: Path = REQUIREMENTS, out=sys.stdout) -> bool:
    """Print one line per item as it is checked, then the verdict; True when every item is ok."""
    lines: list = []

    def say(found) -> None:
        for line in found if isinstance(found, list) else [found]:
            lines.append(line)
            print(line, file=out, flush=True)

    python = check_python()
    if "python" in items:
        say(python)
    if python.ok:
        sock = None
        try:
            if "packages" in items:
                say(check_packages(requirements))
            if "secret" in items:
                say(check_secret())
            if "port" in items or "server" in items:
                sock, verdict = check_port(port)
                if "port" in items:
                    say(verdict)
            if "server" in items:
                say(check_server(sock))
                sock = None
            if "notebook" in items:
                say(check_notebook())
        finally:
            if sock is not None:
                sock.close()
    ready = python.ok and all(line.ok for line in lines)
    print("Ready for the workshop." if ready else "Not ready: fix the lines marked FAIL.", file=out, flush=True)
    return ready


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=ITEMS, help="check only this item (repeat for several)")
    parser.add_argument("--port", type=int, default=0, help="the port of 127.0.0.1 to try (default: any free one)")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    return 0 if run(tuple(options.only or ITEMS), options.port, options.requirements) else 1


if __name__ == "__main__":
    sys.exit(main())
