"""The `phasewise` command line's entry point: main() runs the typer app on which each command registers itself,
estimate (cli_estimate.py) and simulate (cli_simulate.py) first, then plan and sweep (cli_plan.py), the device and
catalog commands (cli_devices.py), the measuring ones (cli_measure.py), `reproduce` (cli_reproduce.py) and the twin's
`serve` (cli_serve.py)."""

from __future__ import annotations

import sys

import typer

from phasewise.apps.cli_common import app
from phasewise.errors import PhasewiseError, one_line, refuse_empty

# isort: split
# the commands register themselves on the app as they are imported, and --help lists them in that order: estimate and
# simulate first, then plan and sweep, then the others
from phasewise.apps.cli_estimate import estimate_cmd  # noqa: F401,I001
from phasewise.apps.cli_simulate import simulate_cmd  # noqa: F401
from phasewise.apps import cli_plan  # noqa: F401
from phasewise.apps import cli_devices, cli_measure, cli_reproduce, cli_serve  # noqa: F401


def empty_values(argv: list[str]) -> None:
    """A text option given as an empty string ('--out ""', '--report='), which typer would hand on as "not given" or
    as a name to look up, is a one-line error naming it, on every command alike; an option whose own default is the
    empty string (it means "none") may be given so."""
    if not any(not w.strip() or w.startswith("--") and w.endswith("=") for w in argv):
        return  # nothing empty: the command tree (~50 ms to build) is not needed
    command = typer.main.get_command(app)  # typer's click, vendored or not: read by duck typing
    words = [w for w in argv if not w.startswith("-")]
    if not words or words[0] not in getattr(command, "commands", {}):
        return
    options = {opt: param for param in command.commands[words[0]].params
               if getattr(param, "param_type_name", "") == "option" for opt in param.opts}
    for i, word in enumerate(argv):
        flag, eq, value = word.partition("=")
        if not eq:
            value = argv[i + 1] if i + 1 < len(argv) else None
        param = options.get(flag)
        if param is None or param.is_flag or value is None or value.strip():
            continue
        if param.default != "":
            refuse_empty({flag.lstrip("-").replace("-", "_"): value})


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2, never a traceback. A SIGTERM ends a run
    as Ctrl-C does (a pool's workers ended with it: plan/backends.py), with status 143; a closed stdout pipe
    (`| head`) exits quietly with 141 (cli_common.closed_stdout_exit); stdout that cannot be written (a full disk)
    or is closed is a one-line error, status 2."""
    import errno
    import signal

    from phasewise.apps.cli_common import closed_stdout_exit, on_sigterm, output_write_failed

    if sys.stdout is None:  # started with stdout closed (`>&-`): print() would drop the output unsaid
        print("error: standard output is closed: redirect it (>/dev/null to discard the output)", file=sys.stderr)
        sys.exit(2)
    terminated = on_sigterm()
    try:
        empty_values(sys.argv[1:])
        code = app(standalone_mode=False)  # a command's typer.Exit(code) comes back as its return value
        sys.stdout.flush()  # here, not at exit: a failed write is reported as one line
        if terminated and code == 130:  # (typer turns the KeyboardInterrupt into Exit(130))
            code = 128 + signal.SIGTERM
        if isinstance(code, int) and code:
            sys.exit(code)
    except PhasewiseError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        sys.exit(2)
    except SystemExit as exc:  # typer (print) and rich (console) turn a closed pipe into exit status 1
        if isinstance(exc.__context__, OSError) and exc.__context__.errno == errno.EPIPE:
            closed_stdout_exit()
        raise
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            closed_stdout_exit()
        if output_write_failed(exc):
            print(f"error: cannot write the output ({exc.strerror})", file=sys.stderr)
            sys.exit(2)
        raise
    except Exception as exc:  # usage errors of typer's (vendored or external) click: print, no traceback
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            sys.exit(1)
        raise
    except KeyboardInterrupt:
        sys.exit(128 + signal.SIGTERM if terminated else 130)


if __name__ == "__main__":
    main()
