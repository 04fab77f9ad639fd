"""``gpm-astro fetch``: query a registered data source and write what it returns.

    gpm-astro fetch                       list the registered data sources
    gpm-astro fetch source NAME OUT --param key=value ...
                                          any registered source: NAME(**params).query()
    gpm-astro fetch cutouts TABLE OUT     Legacy Survey cutouts for the ra/dec of TABLE
    gpm-astro fetch labels OUT            SDSS DR8 MPA-JHU labels from SkyServer
    gpm-astro fetch catalog OUT --type EXP --brickid-min 1 --brickid-max 5000
                                          LS DR9 sources + photo-z from Data Lab TAP
"""

import sys

from ..survey_constants import CUTOUT_SIZE, PIXEL_SCALE_ARCSEC


def _add_remote_options(parser):
    group = parser.add_argument_group("network")
    group.add_argument("--server", default=None, metavar="URL",
                       help="base URL of the service, e.g. a mirror (default: the source's "
                            "conf.server, which an astropy configuration file can also set)")
    group.add_argument("--no-cache", dest="cache", action="store_false",
                       help="do not read or write the disk cache of responses")
    group.add_argument("--cache-dir", default=None, metavar="DIR",
                       help="cache folder (default ~/.gpm_astro/cache/remote)")
    group.add_argument("--timeout", type=float, default=None, metavar="S",
                       help="seconds to wait for one answer")
    group.add_argument("--max-retries", type=int, default=None, metavar="N",
                       help="retries of a failed request (429, 5xx, time-out)")
    group.add_argument("--max-workers", type=int, default=None, metavar="N",
                       help="requests at the same time")
    group.add_argument("--no-progress", dest="progress", action="store_false",
                       help="hide the progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def _at_server(source, url):
    """Point ``source`` at ``url`` (its ``conf.server``) while the block runs; None: as is."""
    import contextlib
    from urllib.parse import urlparse

    from ..exceptions import ParameterError

    if url is None:
        return contextlib.nullcontext()
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        msg = f"--server must be an http(s) URL such as https://mirror.example.org, got {url!r}"
        raise ParameterError(msg)
    conf = getattr(source, "conf", None)
    if conf is None or not hasattr(conf, "server"):
        msg = f"data source {getattr(source, 'name', source)!r} has no server to point elsewhere"
        raise ParameterError(msg)
    return conf.set_temp("server", url)


def _remote_kwargs(args):
    return {"cache": args.cache, "cache_dir": args.cache_dir, "timeout": args.timeout,
            "max_retries": args.max_retries, "max_workers": args.max_workers,
            "progress": args.progress}


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "fetch", help="download cutouts, labels or an image catalogue",
        description="Download data from the real services: Legacy Survey cutouts, the SDSS "
                    "MPA-JHU label catalogue (SkyServer) or Legacy Survey DR9 sources with "
                    "photometric redshifts (Data Lab TAP).")
    kinds = parser.add_subparsers(title="what", metavar="WHAT")

    generic = kinds.add_parser(
        "source", help="query any registered data source (`gpm-astro fetch` lists them)",
        description="Build the registered data source NAME with the --param values and write "
                    "the table its query() returns to OUT.")
    generic.add_argument("name", metavar="NAME", help="registered data source")
    generic.add_argument("output", metavar="OUT", help="output table file")
    generic.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                         help="source parameter; VALUE is read as JSON when it parses; "
                              "repeatable")
    generic.add_argument("--query", action="append", default=[], metavar="KEY=VALUE",
                         help="keyword of query(); repeatable")
    generic.add_argument("--server", default=None, metavar="URL",
                         help="base URL of the service, for a source served over HTTP (e.g. "
                              "a mirror; default: the source's conf.server)")
    generic.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    generic.set_defaults(func=run_source)

    cutouts = kinds.add_parser(
        "cutouts", help="g, r, z cutouts for the rows of a table",
        description="Fetch a 152 x 152 g, r, z cutout for every row of TABLE. OUT ending in "
                    ".h5 / .hdf5 is written in the ssl-legacysurvey archive layout as cutouts "
                    "arrive, and the same command run again (after an interruption, or when "
                    "the service did not answer for some rows) fetches only what is missing; "
                    "--overwrite starts it over. Any other OUT is a table file with a `cutout` "
                    "column. Exit status 1 when some cutouts could not be fetched.")
    cutouts.add_argument("table", metavar="TABLE", help="table with ra, dec (deg)")
    cutouts.add_argument("output", metavar="OUT", help="output file")
    cutouts.add_argument("--ra-column", default="ra", metavar="NAME",
                         help="column of TABLE with the right ascension, deg (default: ra)")
    cutouts.add_argument("--dec-column", default="dec", metavar="NAME",
                         help="column of TABLE with the declination, deg (default: dec)")
    cutouts.add_argument("--layer", default="ls-dr9",
                         help="Legacy Survey viewer layer (default: %(default)s)")
    cutouts.add_argument("--pixel-scale", type=float, default=PIXEL_SCALE_ARCSEC,
                         metavar="ARCSEC",
                         help="arcsec per pixel (default: %(default)s, the survey's native "
                              "scale)")
    cutouts.add_argument("--size", type=int, default=CUTOUT_SIZE, metavar="PIX",
                         help="cutout side in pixels (default: %(default)s)")
    _add_remote_options(cutouts)
    cutouts.set_defaults(func=run_cutouts)

    labels = kinds.add_parser(
        "labels", help="SDSS DR8 MPA-JHU label catalogue",
        description="Download galSpecInfo + galSpecExtra + SpecObjAll.snMedian_r from SkyServer "
                    "in specObjID chunks, as `gpm-astro select` expects.")
    labels.add_argument("output", metavar="OUT", help="output table file")
    labels.add_argument("--plates-per-chunk", type=int, default=200, metavar="N",
                        help="SDSS plates per SkyServer query (default: %(default)s; fewer "
                             "if the server times out)")
    labels.add_argument("--specobjid-min", type=int, default=None, metavar="ID",
                        help="first specObjID to read (with --specobjid-max; default: the "
                             "whole catalogue)")
    labels.add_argument("--specobjid-max", type=int, default=None,
                        help="exclusive upper bound")
    _add_remote_options(labels)
    labels.set_defaults(func=run_labels)

    catalog = kinds.add_parser(
        "catalog", help="LS DR9 sources with photo-z from Data Lab TAP",
        description="Select ls_dr9.tractor sources joined to ls_dr9.photo_z, one query (or "
                    "asynchronous job) per range of brick ids.")
    catalog.add_argument("output", metavar="OUT", help="output table file")
    catalog.add_argument("--type", dest="types", action="append", default=None,
                         help="Tractor type (PSF, REX, EXP, DEV, SER, DUP); repeatable; "
                              "default EXP")
    catalog.add_argument("--brickid-min", type=int, default=None,
                         help="first brick id (default 1, or none with --cone)")
    catalog.add_argument("--brickid-max", type=int, default=None,
                         help="last brick id (default 662174, or none with --cone)")
    catalog.add_argument("--bricks-per-chunk", type=int, default=5000, metavar="N",
                         help="brick ids per query or job (default: %(default)s)")
    catalog.add_argument("--mag-r-max", type=float, default=None, metavar="MAG",
                         help="keep sources brighter than this r magnitude (default: all)")
    catalog.add_argument("--cone", type=float, nargs=3, default=None,
                         metavar=("RA", "DEC", "RADIUS"), help="degrees")
    catalog.add_argument("--mode", choices=("auto", "sync", "async"), default="auto",
                         help="TAP mode: sync (one request), async (a UWS job, for long "
                              "queries) or auto (async when the query is large; default)")
    _add_remote_options(catalog)
    catalog.set_defaults(func=run_catalog)

    def show_help(args):
        parser.print_help()
        print("\nregistered data sources (gpm-astro fetch source NAME OUT --param k=v):")
        for component in list_sources():
            print(f"  {component.name:<24} {component.plugin:<18} {component.class_path}")
        return 2

    parser.set_defaults(func=show_help)


