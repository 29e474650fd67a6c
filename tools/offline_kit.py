"""An offline kit: the lessons and a wheelhouse for every laptop in the room, to carry on a USB stick.

    python tools/offline_kit.py                                  every common laptop, Python 3.10 to 3.14 (make kit)
    python tools/offline_kit.py --platform this --python this    this machine only
    python tools/offline_kit.py --platform windows-x64 --platform macos-arm64 --python 3.12 --python 3.13
    python tools/offline_kit.py --dry-run                        only check that PyPI has a wheel for everything

The kit (kit/ by default, ignored by git) holds README.txt, wheels/ (every wheel requirements.txt needs on each
platform and Python named, and kit.json saying which) and jwt-fastapi-lessons/ (the repository's files). A build
reuses the wheels already in the kit and removes those no target needs any more. docs/offline-kit.md says how to
install from it with no network; `make lab` and `make check` use kit/wheels (or ../wheels) by themselves.

Standard library only, plus the pip of the Python running this. pip evaluates environment markers against the
Python it runs in, even with --platform and --python-version, so each target's pip runs with the markers of that
platform and Python (sys_platform, platform_machine, python_version...): a Windows kit built on Linux then holds
pywinpty and colorama, and no wheel a Linux laptop alone needs.
"""

import argparse
import contextlib
import fnmatch
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
REPO_NAME = "jwt-fastapi-lessons"
KIT_FILE = "kit.json"
PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
PIP_TIMEOUT = 600  # seconds for one pip run: a cold download of one target's wheels takes well under a minute

# The oldest systems the kit serves. Linux: glibc 2.28 (Debian 10, Ubuntu 20.04 has 2.31, RHEL 8); every newer
# manylinux tag up to 2_28 and the older ones below it are accepted. macOS: 11 Big Sur, the first on Apple silicon;
# Intel Macs too, because greenlet (which SQLAlchemy needs) ships macosx_11_0 wheels only for Python 3.13 and later.
# pip widens a macosx tag itself: 11_0 also takes universal2 and every 10.x wheel.
LINUX_GLIBC_MINOR = 28


def _manylinux(arch: str, oldest_minor: int) -> tuple[str, ...]:
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(LINUX_GLIBC_MINOR, oldest_minor - 1, -1)]
    legacy = {"x86_64": ["manylinux2014", "manylinux2010", "manylinux1"], "aarch64": ["manylinux2014"]}[arch]
    return (*tags, *(f"{name}_{arch}" for name in legacy))


@dataclass(frozen=True)
class Platform:
    name: str
    label: str
    tags: tuple[str, ...]  # pip --platform values, the most specific first
    markers: dict = field(hash=False)  # PEP 508 environment markers of such a laptop


