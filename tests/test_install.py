"""requirements.txt installs from wheels on every common laptop; an offline kit installs with no network at all.

The tests marked install need PyPI: without it they skip, and fail in CI (the CI variable set). .ci/run runs them
once, not on each of its Pythons: what they check does not depend on the Python running them. The others (how the
kit is laid out, the Makefile's choices, no half-made .venv) need neither network nor PyPI.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import offline_kit
import pytest
from offline_kit import PLATFORMS, PYTHONS, Target
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.utils.postgres import skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
# PYTHON, VENV, KIT_ARGS, ...: the Makefile's own variables, which a make running the tests exports to them
MAKEFILE_VARIABLES = re.findall(r"^([A-Z_]+) *[?:]?=", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
KIT_TIMEOUT = 240  # seconds: building a kit for this machine, installing it offline and checking take about 45
# Inside a network namespace: bring its loopback up (a new namespace has it down), show that the world is out of
# reach, then run the command. Python rather than `ip link`, which not every machine has.
OFFLINE = """\
import fcntl, os, socket, struct, sys
SIOCSIFFLAGS, IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x8914, 0x1, 0x8, 0x40
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING, bytes(14)))
try:
    socket.create_connection(("pypi.org", 443), timeout=5).close()
    sys.exit("the network namespace reaches pypi.org")
except OSError as error:
    print(f"no network: {error}", flush=True)
os.execvp(sys.argv[1], sys.argv[1:])
"""


def pypi_unreachable() -> str | None:
    """Why PyPI cannot be reached from here, or None when it can."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/")
    try:
        with urllib.request.urlopen(f"{index}/pip/", timeout=15):  # noqa: S310 (an https index, or the user's)
            return None
    except OSError as error:
        return f"PyPI is out of reach ({index}: {error})"


@pytest.fixture(scope="module")
def network() -> None:
    reason = pypi_unreachable()
    if reason:
        skip_or_fail(reason)


def isolated_environment(**extra: str) -> dict:
    """This environment without pip's settings (a find-links or extra index here would hide a missing wheel),
    without the test suite's secret, so that a copy of the repository makes and checks its own, and without the
    variables of the make that runs the tests: under it, a make in the copy would print its directory lines, and
    CI's `make test VENV=.venv-3.10` exports VENV, so the copy's make would build and remove a venv of that name."""
    environment = offline_kit.pip_environment(extra)
    for name in (
        "JWT_SECRET_KEY",
        "JWT_SECRET_FILE",
        "PYTHONPATH",
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "MAKEOVERRIDES",
    ):
        environment.pop(name, None)
    for name in MAKEFILE_VARIABLES:
        environment.pop(name, None)
    return environment


def offline_prefix() -> list[str]:
    """The command prefix that runs a command with loopback only; skips (fails in CI) where that cannot be made."""
    unshare = shutil.which("unshare")
    if unshare is None:
        skip_or_fail("unshare (util-linux) is not installed: it makes a network namespace with loopback only")
    attempts = [[unshare, "--net"], [unshare, "--net", "--map-root-user"]]
    for prefix in attempts:
        made = subprocess.run([*prefix, "true"], capture_output=True, text=True, check=False)
        if made.returncode == 0:
            return [*prefix, sys.executable, "-c", OFFLINE]
    skip_or_fail(f"cannot make a network namespace here ({made.stderr.strip()}): run as root, or allow user namespaces")


def needs_make() -> str:
    make = shutil.which("make")
    if make is None:
        skip_or_fail("make is not installed")
    return make


# --- every pin has a wheel on every common laptop (PyPI) -------------------------------------------------------

MATRIX = [Target(PLATFORMS[name], python) for name in PLATFORMS for python in PYTHONS]


