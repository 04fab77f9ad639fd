"""``gpm-astro predict``: add Z_pred, Z_pred_err and Z_pred_flag to a table file."""

import json


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "predict", help="predict metallicities for a table of galaxies",
        description="Read TABLE, run an estimator over it in batches and write the table with "
                    "Z_pred, Z_pred_err and Z_pred_flag added to OUT (any astropy table "
                    "format, chosen by the file name).")
    parser.add_argument("table", metavar="TABLE", help="input table file (e.g. cutouts.h5)")
    parser.add_argument("out", metavar="OUT", help="output table file")
    parser.add_argument("--estimator", default="gpm_resnet",
                        help="registered estimator name (see `gpm-astro plugins`); "
                             "default gpm_resnet")
    parser.add_argument("--weights", default=None,
                        help="weights name from the registry, or a weights file")
    parser.add_argument("--fit-table", default=None,
                        help="fit the estimator on this table first (e.g. colour_polynomial)")
    parser.add_argument("--fit-target", default=None, help="target column for --fit-table")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="estimator parameter; VALUE is read as JSON when it parses "
                             "(e.g. order=3), else as a string; repeatable")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per batch")
    parser.add_argument("--drop-cutouts", action="store_true",
                        help="leave the cutout column out of OUT")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def parse_params(pairs, option="--param"):
    """Turn ``["order=3", "mass_column=lgm_fib_p50"]`` into a dict (JSON values when they parse);
    ``option`` is the command-line option that gave them, named in the error."""
    from ..exceptions import ParameterError

    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            msg = f"{option} takes KEY=VALUE, got {pair!r}"
            raise ParameterError(msg)
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _refuse_untrained(name):
    """Stop with command-line advice when ``name`` needs training and got no way to get it."""
    from ..exceptions import ParameterError
    from ..plugins import get_estimator
    from ..weights import list_weights

    cls = get_estimator(name)
    if not getattr(cls, "requires_fit", True):
        return
    options = []
    if callable(getattr(cls, "load", None)):
        for row in list_weights():
            if row["estimator"] == name:  # the description's first sentence
                options.append(f"--weights {row['name']} ({row['description'].split('. ')[0]})")
        options.append("--weights DIR (a model saved by `gpm-astro train TABLE --out DIR`, "
                       "or a run's estimate/models/<label>)")
    options.append("--fit-table TABLE [--fit-target COLUMN] (train it on TABLE first)")
    msg = (f"the estimator {name!r} must be trained before it predicts; give "
           + "; or ".join(options))
    raise ParameterError(msg)


def run(args):
    from ..estimation import predict_metallicity
    from ..io import read_table, write_table
    from . import refuse_existing

    refuse_existing(args.out, args.overwrite)
    if args.weights is None and args.fit_table is None:
        _refuse_untrained(args.estimator)
    table = read_table(args.table, attach_cutouts=True)
    fit_table = (read_table(args.fit_table, attach_cutouts=True) if args.fit_table
                 else None)
    keep = [c for c in table.colnames if c != "cutout"] if args.drop_cutouts else None
    result = predict_metallicity(table, estimator=args.estimator, weights=args.weights,
                                 batch_size=args.batch_size, fit_table=fit_table,
                                 fit_target=args.fit_target, keep_columns=keep,
                                 progress=not args.no_progress, **parse_params(args.param))
    write_table(result, args.out, overwrite=args.overwrite)
    flag_name = [c for c in result.colnames if c.endswith("_pred_flag")][-1]
    n_ok = int((result[flag_name] == "ok").sum())
    print(f"wrote {args.out}: {len(result)} rows, {n_ok} predicted")
    return 0
