"""``gpm-astro evaluate``: metrics table and Fig. 9-style figure of a prediction table."""

from pathlib import Path


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "evaluate", help="metrics (mu, sigma, NMAD, error calibration) and the residual figure",
        description="Compare a prediction column with a true column: write metrics.ecsv "
                    "(overall and binned statistics, eq. 3 of the paper) and "
                    "residual_density.png (the paper's Fig. 9) into --out.")
    parser.add_argument("table", metavar="TABLE", help="table with predictions and truths")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    parser.add_argument("--pred", default="Z_pred", help="prediction column (Z_pred)")
    parser.add_argument("--true", default="oh_p50", help="true-value column (oh_p50)")
    parser.add_argument("--err", default="Z_pred_err",
                        help="error column (Z_pred_err); 'none' to skip the calibration")
    parser.add_argument("--mass", default=None,
                        help="log stellar mass column for statistics in mass bins")
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.set_defaults(func=run)


def run(args):
    from ..evaluation import evaluate, plot_residual_density
    from ..io import read_table, write_table
    from . import refuse_existing

    out = Path(args.out)
    for path in (out / "metrics.ecsv", out / "residual_density.png"):
        refuse_existing(path, args.overwrite)
    table = read_table(args.table)
    err = None if args.err.lower() == "none" else args.err
    metrics = evaluate(table, pred=args.pred, true=args.true, err=err, mass=args.mass)
    out.mkdir(parents=True, exist_ok=True)
    write_table(metrics, out / "metrics.ecsv", overwrite=args.overwrite)
    figure_path = out / "residual_density.png"
    plot_residual_density(table, pred=args.pred, true=args.true, title=args.title,
                          path=figure_path)
    row = metrics[0]
    print(f"n = {row['n']}  mu = {row['mu']:+.4f}  sigma = {row['sigma']:.4f}  "
          f"NMAD = {row['nmad']:.4f} dex")
    print(f"wrote {out / 'metrics.ecsv'} and {figure_path}")
    return 0