def list_sources():
    """The registered data sources, from the plugin registry."""
    from ..plugins import list_components

    return list_components("data_source")


def run_source(args):
    from ..io import write_table
    from ..plugins import get_source
    from . import refuse_existing
    from .predict import parse_params

    refuse_existing(args.output, args.overwrite)
    source = get_source(args.name)(**parse_params(args.param))
    with _at_server(source, args.server):
        result = source.query(**parse_params(args.query, "--query"))
    write_table(result, args.output, overwrite=args.overwrite)
    print(f"{len(result)} rows of {args.name} -> {args.output}")
    return 0


def _print_flags(table, column):
    import numpy as np

    values, counts = np.unique(table[column], return_counts=True)
    for value, count in zip(values, counts):
        print(f"  {value}: {count}")


def run_cutouts(args):
    from pathlib import Path

    import numpy as np

    from ..io import read_table, write_table
    from . import refuse_existing
    from ..plugins import get_source

    to_hdf5 = Path(args.output).suffix.lower() in (".h5", ".hdf5")
    if not to_hdf5:
        refuse_existing(args.output, args.overwrite)
    targets = read_table(args.table)
    source = get_source("legacysurvey_cutouts")(
        layer=args.layer, pixel_scale=args.pixel_scale, size=args.size, **_remote_kwargs(args))
    if to_hdf5 and args.overwrite and Path(args.output).is_file():
        Path(args.output).unlink()  # start over; without --overwrite the same fetch resumes
    with _at_server(source, args.server):
        server = source.server
        result = source.query(targets, output=args.output if to_hdf5 else None,
                              ra_column=args.ra_column, dec_column=args.dec_column)
    if not to_hdf5:
        write_table(result, args.output, overwrite=args.overwrite)
    print(f"{len(result)} rows -> {args.output}; cutout_flag counts:")
    _print_flags(result, "cutout_flag")
    unreached = np.isin(np.asarray(result["cutout_flag"]), sorted(source.undelivered_flags))
    if unreached.any():
        again = ("run the same command again to fetch only those" if to_hdf5 else
                 "run it again with --overwrite, or write to a .h5 file to resume")
        print(f"gpm-astro fetch cutouts: error: {int(unreached.sum())} of {len(result)} "
              f"cutouts could not be fetched from the Legacy Survey viewer ({server}): no "
              f"answer, an HTTP error, an error page or a cut-off answer, after the retries; "
              f"{again}", file=sys.stderr)
        return 1
    return 0


