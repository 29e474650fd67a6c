"""Exercise checks: say in words whether an exercise is solved, and never raise, so a notebook always runs."""


def check(solved, hint: str) -> None:
    """solved: a function of no arguments that is true when the exercise is done."""
    try:
        ok = bool(solved())
    except Exception:
        ok = False
    print("✅ Solved! Well done." if ok else f"❌ Not yet. Hint: {hint}")
