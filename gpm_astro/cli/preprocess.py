"""``gpm-astro preprocess``: clean the cutouts of a table (mask neighbours, size, blends)."""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "preprocess", help="clean cutouts: mask neighbours, limit size, reject blends",
        description="Read a table IN with a `cutout` column (n, 3, 152, 152; g, r, z in "
                    "nanomaggies), run the preprocessing steps of a configuration on every "
                    "cutout, write the cleaned cutouts with preprocess_ok, preprocess_flag, "
                    "the target ellipse, enclosing radius and source count to OUT, and print "
                    "how many rows got each flag.")
    parser.add_argument("input", metavar="IN", help="table file with a cutout column")
    parser.add_argument("output", metavar="OUT", help="output table file")
    parser.add_argument("--config", default="default",
                        help="a registered step configuration (`gpm-astro plugins` lists them): "
                             "the noise-aware default, the paper's recipe, strict_blends (the "
                             "default plus a rotational-asymmetry blend test), or a plugin's "
                             "(default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="processes cleaning cutouts (this one and N-1 workers); -1 for "
                             "every core (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help="cutouts per batch (default: preprocess_cutouts' default, 64)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args):
    import numpy as np

    from ..io import read_table, write_table
    from . import refuse_existing
    from ..preprocessing import preprocess_cutouts

    refuse_existing(args.output, args.overwrite)
    table = read_table(args.input, attach_cutouts=True)
    batch = {} if args.batch_size is None else {"batch_size": args.batch_size}
    cleaned = preprocess_cutouts(table, config=args.config, n_jobs=args.jobs,
                                 progress=not args.quiet, **batch)
    flags, counts = np.unique(np.asarray(cleaned["preprocess_flag"], dtype=str),
                              return_counts=True)
    for flag, count in zip(flags, counts):
        print(f"{flag:<18} {count:>10,d}")
    write_table(cleaned, args.output, overwrite=args.overwrite)
    print(f"wrote {len(cleaned):,d} rows to {args.output}")
    return 0