@pytest.fixture(scope="module")
def resolutions(network) -> dict:
    """What pip would install from PyPI for each platform and Python, wheels only, resolved several at a time."""
    started = time.monotonic()
    results = offline_kit.resolve_all(MATRIX)
    seconds = time.monotonic() - started
    slowest = max(results, key=lambda result: result.seconds)
    print(
        f"\nresolved {len(MATRIX)} platforms and Pythons in {seconds:.0f} s (slowest: {slowest.target}, {slowest.seconds:.0f} s)"
    )
    return {(result.target.platform.name, result.target.python): result for result in results}


@pytest.mark.install
@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("platform_name", PLATFORMS)
def test_every_pin_installs_from_wheels(resolutions, platform_name, python):
    result = resolutions[(platform_name, python)]
    if not result.ok:
        pytest.fail(result.problem, pytrace=False)
    assert [package.wheel for package in result.packages.values() if not package.wheel.endswith(".whl")] == []
    # Each package admits the laptop's Python (pip 23 checked the Python running it: offline_kit corrects that).
    python_version = Version(f"{python}.0")
    assert [
        f"{name} {package.version} needs Python {package.requires_python}"
        for name, package in result.packages.items()
        if python_version not in SpecifierSet(package.requires_python)
    ] == []
    assert {"jupyterlab", "cryptography", "python-jose", "fastapi", "psycopg-binary", "argon2-cffi"} <= set(
        result.packages
    )


@pytest.mark.install
def test_intel_macs_get_the_last_cryptography_with_their_wheel(resolutions):
    """cryptography 49 and later have no macOS x86_64 wheel: requirements.txt pins 48.0.1 there, 50.0.2 elsewhere."""
    versions = {key: result.packages["cryptography"].version for key, result in resolutions.items()}
    for (platform_name, python), version in versions.items():
        assert version == ("48.0.1" if platform_name == "macos-x86_64" else "50.0.2"), (platform_name, python)
    wheel = resolutions[("macos-x86_64", "3.13")].packages["cryptography"].wheel
    assert wheel.endswith("macosx_10_9_universal2.whl")


@pytest.mark.install
def test_each_platform_is_resolved_with_its_own_markers(resolutions):
    """pip alone would use this machine's markers; offline_kit gives it the target's: Windows gets pywinpty."""
    for (platform_name, python), result in resolutions.items():
        packages = set(result.packages)
        windows, macos = platform_name == "windows-x64", platform_name.startswith("macos")
        assert {"pywinpty", "pywin32", "colorama"} <= packages if windows else not packages & {"pywinpty", "pywin32"}
        assert ("pexpect" in packages) != windows, (platform_name, python)
        assert ("appnope" in packages) == macos, (platform_name, python)
        assert ("exceptiongroup" in packages) == ("tomli" in packages) == (python == "3.10"), (platform_name, python)