def run_labels(args):
    from ..io import write_table
    from . import refuse_existing
    from ..plugins import get_source

    refuse_existing(args.output, args.overwrite)
    bounds = (args.specobjid_min, args.specobjid_max)
    if (bounds[0] is None) != (bounds[1] is None):
        print("gpm-astro fetch labels: give both --specobjid-min and --specobjid-max",
              file=sys.stderr)
        return 2
    source = get_source("sdss_mpajhu")(
        plates_per_chunk=args.plates_per_chunk,
        specobjid_range=None if bounds[0] is None else bounds, **_remote_kwargs(args))
    with _at_server(source, args.server):
        result = source.query()
    write_table(result, args.output, overwrite=args.overwrite)
    print(f"{len(result)} label rows -> {args.output}")
    return 0


def run_catalog(args):
    from ..io import write_table
    from . import refuse_existing
    from ..plugins import get_source

    refuse_existing(args.output, args.overwrite)
    bricks = None
    if args.brickid_min is not None or args.brickid_max is not None:
        bricks = (1 if args.brickid_min is None else args.brickid_min,
                  662174 if args.brickid_max is None else args.brickid_max)
    source = get_source("datalab_tap")(
        types=args.types or ["EXP"], brickid_range=bricks,
        bricks_per_chunk=args.bricks_per_chunk, mag_r_max=args.mag_r_max,
        cone=None if args.cone is None else tuple(args.cone), mode=args.mode,
        **_remote_kwargs(args))
    with _at_server(source, args.server):
        result = source.query()
    write_table(result, args.output, overwrite=args.overwrite)
    print(f"{len(result)} sources -> {args.output}")
    return 0
