"""``gpm-astro demo``: the paper's study on the embedded mock sky, offline."""

import sys

from . import EXIT_ERROR, EXIT_OK

DESCRIPTION = """\
Reproduce the paper's study end to end on a mock sky, with no network: render a few
thousand mock Legacy Survey galaxies (g, r, z cutouts at 0.262"/pixel) with an SDSS-like
MPA-JHU label catalogue, select the star-forming labels, crossmatch, clean the cutouts, draw a
sample uniform in 12 + log(O/H) and split it 5:3:2, train the lite GPM-ResNet, fit the 2nd-
and 3rd-order colour-metallicity polynomials, apply the Tremonti et al. (2004)
mass-metallicity relation (with the catalogue mass, and with a mass predicted from the
images), compare them all on the test set with the mock's noise floor, and predict Z for the
unlabelled EXP galaxies.

Writes into DIR: catalogue/catalogue.fits and .ecsv (ra, dec, release, brickid, objid,
z_phot_median, mag_r, Z_pred, Z_pred_err, flags), evaluate/metrics.ecsv, the figures
(PNG), and report.html (one page with every figure and table). A rerun into the same DIR
skips what is done. Measured: {measured}.
"""


def add_parser(subparsers):
    import argparse

    from ..demo import DEMO_EPOCHS, DEMO_MASS_EPOCHS, DEMO_MEASURED, DEMO_N_GALAXIES

    parser = subparsers.add_parser(
        "demo", help="run the whole study on the embedded mock sky (offline)",
        description=DESCRIPTION.format(measured=DEMO_MEASURED),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", metavar="DIR", default="demo_output",
                        help="output folder (default: %(default)s)")
    parser.add_argument("--n-galaxies", type=_positive_int, default=DEMO_N_GALAXIES,
                        metavar="N",
                        help="galaxies in the mock image catalogue (default: %(default)s; "
                             "a few hundred for a smoke test)")
    parser.add_argument("--quick", action="store_true",
                        help="a fast smoke run: 3 training epochs, no image mass model")
    parser.add_argument("--epochs", type=_positive_int, metavar="N",
                        help=f"training epochs of both GPM-ResNet models (default: "
                             f"{DEMO_EPOCHS} for Z, {DEMO_MASS_EPOCHS} for the stellar mass)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the mock sky (default: %(default)s)")
    parser.add_argument("--keep-cutouts", action="store_true",
                        help="keep the HDF5 cutout stores (1.5 GB of raw mock cutouts and "
                             "~0.2 GB of cleaned ones at the default size); by default each "
                             "is removed once no later stage reads it")
    parser.add_argument("--force", action="store_true",
                        help="rerun every stage, even those whose outputs exist")
    parser.add_argument("--quiet", action="store_true",
                        help="no stage messages or progress bars")
    parser.set_defaults(func=run)


def _positive_int(text):
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def run(args):
    from ..demo import run_demo

    try:
        result = run_demo(args.out, n_galaxies=args.n_galaxies, quick=args.quick,
                          epochs=args.epochs, seed=args.seed,
                          keep_cutouts=args.keep_cutouts, force=args.force,
                          progress=not args.quiet)
    except OSError as exc:
        print(f"gpm-astro demo: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if not args.quiet:
        metrics = result["metrics"]
        metrics.keep_columns(["estimator", "n", "mu", "sigma", "nmad", "coverage"])
        metrics.pprint_all()
    print(f"demo finished in {result['total_seconds']:.0f} s; report: {result['report']}")
    return EXIT_OK
