"""``gpm-astro train``: train a GPM-ResNet on a table of cutouts and save it."""

EPILOG = """\
examples:
  gpm-astro train train.fits --out models/lite --config lite
  gpm-astro train train.fits --validation val.fits --out models/paper
  gpm-astro train train.fits --out models/mass --config lite --target lgm_fib_p50 --epochs 20
  gpm-astro train train.fits --out models/lite --config lite --checkpoint-dir ckpt --resume
"""


def add_parser(subparsers):
    import argparse

    parser = subparsers.add_parser(
        "train", help="train a GPM-ResNet on a table of cutouts",
        description="Train GPM-ResNet on TABLE (a file with a `cutout` column and the target "
                    "column) and write safetensors weights, a JSON model card and loss "
                    "curves (CSV, PNG) to --out.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="training table (FITS, ECSV, HDF5, ...)")
    parser.add_argument("--out", required=True, help="directory for the trained model")
    parser.add_argument("--config", default="paper",
                        choices=("paper", "paper_recipe", "lite"),
                        help="network and training defaults: paper (the paper's, default), "
                             "paper_recipe (the paper's network, the tuned training), lite "
                             "(the fast CPU variant)")
    parser.add_argument("--target", default=None,
                        help="column to learn (default: oh_p50; lgm_fib_p50 for log M*)")
    parser.add_argument("--validation", default=None,
                        help="validation table (default: hold out --validation-fraction)")
    parser.add_argument("--validation-fraction", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help="initial learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--n-ensemble", type=int, default=1)
    parser.add_argument("--mc-passes", type=int, default=10)
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="write a checkpoint every epoch here")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --checkpoint-dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _estimator_for(target):
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator, GPMResNetMassEstimator

    if target is not None and target.startswith("lgm_"):
        return GPMResNetMassEstimator
    return GPMResNetEstimator


def run(args):
    import json

    from ..io import read_table

    table = read_table(args.table)
    validation = read_table(args.validation) if args.validation else None
    cls = _estimator_for(args.target)
    estimator = cls(config=args.config, epochs=args.epochs, batch_size=args.batch_size,
                    lr=args.lr, seed=args.seed, device=args.device, precision=args.precision,
                    n_ensemble=args.n_ensemble, mc_passes=args.mc_passes,
                    validation_fraction=args.validation_fraction,
                    deterministic=args.deterministic, checkpoint_dir=args.checkpoint_dir,
                    resume=args.resume, progress=not args.quiet)
    estimator.fit(table, target=args.target, validation=validation)
    weights = estimator.save(args.out)
    metrics = estimator.validation_metrics_
    print(f"saved {cls.name} to {weights.parent} "
          f"(trained on {estimator.training_summary_['n_train']} rows)")
    print("validation: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                       for k, v in metrics.items()}))
    return 0