PLATFORMS = {
    platform_.name: platform_
    for platform_ in (
        Platform(
            "linux-x86_64",
            "Linux x86_64 (glibc 2.28 or newer)",
            _manylinux("x86_64", 5),
            {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64"},
        ),
        Platform(
            "linux-aarch64",
            "Linux aarch64 (glibc 2.28 or newer)",
            _manylinux("aarch64", 17),
            {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "platform_machine": "aarch64"},
        ),
        Platform(
            "macos-arm64",
            "macOS 11 or newer on Apple silicon",
            ("macosx_11_0_arm64",),
            {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix", "platform_machine": "arm64"},
        ),
        Platform(
            "macos-x86_64",
            "macOS 11 or newer on Intel",
            ("macosx_11_0_x86_64",),
            {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix", "platform_machine": "x86_64"},
        ),
        Platform(
            "windows-x64",
            "Windows x64",
            ("win_amd64",),
            {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": "AMD64"},
        ),
    )
}

# Run pip with the environment markers of the target, not of the Python running it. Two more fixes for pip 23
# (the venv's pip on Python 3.11 and 3.12): `pip install --python-version` checked each package's Requires-Python
# against the running Python, not the one named (pip 24 passes it on, as `pip download` always did), so a package
# needing 3.12 was refused for a 3.12 laptop; and pip tested each of PyPI's ~90,000 file names against the list of
# accepted tags, hashing the whole list each time (about 1,000 tags for Linux and Intel macOS): a frozenset takes a
# third of the time, with the same answer.
MARKER_RUNNER = """\
import json, sys
from pip._vendor.packaging import markers
environment = markers.default_environment()
environment.update(json.loads(sys.argv[1]))
markers.default_environment = lambda: dict(environment)
target_python = tuple(int(part) for part in environment["python_full_version"].split("."))
try:
    from pip._internal.resolution.resolvelib.candidates import RequiresPythonCandidate
    def requires_python(self, py_version_info, _original=RequiresPythonCandidate.__init__):
        _original(self, target_python if py_version_info is None else py_version_info)
    RequiresPythonCandidate.__init__ = requires_python
except (ImportError, AttributeError):
    pass
try:
    from pip._internal.models.wheel import Wheel
    frozen = {}
    def supported(self, tags, _original=Wheel.supported):
        if isinstance(tags, list):
            cached = frozen.get(id(tags))
            if cached is None or cached[0] is not tags:
                cached = frozen[id(tags)] = (tags, frozenset(tags))
            return not self.file_tags.isdisjoint(cached[1])
        return _original(self, tags)
    Wheel.supported = supported
except (ImportError, AttributeError):
    pass
from pip._internal.cli.main import main
sys.exit(main(sys.argv[2:]))
"""

# pip reads only PyPI (or the index these name) and none of this machine's pip configuration: a find-links or
# extra index in a config file would put wheels in the kit that PyPI may not have, or hide a missing one.
PIP_SETTINGS_KEPT = ("PIP_INDEX_URL", "PIP_CERT", "PIP_CLIENT_CERT", "PIP_TRUSTED_HOST", "PIP_PROXY", "PIP_CACHE_DIR")


def pip_environment(extra: dict | None = None) -> dict:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("PIP_") or name in PIP_SETTINGS_KEPT
    }
    environment.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    environment.update(extra or {})
    return environment


@dataclass(frozen=True)
class Target:
    platform: Platform
    python: str

    def __str__(self) -> str:
        return f"{self.platform.name} Python {self.python}"

    @property
    def slug(self) -> str:
        return f"{self.platform.name}-py{self.python}"

    def markers(self) -> dict:
        return {
            **self.platform.markers,
            "python_version": self.python,
            "python_full_version": f"{self.python}.0",
            "implementation_name": "cpython",
            "implementation_version": f"{self.python}.0",
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_version": "",
        }

    def pip(self, command: str, *args: str) -> list[str]:
        """The command line that runs `pip command args` for this target: wheels only, its tags and its markers."""
        platforms = [option for tag in self.platform.tags for option in ("--platform", tag)]
        return [
            sys.executable,
            "-c",
            MARKER_RUNNER,
            json.dumps(self.markers()),
            command,
            "--only-binary=:all:",
            *platforms,
            "--python-version",
            self.python,
            "--implementation",
            "cp",
            *args,
        ]


def this_platform() -> Platform:
    machine = platform.machine().lower()
    name = {
        ("linux", "x86_64"): "linux-x86_64",
        ("linux", "amd64"): "linux-x86_64",
        ("linux", "aarch64"): "linux-aarch64",
        ("linux", "arm64"): "linux-aarch64",
        ("darwin", "arm64"): "macos-arm64",
        ("darwin", "x86_64"): "macos-x86_64",
        ("win32", "amd64"): "windows-x64",
        ("win32", "x86_64"): "windows-x64",
    }.get((sys.platform, machine))
    if name is None or (sys.platform == "linux" and platform.libc_ver()[0] != "glibc"):
        raise SystemExit(
            f"this machine ({sys.platform} {machine}) is none of the kit's platforms ({', '.join(PLATFORMS)}): "
            "name them with --platform"
        )
    return PLATFORMS[name]


def this_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def targets_for(platform_names: list[str] | None, pythons: list[str] | None) -> list[Target]:
    """Targets for --platform and --python values: names, 'this', or 'all' (the default)."""
    chosen_platforms: list[Platform] = []
    for name in platform_names or ["all"]:
        if name == "all":
            chosen_platforms += PLATFORMS.values()
        elif name == "this":
            chosen_platforms.append(this_platform())
        elif name in PLATFORMS:
            chosen_platforms.append(PLATFORMS[name])
        else:
            raise SystemExit(f"unknown platform {name!r}: choose from all, this, {', '.join(PLATFORMS)}")
    chosen_pythons: list[str] = []
    for version in pythons or ["all"]:
        if version == "all":
            chosen_pythons += PYTHONS
        elif version == "this":
            chosen_pythons.append(this_python())
        elif re.fullmatch(r"3\.\d{1,2}", version) and (3, 10) <= tuple(map(int, version.split("."))):
            chosen_pythons.append(version)
        else:
            raise SystemExit(f"unknown Python {version!r}: choose from all, this, 3.10 or newer ({', '.join(PYTHONS)})")
    targets = [Target(platform_, python) for platform_ in chosen_platforms for python in chosen_pythons]
    return list(dict.fromkeys(targets))


# What pip says when a requirement has no wheel: pip 23 adds the marker, pip 24 and later only the parent.
NO_VERSION = re.compile(r"satisfies the requirement (?P<requirement>.+?) \(from versions: (?P<versions>[^)]*)\)")


def requirement_lines(requirements: Path) -> dict[int, str]:
    lines = {}
    for number, line in enumerate(requirements.read_text().splitlines(), start=1):
        text = line.split(" #")[0].strip()
        if text and not text.startswith(("#", "-")):
            lines[number] = text
    return lines


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    return re.sub(r"[-_.]+", "-", match.group(0)).lower() if match else requirement.strip()


def _pin_of(name: str, requirements: Path, markers: dict) -> str | None:
    """The line of requirements.txt that pins the package called name for this target, as 'line N: text'."""
    found = [(number, text) for number, text in requirement_lines(requirements).items() if _name(text) == name]
    for number, text in found:
        if _applies(text, markers):
            return f"{requirements.name} line {number}: {text}"
    return f"{requirements.name} line {found[0][0]}: {found[0][1]}" if found else None


def _applies(requirement: str, markers: dict) -> bool:
    if ";" not in requirement:
        return True
    try:
        from pip._vendor.packaging.markers import Marker
    except ImportError:  # pragma: no cover - pip always vendors packaging
        return True
    return Marker(requirement.split(";", 1)[1]).evaluate(markers)


def explain_failure(target: Target, stderr: str, requirements: Path) -> str:
    """One paragraph naming the pin that has no wheel for target, or pip's own errors when it is something else."""
    where = f"{target} ({target.platform.label}; pip --platform {target.platform.tags[0]})"
    problems = []
    for match in NO_VERSION.finditer(stderr):
        requirement, _, parent = match.group("requirement").partition(" (from ")
        requirement = requirement.split(";")[0].strip()
        parent = parent.rstrip(")").strip()
        versions = [
            version.strip() for version in match.group("versions").split(",") if version.strip() not in ("", "none")
        ]
        offered = f"versions with a wheel for it: {', '.join(versions[-3:])}" if versions else "no version has one"
        if parent and not parent.startswith("-r "):
            pin = _pin_of(_name(parent), requirements, target.markers())
            source = f"needed by {parent}" + (f", pinned at {pin}" if pin else ", which comes in through the pins")
        else:
            pin = _pin_of(_name(requirement), requirements, target.markers())
            source = pin or requirements.name
        problems.append(f"no wheel of {requirement} ({source}); {offered}")
    if not problems:
        errors = [line.removeprefix("ERROR: ") for line in stderr.splitlines() if line.startswith("ERROR:")]
        problems.append("; ".join(errors[-4:]) or stderr.strip()[-600:] or "pip failed without a message")
    return f"{where}: " + "; ".join(problems)


class Package(NamedTuple):
    version: str
    wheel: str  # its file name
    requires_python: str  # its Requires-Python, "" when it has none


@dataclass
class Resolution:
    target: Target
    ok: bool
    seconds: float
    packages: dict = field(default_factory=dict)  # canonical name -> Package
    problem: str = ""


def resolve(target: Target, requirements: Path = REQUIREMENTS, find_links: Path | None = None) -> Resolution:
    """What `pip install -r requirements` would install on target, from wheels only (PyPI, or find_links alone)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kit-resolve-") as scratch:
        report = Path(scratch) / "report.json"
        sources = ["--no-index", "--find-links", str(find_links)] if find_links else []
        command = target.pip(
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--target",
            str(Path(scratch) / "target"),
            "--report",
            str(report),
            *sources,
            "-r",
            str(requirements),
        )
        result = _run(command)
        seconds = time.monotonic() - started
        if result.returncode != 0:
            return Resolution(target, False, seconds, problem=explain_failure(target, result.stderr, requirements))
        packages = {}
        for item in json.loads(report.read_text())["install"]:
            url = item["download_info"]["url"]
            metadata = item["metadata"]
            packages[_name(metadata["name"])] = Package(
                metadata["version"], url.rsplit("/", 1)[-1], metadata.get("requires_python", "")
            )
        return Resolution(target, True, seconds, packages)


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, env=pip_environment(), cwd=cwd, timeout=PIP_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, 1, "", f"ERROR: pip took over {PIP_TIMEOUT} s")


def resolve_all(targets: list[Target], requirements: Path = REQUIREMENTS, jobs: int | None = None, **kwargs):
    """resolve() for each target, several at once (pip spends most of its time parsing PyPI's pages, on one core)."""
    with ThreadPoolExecutor(jobs or default_jobs()) as pool:
        return list(pool.map(lambda target: resolve(target, requirements, **kwargs), targets))


def default_jobs() -> int:
    return max(2, min(6, 2 * (os.cpu_count() or 1)))


def download(target: Target, into: Path, requirements: Path, reuse: Path) -> Resolution:
    """Download target's wheels into the folder into, taking those already in reuse from there."""
    started = time.monotonic()
    into.mkdir(parents=True, exist_ok=True)
    result = _run(
        target.pip("download", "--quiet", "--dest", str(into), "--find-links", str(reuse), "-r", str(requirements))
    )
    ok = result.returncode == 0
    problem = "" if ok else explain_failure(target, result.stderr, requirements)
    return Resolution(target, ok, time.monotonic() - started, problem=problem)


def repository_files(root: Path, leave_out: Path) -> list[Path]:
    """The files a clone would hold, and new ones git does not ignore: git ls-files, or without git (in a kit's copy
    of the repository, say) every file that no pattern of .gitignore names."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout.decode()
        files = [root / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        ignored = [".git", "kit", *_gitignore_patterns(root)]
        files = []
        for folder, folders, names in os.walk(root):
            folders[:] = [name for name in folders if not _matches(name, ignored)]
            files += [Path(folder) / name for name in names if not _matches(name, ignored)]
    leave_out = leave_out.resolve()
    return sorted(
        path for path in files if path.is_file() and not path.is_symlink() and leave_out not in path.resolve().parents
    )


def _gitignore_patterns(root: Path) -> list[str]:
    try:
        lines = (root / ".gitignore").read_text().splitlines()
    except OSError:
        return ["__pycache__", ".venv*", ".jwt_secret*", ".jwt_keys", "lesson.db*"]
    return [line.strip().strip("/") for line in lines if line.strip() and not line.startswith(("#", "!"))]


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def copy_repository(root: Path, into: Path, leave_out: Path) -> int:
    if into.exists():
        shutil.rmtree(into)
    files = repository_files(root, leave_out)
    for path in files:
        destination = into / path.relative_to(root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)
    return len(files)


def git_description(root: Path) -> str:
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"commit {commit}" + (" with uncommitted changes" if dirty else "")


README = """\
Offline kit for {repo}: the lessons and every Python package they need, for laptops with no network.
Built {built} from {source}, for:
{targets}

Copy this whole folder (README.txt, wheels/ and {repo}/) from the stick into a folder of your own on your
laptop (do not work on the stick: it is slow, and the lessons refuse to keep their secret there), then in a
terminal:

  macOS and Linux (needs make and Python 3.10 or newer):
    cd {repo}
    make check          installs into .venv from ../wheels, with no network, then checks the laptop
    make lab            opens the lessons in JupyterLab

  Windows (PowerShell; py -3.12 picks a version):
    cd {repo}
    py -3 -m venv .venv
    .venv\\Scripts\\python -m pip install --no-index --find-links ..\\wheels -r requirements.txt
    .venv\\Scripts\\python tools\\setup_check.py
    .venv\\Scripts\\jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks

  Without make on macOS or Linux:
    python3 -m venv .venv
    .venv/bin/python -m pip install --no-index --find-links ../wheels -r requirements.txt
    .venv/bin/python tools/setup_check.py

The check ends with "Ready for the workshop." when the laptop is ready. More: {repo}/docs/offline-kit.md
"""


def build(
    targets: list[Target], out: Path, requirements: Path, jobs: int, with_repository: bool = True, verify: bool = False
) -> bool:
    out = out.resolve()
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    (wheels / KIT_FILE).unlink(missing_ok=True)  # until this build is done, make lab does not take this for a kit
    started = time.monotonic()
    print(f"Building an offline kit in {out} for {len(targets)} platform and Python pairs, {jobs} at a time")
    with tempfile.TemporaryDirectory(prefix=".partial-", dir=out) as partial:
        partial = Path(partial)

        def fetch(target: Target) -> tuple[Resolution, set[str]]:
            # Each target downloads into a folder of its own (pip processes never write the same file), taking
            # what the kit already holds from it; its wheels join the kit at once, for the targets still to come.
            folder = partial / target.slug
            outcome = download(target, folder, requirements, reuse=wheels)
            names = {wheel.name for wheel in folder.glob("*.whl")}
            for wheel in folder.glob("*.whl"):
                if not (wheels / wheel.name).exists():
                    with contextlib.suppress(OSError):  # another target brought the same file meanwhile
                        os.replace(wheel, wheels / wheel.name)
            _report(outcome, f"{len(names)} wheels")
            return outcome, names

        with ThreadPoolExecutor(jobs) as pool:
            fetched = list(pool.map(fetch, targets))
    failed = [outcome for outcome, _ in fetched if not outcome.ok]
    if failed:
        print(f"Not built: {len(failed)} of {len(targets)} could not get every wheel (see the FAIL lines).")
        return False
    needed = set().union(*(names for _, names in fetched))
    for wheel in wheels.glob("*.whl"):
        if wheel.name not in needed:  # from an earlier build, for another requirements.txt or other targets
            wheel.unlink()
    if verify:  # the very resolution a laptop with no network makes; pip download already made the same one
        print("Checking that each of them installs from the kit alone...")
        checked = resolve_all(targets, requirements, jobs, find_links=wheels)
        for outcome in checked:
            _report(outcome, "installs from the kit alone")
        if not all(outcome.ok for outcome in checked):
            return False
    built = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    (wheels / KIT_FILE).write_text(
        json.dumps(
            {
                "built": built,
                "source": git_description(ROOT),
                "requirements_sha256": hashlib.sha256(requirements.read_bytes()).hexdigest(),
                "targets": [{"platform": target.platform.name, "python": target.python} for target in targets],
            },
            indent=2,
        )
        + "\n"
    )
    if with_repository:
        copied = copy_repository(ROOT, out / REPO_NAME, leave_out=out)
        print(f"Copied the repository's {copied} files to {out / REPO_NAME}")
    (out / "README.txt").write_text(
        README.format(
            repo=REPO_NAME,
            built=built,
            source=git_description(ROOT),
            targets="\n".join(f"  {target}: {target.platform.label}" for target in targets),
        )
    )
    size = sum(wheel.stat().st_size for wheel in wheels.glob("*.whl"))
    print(
        f"Kit ready in {out}: {len(needed)} wheels, {size / 1e6:.0f} MB, in {time.monotonic() - started:.0f} s. "
        f"Copy the whole folder to the stick; {out / 'README.txt'} says what to do next."
    )
    return True


def _report(outcome: Resolution, what: str) -> None:
    if outcome.ok:
        print(f"ok   {outcome.target}: {what} ({outcome.seconds:.0f} s)", flush=True)
    else:
        print(f"FAIL {outcome.problem}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--platform",
        action="append",
        metavar="NAME",
        help=f"all (the default), this, or one of: {', '.join(PLATFORMS)}; repeat for several",
    )
    parser.add_argument(
        "--python", action="append", metavar="X.Y", help=f"all (the default: {', '.join(PYTHONS)}), this, or 3.X"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "kit", help="the kit's folder (default: kit/)")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS, help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="pip runs at once")
    parser.add_argument("--dry-run", action="store_true", help="only check that PyPI has a wheel for everything")
    parser.add_argument("--no-repository", action="store_true", help="wheels only, no copy of the repository")
    parser.add_argument(
        "--verify", action="store_true", help="then resolve each target again from the kit alone, as a laptop will"
    )
    options = parser.parse_args(argv)
    targets = targets_for(options.platform, options.python)
    if options.dry_run:
        results = resolve_all(targets, options.requirements, options.jobs)
        for outcome in results:
            _report(outcome, f"{len(outcome.packages)} wheels")
        return 0 if all(outcome.ok for outcome in results) else 1
    built = build(targets, options.out, options.requirements, options.jobs, not options.no_repository, options.verify)
    return 0 if built else 1


if __name__ == "__main__":
    sys.exit(main())
