"""The ``gpm-astro`` command line.

Each module in this package that defines ``add_parser(subparsers)`` contributes one
subcommand; ``add_parser`` must set ``func`` (called with the parsed args, returning an exit
code) through ``parser.set_defaults(func=...)``.
"""

import argparse
import importlib
import pkgutil
import sys

from ..exceptions import GPMAstroError

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def build_parser():
    parser = argparse.ArgumentParser(
        prog="gpm-astro",
        description=("Measure the gas-phase metallicity Z = 12 + log(O/H) of galaxies from "
                     "their DESI Legacy Survey g, r, z images (GPM-ResNet, A&A 694, A271)."),
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"gpm-astro {__version__}")
    subparsers = parser.add_subparsers(title="stages", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "add_parser"):
            module.add_parser(subparsers)
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
        print(f"gpm-astro: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("gpm-astro: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
