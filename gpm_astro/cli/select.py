"""``gpm-astro select``: keep the star-forming label rows (paper §2.1) and print per-cut counts."""

#: (option, keyword of select_starforming, type, help)
_THRESHOLDS = [
    ("--spectrotype", "spectrotype", str, "accepted spectrum class (default GALAXY)"),
    ("--reliable", "reliable", int, "accepted value of `reliable` (default 1)"),
    ("--z-warning", "z_warning", int, "accepted value of `z_warning` (default 0)"),
    ("--bptclass", "bptclass", int, "accepted BPT class (default 1, star-forming)"),
    ("--z-min", "z_min", float, "smallest redshift kept (default 0.002)"),
    ("--snr-min", "snr_min", float, "smallest r-band S/N kept (default 5)"),
]
_COLUMNS = ["spectrotype", "reliable", "z_warning", "bptclass", "z", "snr", "metallicity"]
_SKIPPABLE = {"spectrotype": "spectrotype", "reliable": "reliable", "z_warning": "z_warning",
              "bptclass": "bptclass", "z": "z_min", "snr": "snr_min",
              "metallicity": "require_metallicity"}


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "select", help="select star-forming galaxies with a metallicity (paper cuts)",
        description="Read the SDSS MPA-JHU label table IN, keep the rows that pass the paper's "
                    "cuts (spectrotype, reliable, z_warning, bptclass, z, r-band S/N, oh_p50), "
                    "write them to OUT and print how many rows each cut removed.")
    parser.add_argument("input", metavar="IN", help="label table file (FITS, ECSV, HDF5, ...)")
    parser.add_argument("output", metavar="OUT", help="output table file")
    for option, keyword, kind, text in _THRESHOLDS:
        if kind is float:
            parser.add_argument(option, dest=keyword, type=kind, default=None, help=text)
        else:
            parser.add_argument(option, dest=keyword, type=kind, action="append",
                                help=text + "; repeat to accept several")
    for cut in _COLUMNS:
        parser.add_argument(f"--{cut.replace('_', '-')}-column", dest=f"{cut}_column",
                            default=None, metavar="NAME",
                            help=f"column read by the {cut} cut")
    parser.add_argument("--skip", action="append", default=[], choices=sorted(_SKIPPABLE),
                        help="turn a cut off; repeatable")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run)


def cut_keywords(args):
    """Translate parsed options into keyword arguments of select_starforming."""
    keywords = {}
    for _, keyword, kind, _ in _THRESHOLDS:
        value = getattr(args, keyword)
        if value is None:
            continue
        keywords[keyword] = value if kind is float else tuple(value)
    for cut in _COLUMNS:
        name = getattr(args, f"{cut}_column")
        if name is not None:
            keyword = "snr_column" if cut == "snr" else f"{cut}_column"
            keywords[keyword] = name
    for cut in args.skip:
        keywords[_SKIPPABLE[cut]] = False if cut == "metallicity" else None
    return keywords


def run(args):
    import warnings

    from ..catalog import select_starforming
    from ..exceptions import EmptyResultWarning
    from ..io import read_table, write_table
    from . import refuse_existing

    refuse_existing(args.output, args.overwrite)
    table = read_table(args.input)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyResultWarning)  # the counts below say it
        kept = select_starforming(table, **cut_keywords(args))
    report = kept.meta["gpm_astro"]["select_starforming"]
    width = max(len(c["cut"]) for c in report)
    print(f"{'input':<{width}}  rows {len(table):>10,d}")
    for cut in report:
        print(f"{cut['cut']:<{width}}  removed {cut['removed']:>10,d}  remaining "
              f"{cut['remaining']:>10,d}  ({cut['column']} {cut['rule']})")
    write_table(kept, args.output, overwrite=args.overwrite)
    print(f"wrote {len(kept):,d} rows to {args.output}")
    return 0
