"""The one exception type that reaches the user as a single line.

Every stage raises `UserError` for problems the user can fix (a missing file, a bad flag, an
unsupported model).  The CLIs print its message on one line and exit non-zero; anything else is a
bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def run_cli(main, argv=None) -> int:
    """Call `main(argv)`; a UserError becomes one `error:` line on stderr and exit status 2."""
    import sys

    try:
        return main(argv) or 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
