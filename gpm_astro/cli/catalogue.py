"""``gpm-astro catalogue``: the metallicity catalogue of a whole survey, on Dask, resumable."""

import json

DESCRIPTION = """\
Measure Z = 12 + log(O/H) for every galaxy of a Legacy Survey image archive (the paper's
8,462,944 EXP galaxies, or any part of them) and write the catalogue of the paper's Table 2
(ra, dec, release, brickid, objid, z_phot_median, mag_r, Z_pred) plus Z_pred_err, Z_pred_flag,
preprocess_flag and archive_row, one Parquet file per partition of the input rows.

The galaxies are split into partitions of --partition-size rows. Each partition is one task
on a Dask cluster: it reads its cutouts from the archive a few hundred at a time, cleans them
(mask neighbours, size limit, blend rejection), predicts Z with the model and writes its file.
The model is loaded once per worker. Galaxies that fail preprocessing or whose data cannot be
read keep their row, with Z_pred empty and the reason in Z_pred_flag.

DIR/manifest.json records every finished partition (rows, checksum, flags), the scheduler,
and the package and model versions. If the run is interrupted (Ctrl-C, a killed job, a lost
node), run the same command again: only the missing partitions are computed, and the result is
identical to an uninterrupted run. By default the work runs on this machine, one worker per
core; --scheduler sends it to a running Dask cluster (e.g. SLURM workers started with
dask-jobqueue; see the "At survey scale" page of the documentation).
"""


def add_parser(subparsers):
    import argparse

    parser = subparsers.add_parser(
        "catalogue", help="predict Z for a whole image archive, on Dask, resumable",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, metavar="PATH",
                        help="image archive: a directory of images_npix152_*.h5 files or one "
                             "such file (what `gpm-astro mock --out` or `gpm-astro fetch "
                             "cutouts` write, or the ssl-legacysurvey archive)")
    parser.add_argument("--weights", default=None, metavar="MODEL",
                        help="the network: a directory written by `gpm-astro train` (or "
                             "GPMResNetEstimator.save), a .safetensors file, or a registered "
                             "weights name")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (partitions/, manifest.json); rerunning into the "
                             "same folder resumes")
    parser.add_argument("--source-type", default="EXP", metavar="TYPE",
                        help="Tractor morphological type to catalogue (PSF, REX, EXP, DEV, "
                             "SER), or 'all' (default: %(default)s, as in the paper)")
    parser.add_argument("--estimator", default="gpm_resnet", metavar="NAME",
                        help="registered estimator (`gpm-astro plugins`; default "
                             "%(default)s)")
    parser.add_argument("--fit-table", default=None, metavar="TABLE",
                        help="fit the estimator on this labelled table on each worker first "
                             "(for estimators that fit in seconds, e.g. colour_polynomial)")
    parser.add_argument("--fit-target", default=None, metavar="COLUMN",
                        help="target column of --fit-table (default: the estimator's)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="estimator parameter (VALUE read as JSON when it parses, e.g. "
                             "order=3); repeatable")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="local Dask workers (default: one per core)")
    parser.add_argument("--threads", action="store_true",
                        help="run the local workers as threads of this process instead of "
                             "processes (quicker to start; for small runs)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="use a running Dask cluster: its scheduler address "
                             "(tcp://host:8786) or scheduler file (.json)")
    parser.add_argument("--partition-size", type=int, default=10_000, metavar="N",
                        help="galaxies per partition, i.e. per task and per output file "
                             "(default: %(default)s)")
    parser.add_argument("--chunk-size", type=int, default=256, metavar="N",
                        help="cutouts a task holds in memory at a time (default: "
                             "%(default)s, about 70 MB)")
    parser.add_argument("--preprocess", default="default", metavar="CONFIG",
                        help="preprocessing configuration (default, paper, strict_blends; "
                             "default: %(default)s)")
    parser.add_argument("--preprocess-jobs", type=int, default=1, metavar="N",
                        help="processes each task uses to clean cutouts (for GPU workers "
                             "with many cores; default: %(default)s)")
    parser.add_argument("--prefetch", choices=("auto", "on", "off"), default="auto",
                        help="read and clean each task's next chunk of cutouts while the "
                             "current one is predicted; pays where a worker has a spare core "
                             "or waits on its disk (auto: when the machines have more cores "
                             "than task threads; the catalogue is the same either way)")
    parser.add_argument("--merge", nargs="?", const="catalogue.fits", default=None,
                        metavar="FILE",
                        help="when every partition is done, also write one catalogue file "
                             "(FITS or ECSV by its name; default name catalogue.fits in DIR)")
    parser.add_argument("--restart", action="store_true",
                        help="discard what DIR holds and start again")
    parser.add_argument("--dashboard-address", default=":8787", metavar="HOST:PORT",
                        help="where the local Dask dashboard listens (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def run(args):
    from ..survey import run_catalogue
    from .predict import _refuse_untrained, parse_params

    if args.weights is None and args.fit_table is None:
        _refuse_untrained(args.estimator)  # says which weights or options would do
    source_type = None if args.source_type.lower() == "all" else args.source_type
    summary = run_catalogue(
        args.images, args.out, estimator=args.estimator, weights=args.weights,
        fit_table=args.fit_table, fit_target=args.fit_target,
        estimator_params=parse_params(args.param), source_type=source_type,
        partition_size=args.partition_size, chunk_size=args.chunk_size,
        preprocess=args.preprocess, preprocess_jobs=args.preprocess_jobs,
        prefetch={"auto": "auto", "on": True, "off": False}[args.prefetch],
        scheduler=args.scheduler, n_workers=args.workers, processes=not args.threads,
        dashboard_address=args.dashboard_address, restart=args.restart, merge=args.merge,
        progress=not args.no_progress)
    print(json.dumps({k: summary[k] for k in ("n_rows", "flags", "rows_per_second", "out",
                                               "merged")}))
    return 0
