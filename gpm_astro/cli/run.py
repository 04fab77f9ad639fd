"""``gpm-astro run CONFIG``: the whole pipeline from a configuration file."""

import sys

from . import EXIT_ERROR, EXIT_OK

DESCRIPTION = """\
Run the paper's stages in order, as a configuration file (TOML, YAML or JSON) describes them:
read or build the label and image catalogues, keep the star-forming labels (BPT class 1,
reliable fits, S/N_r >= 5, ...), match them to the image catalogue on the sky, clean the
g, r, z cutouts (mask neighbours, reject blends and large galaxies), draw a sample uniform in
12 + log(O/H) and split it 5:3:2, train and test every estimator (GPM-ResNet, colour
polynomials, mass-metallicity relation), write the metrics and figures, predict Z for the
application galaxies (EXP by default) and write the catalogue and an HTML report.

Each stage writes its outputs into the output folder as it finishes. A rerun skips the stages
whose outputs exist and whose settings have not changed, so a run that failed half-way (or
was interrupted) picks up where it stopped; --force starts over.

Print a complete configuration with every default to start from:
    gpm-astro run --example-config > run.toml
"""


def add_parser(subparsers):
    import argparse

    from ..pipeline import STAGE_NAMES

    parser = subparsers.add_parser(
        "run", help="run the whole pipeline from a configuration file",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", metavar="CONFIG",
                        help="configuration file (.toml, .yaml, .yml or .json)")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder (overrides output_dir in the configuration)")
    parser.add_argument("--source", metavar="NAME",
                        help="the data source: a registered source that can feed a run "
                             "(`gpm-astro plugins`; e.g. mock, files); overrides [source] "
                             "name, and its params unless --source-param is given")
    parser.add_argument("--source-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter of --source (VALUE read as JSON when it parses); "
                             "repeatable, e.g. --source-param n_galaxies=500")
    parser.add_argument("--force", action="store_true",
                        help="rerun every stage, even those whose outputs exist")
    parser.add_argument("--until", choices=STAGE_NAMES, metavar="STAGE",
                        help="stop after this stage: " + ", ".join(STAGE_NAMES))
    parser.add_argument("--quiet", action="store_true",
                        help="no stage messages or progress bars")
    parser.add_argument("--example-config", action="store_true",
                        help="print a complete configuration (TOML) with every default, "
                             "then exit")
    parser.set_defaults(func=run, _parser=parser)


def run(args):
    from ..pipeline import DEFAULT_CONFIG, config_to_toml, run_pipeline

    if args.example_config:
        sys.stdout.write(config_to_toml(DEFAULT_CONFIG))
        return EXIT_OK
    if args.config is None and args.source is None:
        args._parser.error("give a configuration file or --source (or --example-config to "
                           "print one)")
    config = args.config
    if args.source is not None or args.source_param:
        config = _with_source(args)
    try:
        result = run_pipeline(config, output_dir=args.out, force=args.force,
                              progress=not args.quiet, until=args.until)
    except OSError as exc:  # disk full, permission denied, unreadable input file
        print(f"gpm-astro run: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if "metrics" in result and not args.quiet:
        result["metrics"].pprint_all()
    if "report" in result:
        print(f"report: {result['report']}")
    return EXIT_OK


def _with_source(args):
    """The configuration with ``--source`` / ``--source-param`` applied."""
    from ..pipeline import load_config
    from .predict import parse_params

    config = load_config(args.config, output_dir=args.out)
    params = parse_params(args.source_param, "--source-param")
    if args.source is not None and args.source != config["source"]["name"]:
        config["source"] = {"name": args.source, "params": params, "labels": None,
                            "images": None, "truth": None}
    else:
        config["source"]["params"].update(params)
    return config