@pytest.mark.install
def test_a_pin_without_a_wheel_is_named_with_its_platform(network, tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# only this\ncryptography==50.0.2  # no Intel Mac wheel\n")
    result = offline_kit.resolve(Target(PLATFORMS["macos-x86_64"], "3.12"), requirements)
    assert not result.ok
    assert result.problem.startswith(
        "macos-x86_64 Python 3.12 (macOS 11 or newer on Intel; pip --platform macosx_11_0_x86_64): "
        "no wheel of cryptography==50.0.2 (requirements.txt line 2: cryptography==50.0.2); "
        "versions with a wheel for it: "
    )
    assert "48.0.1" in result.problem


@pytest.mark.install
def test_a_dependency_without_a_wheel_is_named_with_the_pin_it_comes_from(network, tmp_path):
    """Why the kit's macOS is 11: on 10.13, greenlet (which SQLAlchemy needs) has no wheel for Python 3.13."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("sqlalchemy==2.0.58\n")
    old_intel_mac = offline_kit.Platform(
        "macos-10.13-x86_64", "macOS 10.13 on Intel", ("macosx_10_13_x86_64",), PLATFORMS["macos-x86_64"].markers
    )
    result = offline_kit.resolve(Target(old_intel_mac, "3.13"), requirements)
    assert not result.ok
    assert result.problem == (
        "macos-10.13-x86_64 Python 3.13 (macOS 10.13 on Intel; pip --platform macosx_10_13_x86_64): "
        "no wheel of greenlet>=1 (needed by sqlalchemy, pinned at requirements.txt line 1: sqlalchemy==2.0.58); "
        "no version has one"
    )


# --- the offline kit: built here, installed in a network namespace with loopback only ------------------------


@pytest.mark.install
def test_offline_kit_installs_and_checks_ready_with_no_network(network, tmp_path):
    make = needs_make()
    prefix = offline_prefix()
    kit = tmp_path / "kit"
    started = time.monotonic()
    built = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "offline_kit.py"), "--platform", "this", "--python", "this"]
        + ["--out", str(kit)],
        capture_output=True,
        text=True,
        env=isolated_environment(),
        timeout=KIT_TIMEOUT,
        check=False,
    )
    build_seconds = time.monotonic() - started
    assert built.returncode == 0, built.stdout + built.stderr
    this = Target(offline_kit.this_platform(), offline_kit.this_python())
    described = json.loads((kit / "wheels" / "kit.json").read_text())
    assert described["targets"] == [{"platform": this.platform.name, "python": this.python}]
    assert described["requirements_sha256"] == hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()
    assert "make check" in (kit / "README.txt").read_text()
    copy = kit / offline_kit.REPO_NAME
    for expected in ("Makefile", "requirements.txt", "tools/setup_check.py", "notebooks/01_anatomy_of_a_jwt.ipynb"):
        assert (copy / expected).is_file(), expected
    for unwanted in (".git", ".venv", ".jwt_secret", "lesson.db", "kit"):
        assert not (copy / unwanted).exists(), unwanted

    started = time.monotonic()
    installed = subprocess.run(
        [*prefix, make, "check", f"PYTHON={sys.executable}"],
        cwd=copy,
        capture_output=True,
        text=True,
        env=isolated_environment(PIP_RETRIES="0", PIP_TIMEOUT="5"),
        timeout=KIT_TIMEOUT,
        check=False,
    )
    install_seconds = time.monotonic() - started
    print(f"\nkit for {this} built in {build_seconds:.0f} s; installed and checked offline in {install_seconds:.0f} s")
    output = installed.stdout + installed.stderr
    assert installed.returncode == 0, output
    lines = installed.stdout.splitlines()
    assert lines[0].startswith("no network: ")
    assert "pip install --no-index --find-links ../wheels -r requirements.txt" in installed.stdout
    verdicts = [line for line in lines if line.startswith(("ok   ", "FAIL "))]
    assert [line[:5] for line in verdicts] == ["ok   "] * 6, output
    assert lines[-1] == "Ready for the workshop."
    assert (copy / ".venv" / ".installed-lab").is_file()


# --- the Makefile: the kit when present, and no half-made .venv (no network needed) -------------------------


@pytest.fixture
def repository_copy(tmp_path) -> Path:
    """The repository's files, as the kit copies them, in a folder of their own (no .venv, no kit)."""
    copy = tmp_path / "repo"
    offline_kit.copy_repository(ROOT, copy, leave_out=ROOT / "kit")
    return copy


def make_dry_run(copy: Path, *arguments: str) -> str:
    result = subprocess.run(
        [needs_make(), "-n", *arguments],
        cwd=copy,
        capture_output=True,
        text=True,
        env=isolated_environment(),
        timeout=60,
        check=True,
    )
    return result.stdout


def test_make_installs_from_the_kit_when_there_is_one(repository_copy):
    assert "--no-index" not in make_dry_run(repository_copy, "check")
    (repository_copy / "kit" / "wheels").mkdir(parents=True)
    (repository_copy / "kit" / "wheels" / "kit.json").write_text("{}\n")
    assert "pip install --no-index --find-links kit/wheels -r requirements.txt" in make_dry_run(
        repository_copy, "check"
    )
    assert "pip install --no-index --find-links kit/wheels -r requirements.txt" in make_dry_run(repository_copy, "lab")
    # The test tools are not in the kit: make test takes the kit's wheels first and the rest from PyPI.
    assert "pip install --find-links kit/wheels -r requirements-dev.txt" in make_dry_run(repository_copy, "test")
    assert "--no-index" not in make_dry_run(repository_copy, "check", "KIT_WHEELS=")


def test_the_kit_s_own_copy_finds_its_wheels_one_folder_up(tmp_path):
    copy = tmp_path / offline_kit.REPO_NAME
    offline_kit.copy_repository(ROOT, copy, leave_out=ROOT / "kit")
    (tmp_path / "wheels").mkdir()
    assert "--no-index" not in make_dry_run(copy, "check")  # a folder called wheels is not enough
    (tmp_path / "wheels" / "kit.json").write_text("{}\n")
    assert "pip install --no-index --find-links ../wheels -r requirements.txt" in make_dry_run(copy, "check")


def test_a_kit_without_the_wheels_leaves_no_half_made_venv(repository_copy):
    """pip fails at once (--no-index, an empty kit): the fresh .venv is removed, and the line says why."""
    (repository_copy / "kit" / "wheels").mkdir(parents=True)
    (repository_copy / "kit" / "wheels" / "kit.json").write_text("{}\n")
    result = run_make(repository_copy, "check", f"PYTHON={sys.executable}")
    assert result.returncode != 0
    assert "No matching distribution found for jupyterlab==" in result.stderr
    assert (
        "make: pip could not install requirements.txt from the offline kit in kit/wheels (was it built for this "
        "platform and this requirements.txt? see docs/offline-kit.md); removed the half-made .venv"
    ) in result.stderr
    assert not (repository_copy / ".venv").exists()


def run_make(copy: Path, *arguments: str, prefix: tuple[str, ...] = (), timeout: int = 120, **environment: str):
    """make in a copy of the repository, as a learner runs it: this suite's secret and the make running the tests
    left out (isolated_environment); its output captured, its exit status left to the test."""
    return subprocess.run(
        [*prefix, needs_make(), *arguments],
        cwd=copy,
        capture_output=True,
        text=True,
        env=isolated_environment(**environment),
        timeout=timeout,
        check=False,
    )


def test_no_network_and_no_kit_leaves_no_half_made_venv(repository_copy):
    """The issue's report: a fresh clone without network stopped at jupyterlab and left a half-made .venv."""
    prefix = offline_prefix()
    result = run_make(
        repository_copy, "check", f"PYTHON={sys.executable}", prefix=tuple(prefix), PIP_RETRIES="0", PIP_TIMEOUT="5"
    )
    assert result.returncode != 0
    assert "No matching distribution found for jupyterlab==" in result.stderr
    assert (
        "make: pip could not install requirements.txt (no network? docs/offline-kit.md says how to install from an "
        "offline kit); removed the half-made .venv"
    ) in result.stderr
    assert not (repository_copy / ".venv").exists()


def test_a_finished_venv_is_kept_when_an_update_fails(repository_copy):
    """Only a venv this run made is removed: a working one whose update fails stays, and make tries again later."""
    venv = repository_copy / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    (venv / ".installed-lab").touch()
    os.utime(venv / ".installed-lab", (1, 1))  # older than requirements.txt: make installs again
    (repository_copy / "kit" / "wheels").mkdir(parents=True)
    (repository_copy / "kit" / "wheels" / "kit.json").write_text("{}\n")
    result = run_make(repository_copy, "check", timeout=60)
    assert result.returncode != 0
    assert "removed the half-made" not in result.stderr
    assert (venv / "pyvenv.cfg").is_file()


# --- offline_kit's pieces (no network needed) -----------------------------------------------------------------


def test_requirements_pick_one_cryptography_for_each_platform():
    lines = [Requirement(text) for text in offline_kit.requirement_lines(ROOT / "requirements.txt").values()]
    for target in MATRIX:
        chosen = [
            str(line.specifier)
            for line in lines
            if line.name == "cryptography" and (line.marker is None or line.marker.evaluate(target.markers()))
        ]
        assert chosen == (["==48.0.1"] if target.platform.name == "macos-x86_64" else ["==50.0.2"]), target


def test_targets_default_to_every_common_laptop():
    assert len(offline_kit.targets_for(None, None)) == 25
    this = offline_kit.targets_for(["this"], ["this"])
    assert [(target.platform, target.python) for target in this] == [
        (offline_kit.this_platform(), f"{sys.version_info[0]}.{sys.version_info[1]}")
    ]
    assert [str(target) for target in offline_kit.targets_for(["windows-x64", "windows-x64"], ["3.12"])] == [
        "windows-x64 Python 3.12"
    ]
    with pytest.raises(SystemExit, match="unknown platform 'beos'"):
        offline_kit.targets_for(["beos"], None)
    with pytest.raises(SystemExit, match=r"unknown Python '3\.9'"):
        offline_kit.targets_for(None, ["3.9"])


def test_pip_s_messages_become_one_line_naming_the_pin(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("jupyterlab==4.6.6\nsqlalchemy==2.0.58  # the ORM\n")
    target = Target(PLATFORMS["windows-x64"], "3.14")
    where = "windows-x64 Python 3.14 (Windows x64; pip --platform win_amd64): "
    pip_23 = (
        'ERROR: Could not find a version that satisfies the requirement greenlet>=1; platform_machine == "AMD64" '
        "(from sqlalchemy) (from versions: 0.4.0, 3.0.1)\nERROR: No matching distribution found for greenlet>=1\n"
    )
    assert offline_kit.explain_failure(target, pip_23, requirements) == where + (
        "no wheel of greenlet>=1 (needed by sqlalchemy, pinned at requirements.txt line 2: sqlalchemy==2.0.58); "
        "versions with a wheel for it: 0.4.0, 3.0.1"
    )
    pip_26 = (
        "ERROR: Could not find a version that satisfies the requirement jupyterlab==4.6.6 (from -r "
        f"{requirements} (line 1)) (from versions: none)\n"
    )
    assert offline_kit.explain_failure(target, pip_26, requirements) == where + (
        "no wheel of jupyterlab==4.6.6 (requirements.txt line 1: jupyterlab==4.6.6); no version has one"
    )
    conflict = "ERROR: Cannot install a==1 and b==2 because these package versions have conflicting dependencies.\n"
    assert offline_kit.explain_failure(target, conflict, requirements) == where + (
        "Cannot install a==1 and b==2 because these package versions have conflicting dependencies."
    )


def test_the_kit_copies_what_a_clone_holds(tmp_path):
    files = {path.relative_to(ROOT).as_posix() for path in offline_kit.repository_files(ROOT, ROOT / "kit")}
    assert {"Makefile", "requirements.txt", "tools/offline_kit.py", "tests/test_install.py"} <= files
    assert not any(name.startswith((".git/", ".venv", "kit/")) for name in files)
    assert not files & {".jwt_secret", "lesson.db"}
    assert not {name for name in files if name.startswith("tools/")} & {
        path.relative_to(ROOT).as_posix() for path in offline_kit.repository_files(ROOT, ROOT / "tools")
    }


def test_a_copy_without_git_is_copied_without_what_gitignore_names(tmp_path):
    """A kit built from a kit's copy (no .git): .gitignore decides, so no secret, key, database or venv goes in."""
    shutil.copy(ROOT / ".gitignore", tmp_path / ".gitignore")
    for name in ("Makefile", "lesson_code/tokens.py", ".ci/run", ".jwt_secret", ".jwt_secret.123.ab", "lesson.db"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    for folder in (".venv/bin", ".venv-3.10", ".jwt_keys", "notebooks-live", "lesson_code/__pycache__", "kit/wheels"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "file").write_text("x\n")
    files = {path.relative_to(tmp_path).as_posix() for path in offline_kit.repository_files(tmp_path, tmp_path / "out")}
    assert files == {".gitignore", "Makefile", "lesson_code/tokens.py", ".ci/run"}
