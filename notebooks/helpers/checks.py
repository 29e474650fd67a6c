"""Exercise checks: say in words whether an exercise is solved, and never raise, so a notebook always runs."""


def check(solved, hint: str) -> None:
    """solved: a function of no arguments.

    It returns True when the exercise is done. It may return a string instead, saying what is off in the answer it
    looked at ("bob_token expires in 15 minutes, not 60"): that string is shown in place of the general hint.
    Anything else, or an exception, shows the general hint; a NameError says to run the cells above first (a cell
    the answer needs was skipped, or the kernel restarted).
    """
    try:
        verdict = solved()
    except NameError as error:
        verdict = f"run the cells above first ({error})."
    except Exception:
        verdict = False
    if verdict is True:
        print("✅ Solved! Well done.")
    else:
        print(f"❌ Not yet. Hint: {verdict if isinstance(verdict, str) and verdict else hint}")
