"""Shared command-line plumbing: user errors become one line on stderr and exit code 2.

absl's default reaction to a bad flag is a multi-line `FATAL Flags parsing error` plus usage
and exit code 1. Entry points pass `parse_flags` to `absl.app.run(main, flags_parser=...)` and
wrap the user-facing stages of `main` in `user_errors()`, so every mistake a user can make
(bad enum, out-of-range value, failed cross-flag rule, unknown flag, missing flagfile, missing
data file, incompatible or damaged run directory, full disk) prints exactly one line such as
`error: --batch_size=-3: must be integer >= 2` and exits with code 2. This module imports absl
only, so flag errors are reported before TensorFlow is imported.
"""

from __future__ import annotations

import contextlib
import re
import sys
from typing import Iterator, NoReturn, Sequence

from absl import flags

from mmali_tf import flags as flags_lib
from mmali_tf.atomic import disk_full
from mmali_tf.flags import FlagUsageError

USAGE_EXIT_CODE = 2

_SINGLE = re.compile(r"^flag (--\S+?=.*?): (.*)$", re.S)
_MULTI = re.compile(r"^flags (.+?): (--.*)$", re.S)
_IS_NOT = re.compile(r"^\S+ is not ")


def fail(message: str, code: int = USAGE_EXIT_CODE) -> NoReturn:
    """Print `error: <message>` (first line only) to stderr and exit with `code`."""
    first = str(message).strip().splitlines()[0] if str(message).strip() else "unknown error"
    print(f"error: {first}", file=sys.stderr, flush=True)
    sys.exit(code)


def flag_error_message(error: Exception) -> str:
    """One-line, user-facing form of an absl flags error (without the `error: ` prefix)."""
    text = str(error).strip()
    text = text.splitlines()[0] if text else type(error).__name__
    if isinstance(error, flags.UnrecognizedFlagError):
        name = getattr(error, "flagname", None)
        if not name:
            return text
        hint = text[text.index("Did you mean"):].rstrip(" ?") if "Did you mean" in text else ""
        return f"unknown flag --{name}" + (f"; {hint}?" if hint else "")
    if isinstance(error, flags.CantOpenFlagFileError):
        return text.replace("ERROR:: ", "").replace("Unable to open flagfile", "cannot open "
                                                    "--flagfile")
    single = _SINGLE.match(text)
    if single:
        setting, reason = single.groups()
        return f"{setting}: {_IS_NOT.sub('must be ', reason)}"
    multi = _MULTI.match(text)
    if multi:
        settings, reason = multi.groups()
        listed = " ".join(f"--{s.strip()}" for s in settings.split(", "))
        return f"{listed}: {reason}"
    return text


def parse_flags(argv: Sequence[str]) -> list[str]:
    """`flags_parser` for `absl.app.run`: parse argv into FLAGS or exit 2 with one line.

    When `--plugins` is defined, the plugin modules named in argv (or its flagfiles) are read
    first, so their models, datasets and flags are known to the parse.
    """
    try:
        if "plugins" in flags.FLAGS:
            flags_lib.load_plugins(flags_lib.plugins_in_argv(argv))
        return flags.FLAGS(list(argv))
    except FlagUsageError as error:
        fail(str(error))
    except flags.Error as error:
        fail(flag_error_message(error))


def usage_from(doc: str | None) -> None:
    """Make `doc` the `--help` text when the program's main module has none (console-script
    wrappers), as it is under `python -m` and tools/*.py."""
    main = sys.modules.get("__main__")
    if main is not None and not getattr(main, "__doc__", None):
        main.__doc__ = doc


def reject_positional(argv: Sequence[str]) -> None:
    """Exit 2 if argv (as passed to `main`) holds positional arguments besides the program."""
    extra = list(argv[1:])
    if extra:
        fail(f"unexpected positional argument {extra[0]!r}; every option is a --flag")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn FileNotFoundError / ValueError / FlagUsageError raised inside into `fail(...)`,
    and a full disk as `disk_full_errors` does.

    Wrap only the stages whose errors are the user's (flag interpretation, data loading,
    run-directory checks), never the training loop, so programming errors keep tracebacks.
    """
    with disk_full_errors():
        try:
            yield
        except (FileNotFoundError, FlagUsageError, ValueError) as error:
            fail(str(error))


@contextlib.contextmanager
def disk_full_errors(path: str | None = None) -> Iterator[None]:
    """Turn a write refused for lack of space inside (ours or TensorFlow's: checkpoints,
    TensorBoard events) into `fail(...)` naming the file (`path` when given); other errors
    pass unchanged. Wrap whole stages that write, the training loop included."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - only disk-full errors are handled
        full = disk_full(error, path)
        if full is None:
            raise
        fail(str(full))
