"""Exercise checks: say in words whether an exercise is solved, and never raise, so a notebook always runs.

A check cell shows a call, `check(exercises.bob_token)`: what the check looks for lives in the notebook's module of
exercises (helpers/exercises_02.py, say), not on screen. Each of those functions is marked with @exercise (its
general hint and the names the learner's answer defines) and reads the notebook's names through `a`: `a.bob_token`.
A name that is not there (a skipped cell, a restarted kernel) raises Skipped, never NameError, so the learner's own
NameError (a missing `import time` in their answer) is told apart from a cell not run.
"""

import importlib.util
import sys
import time


def _kernel_started() -> float:
    """When this Python process started (seconds since 1970): no token made in this kernel is older."""
    try:
        import psutil  # ipykernel's own dependency

        return psutil.Process().create_time()
    except Exception:  # no psutil, or a system that does not say: this module's import is late enough
        return time.time()


KERNEL_STARTED = _kernel_started()


class Skipped(Exception):
    """A name the check reads is not defined in the notebook: str() is the name."""


class Answers:
    """The notebook's names, as a check reads them: a.bob_token. A missing name raises Skipped."""

    def __init__(self, names: dict) -> None:
        self._names = names

    def __getattr__(self, name: str):
        try:
            return self._names[name]
        except KeyError:
            raise Skipped(name) from None

    def get(self, name: str, default=None):
        return self._names.get(name, default)


def exercise(hint: str, answers: tuple[str, ...] = ()):
    """Mark a check function of a notebook's exercises module: hint is shown when the answer is not right and the
    function says nothing more precise; answers are the names the learner's answer cell defines."""

    def mark(function):
        function.hint, function.answers = hint, tuple(answers)
        return function

    return mark


def skipped(name: str, answers: tuple[str, ...]) -> str:
    if name in answers:
        return f"{name} is not defined: run your answer's cell (the one under the exercise) first."
    return (
        f"{name}, made by a cell above, is not defined: run the cells above first (after a restart of the kernel, "
        "Run > Run All Above Selected Cell)."
    )


def own_name_error(error: NameError) -> str:
    """What to say when the learner's code raised a NameError of its own."""
    name = getattr(error, "name", None)
    try:
        is_module = bool(name) and name.isidentifier() and importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        is_module = False
    if is_module:
        return f"your code raised NameError ({error}): add `import {name}` to your answer."
    return f"your code raised NameError ({error}): define it in your answer, or run the cell above that does."


def _raised_in(error: BaseException, code) -> bool:
    """Whether error was raised by code itself rather than by something it called."""
    traceback = error.__traceback__
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback.tb_frame.f_code is code


def check(solved, hint: str | None = None) -> None:
    """solved: a function marked with @exercise, called with the notebook's names; or a function of no arguments
    (with hint), as notebooks 06-08 write them.

    It returns True when the exercise is done. It may return a string instead, saying what is off in the answer it
    looked at ("bob_token expires in 15 minutes, not 60"): that string is shown in place of the general hint.
    Anything else, or an exception, shows the general hint. A name the check needs that was never defined says to
    run the cells above first; a NameError raised by the learner's own code says so, and names what is missing.
    """
    marked = hasattr(solved, "answers")
    try:
        verdict = solved(Answers(sys._getframe(1).f_globals)) if marked else solved()
    except Skipped as missing:
        verdict = skipped(str(missing), solved.answers)
    except NameError as error:
        if not marked and _raised_in(error, solved.__code__):
            verdict = f"run the cells above first ({error})."
        else:
            verdict = own_name_error(error)
    except Exception:
        verdict = False
    if marked:
        hint = solved.hint
    if verdict is True:
        print("✅ Solved! Well done.")
    else:
        print(f"❌ Not yet. Hint: {verdict if isinstance(verdict, str) and verdict else hint}")
