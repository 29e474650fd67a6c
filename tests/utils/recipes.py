"""A copy-paster's empty project, for the README's "Take it into your service" recipes: only the files a recipe
names, and only the packages it installs importable (every other installed distribution refused at import, as if
it were not there), lesson_code/ nowhere on the path."""

import importlib.metadata
import os
import shutil
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
GUARD = '''"""Installed by the recipe test: the distributions the recipe does not install cannot be imported."""
import importlib.abc
import sys

BLOCKED = {blocked!r}


class NotInstalledByTheRecipe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (the recipe does not install it)", name=name)
        return None


sys.meta_path.insert(0, NotInstalledByTheRecipe())
'''


def closure(requirements: list[str]) -> set[str]:
    """The canonical names of the distributions these requirements bring, with their dependencies, as installed."""
    todo, seen, names = [Requirement(text) for text in requirements], set(), set()
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional dependency this machine does not have
        names.add(key[0])
        for text in distribution.requires or []:
            dependency = Requirement(text)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(dependency)
    return names


def top_level_modules(distribution: importlib.metadata.Distribution) -> set[str]:
    """The top-level modules a distribution installs: from top_level.txt, else from its file list (Python 3.10's
    packages_distributions reads only top_level.txt, which wheels built by some tools, pwdlib's, do not have)."""
    listed = (distribution.read_text("top_level.txt") or "").split()
    found = set(listed)
    for path in distribution.files or []:
        first = path.parts[0]
        if first.endswith((".dist-info", ".data")) or first in ("..", "__pycache__"):
            continue
        name = first.removesuffix(".py") if len(path.parts) == 1 else first
        if len(path.parts) > 1 or first.endswith((".py", ".so", ".pyd")):
            found.add(name.split(".")[0])
    return found


def blocked_modules(requirements: list[str]) -> set[str]:
    """Top-level modules of installed distributions outside the requirements' closure."""
    allowed = closure(requirements)
    blocked, kept = set(), set()
    for distribution in importlib.metadata.distributions():
        modules = top_level_modules(distribution)
        (kept if canonicalize_name(distribution.metadata["Name"]) in allowed else blocked).update(modules)
    return blocked - kept


def make_project(folder: Path, files: dict[str, str], requirements: list[str], writes: dict[str, str]) -> dict:
    """folder/: each lesson_code file copied to its place (files: repository path -> project path), the recipe's
    own files written (writes: project path -> text), and the import guard; the environment to run python in."""
    for source, target in files.items():
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO_ROOT / source, folder / target)
    for target, text in writes.items():
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        (folder / target).write_text(text)
    guard = folder.parent / f"{folder.name}-guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD.format(blocked=sorted(blocked_modules(requirements))))
    environment = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
    return {**environment, "PYTHONPATH": str(guard), "PYTHONDONTWRITEBYTECODE": "1"}


def python(*args: str) -> list[str]:
    return [sys.executable, *args]
