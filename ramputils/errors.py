"""The one exception type that reaches the user as a single line.

Every stage raises `UserError` for problems the user can fix (a missing file, a bad flag, an
unsupported model).  The CLIs print its message on one line and exit non-zero.  An `OSError` that
escapes a stage (a full disk, a quota, a file removed under a running job) is the machine's problem,
not a bug, and is reported the same way; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def run_cli(main, argv=None) -> int:
    """Call `main(argv)`; a UserError or OSError becomes one `error:` line on stderr and exit status 2."""
    import sys

    try:
        return main(argv) or 0
    except (UserError, OSError) as exc:  # an OSError's str() names the errno text and the file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
