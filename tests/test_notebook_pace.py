"""Every notebook at a learner's pace: with the clock moved past an access token's lifetime before each section, and
each section's cells run twice, every output nbval compares stays what the notebook shows (issue 19).

The clock is moved in the kernel itself, by a cell this test adds before each run of a section: time.time() and
datetime.now()/utcnow() (the clock python-jose, lesson_code and the login limits read) answer 16 minutes later than
before, for every module loaded then or later. Nothing else changes: the servers the notebooks start run in the
kernel's own threads, so they see the same clock (06a to 08b start the service, and 08a and 08b a resource server
too, that way). The monotonic clock is left alone (it measures waits, not dates).
"""

import configparser
import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell
from notebook_tools import ROOT, execute, notebook_paths

PACE = notebook_paths()
PAST_A_LIFETIME_SECONDS = 16 * 60  # an access token lives 15 minutes, plus 30 seconds of leeway
HEADING = re.compile(r"^## ", re.MULTILINE)

CLOCK = """
import datetime as _pace_datetime_module
import sys as _pace_sys
import time as _pace_time_module

_pace_real_datetime = _pace_datetime_module.datetime
_pace_real_time = _pace_time_module.time
_pace_offset = [0.0]


class _PaceClock(type):
    def __instancecheck__(cls, instance):
        return isinstance(instance, _pace_real_datetime)

    def __subclasscheck__(cls, subclass):
        return issubclass(subclass, _pace_real_datetime)


class _PaceDatetime(_pace_real_datetime, metaclass=_PaceClock):
    def __new__(cls, *args, **kwargs):  # every datetime made, by any means, is a real one
        return _pace_real_datetime(*args, **kwargs)

    @classmethod
    def now(cls, tz=None):
        return _pace_real_datetime.now(tz) + _pace_datetime_module.timedelta(seconds=_pace_offset[0])

    @classmethod
    def utcnow(cls):
        return _pace_real_datetime.utcnow() + _pace_datetime_module.timedelta(seconds=_pace_offset[0])

    @classmethod
    def today(cls):
        return cls.now()


# Printed as the real one (an annotation in inspect.signature reads datetime.datetime, not __main__._PaceDatetime)
_PaceDatetime.__name__ = _PaceDatetime.__qualname__ = "datetime"
_PaceDatetime.__module__ = "datetime"


def _pace_time():
    return _pace_real_time() + _pace_offset[0]


def _pace_install():
    swaps = {id(_pace_real_datetime): _PaceDatetime, id(_pace_real_time): _pace_time}
    namespaces = [vars(module) for module in list(_pace_sys.modules.values()) if module is not None]
    for names in namespaces + [get_ipython().user_ns]:
        for name, value in list(names.items()):
            if id(value) in swaps and not name.startswith("_pace_"):
                try:
                    names[name] = swaps[id(value)]
                except Exception:
                    pass


def _pace_advance(seconds):
    _pace_offset[0] += seconds
    _pace_install()  # modules imported since the last move read the moved clock too
"""


def sections(nb) -> list[list[int]]:
    """The notebook's code cells, grouped by section: a section starts at each markdown cell with a '## ' heading."""
    groups = [[]]
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and HEADING.search(cell.source):
            groups.append([])
        elif cell.cell_type == "code":
            groups[-1].append(index)
    return [group for group in groups if group]


def sanitizers() -> list[tuple[re.Pattern, str]]:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tools" / "nbval_sanitize.cfg")
    return [(re.compile(config[name]["regex"]), config[name]["replace"]) for name in config.sections()]


SANITIZERS = sanitizers()


def sanitized(text: str) -> str:
    for pattern, replacement in SANITIZERS:
        text = pattern.sub(replacement, text)
    return text


def compared(cell) -> list[str]:
    """What nbval compares of a cell's outputs: the text of streams (joined by stream, as the runner may split one)
    and of results, sanitized as nbval does."""
    found = []
    for output in cell.outputs:
        if output.output_type == "stream":
            if found and found[-1][0] == output.name:
                found[-1] = (output.name, found[-1][1] + output.text)
            else:
                found.append((output.name, output.text))
        elif output.output_type in ("execute_result", "display_data"):
            data = output.get("data", {})
            found.append(("result", data.get("text/plain", "") + data.get("text/html", "")))
        else:
            found.append((output.output_type, output.get("ename", "")))
    return [f"{kind}: {sanitized(text)}" for kind, text in found]


@pytest.mark.parametrize("notebook", PACE, ids=[path.stem for path in PACE])
def test_every_section_twice_with_the_clock_moved_past_a_lifetime(notebook):
    committed = nbformat.read(notebook, as_version=4)
    paced = nbformat.v4.new_notebook(metadata=committed.metadata)
    paced.cells.append(new_code_cell(CLOCK))
    runs = []  # (index in committed, index in paced, which pass)
    for section in sections(committed):
        for run in (1, 2):
            paced.cells.append(new_code_cell(f"_pace_advance({PAST_A_LIFETIME_SECONDS})"))
            for index in section:
                runs.append((index, len(paced.cells), run))
                paced.cells.append(new_code_cell(committed.cells[index].source))
    execute(paced, notebook.parent)
    differences = []
    for index, paced_index, run in runs:
        wanted, got = compared(committed.cells[index]), compared(paced.cells[paced_index])
        if got != wanted:
            differences.append(
                f"cell {index + 1}, run {run} of its section:\n  committed: {wanted}\n  now:       {got}"
            )
    assert not differences, f"{notebook.name}:\n" + "\n".join(differences)
