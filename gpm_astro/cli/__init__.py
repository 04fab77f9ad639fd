"""The ``gpm-astro`` command line.

Each module in this package that defines ``add_parser(subparsers)`` contributes one
subcommand; ``add_parser`` must set ``func`` (called with the parsed args, returning an exit
code) through ``parser.set_defaults(func=...)``. Plugins add their own subcommands the same way
through the hook ``gpm_astro_register_commands`` (e.g. ``gpm-astro mock`` comes from the mock
plugin).
"""

import argparse
import importlib
import os
import pkgutil
import sys

from ..exceptions import GPMAstroError

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
#: Set to show the traceback of an unexpected error instead of one line.
DEBUG_ENV_VAR = "GPM_ASTRO_DEBUG"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="gpm-astro",
        description=("Measure the gas-phase metallicity Z = 12 + log(O/H) of galaxies from "
                     "their DESI Legacy Survey g, r, z images (GPM-ResNet, A&A 694, A271)."),
        epilog=(f"Exit status: 0 on success, 1 when a stage fails (the message says why), 2 "
                f"when the command line itself is wrong, 3 on an internal error "
                f"({DEBUG_ENV_VAR}=1 shows its traceback), 130 when interrupted."),
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"gpm-astro {__version__}")
    subparsers = parser.add_subparsers(title="stages", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "add_parser"):
            module.add_parser(subparsers)
    from ..plugins import add_plugin_commands

    add_plugin_commands(subparsers, taken=subparsers.choices)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args) or EXIT_OK
    except GPMAstroError as exc:
        print(f"gpm-astro: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("gpm-astro: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: one line, the traceback on request
        if os.environ.get(DEBUG_ENV_VAR):
            raise
        print(f"gpm-astro: internal error: {type(exc).__name__}: {_one_line(exc)} (a bug in "
              f"gpm_astro or a plugin; set {DEBUG_ENV_VAR}=1 to see the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


def _one_line(exc):
    """The message of ``exc`` on one line (library messages quoted in ours may span several)."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def refuse_existing(path, overwrite, what="output"):
    """Raise `TableIOError` before any work when ``path`` exists and --overwrite is not given."""
    from pathlib import Path

    from ..exceptions import TableIOError

    if Path(path).exists() and not overwrite:
        msg = f"{what} {str(path)!r} exists; pass --overwrite to replace it"
        raise TableIOError(msg)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
