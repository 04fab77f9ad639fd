"""``gpm-astro train``: fit a registered estimator on a table and save it."""

EPILOG = """\
examples:
  gpm-astro train train.fits --out models/lite --config lite
  gpm-astro train train.fits --validation val.fits --out models/paper
  gpm-astro train train.fits --out models/mass --estimator gpm_resnet_mass --config lite
  gpm-astro train train.fits --out models/lite --config lite --checkpoint-dir ckpt --resume
"""

#: options of this command that are estimator parameters: option dest -> parameter name
_ESTIMATOR_OPTIONS = {
    "config": "config", "epochs": "epochs", "batch_size": "batch_size", "lr": "lr",
    "seed": "seed", "device": "device", "precision": "precision",
    "n_ensemble": "n_ensemble", "mc_passes": "mc_passes",
    "validation_fraction": "validation_fraction", "deterministic": "deterministic",
    "checkpoint_dir": "checkpoint_dir", "resume": "resume",
}


def add_parser(subparsers):
    import argparse

    parser = subparsers.add_parser(
        "train", help="fit an estimator on a table and save it",
        description="Fit the registered estimator --estimator (default gpm_resnet) on TABLE "
                    "(a file with the columns it reads and the target column) and save it to "
                    "--out with the estimator's own `save` (GPM-ResNet: safetensors weights, "
                    "a JSON model card and loss curves). The options below the estimator's "
                    "are passed only when given, and only to an estimator that has them.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="training table (FITS, ECSV, HDF5, ...)")
    parser.add_argument("--out", required=True, help="directory for the trained model")
    parser.add_argument("--estimator", default="gpm_resnet",
                        help="registered estimator (see `gpm-astro plugins`; default "
                             "gpm_resnet, gpm_resnet_mass for log M*)")
    parser.add_argument("--target", default=None,
                        help="column to learn (default: the estimator's default_target)")
    parser.add_argument("--validation", default=None,
                        help="validation table, for an estimator that uses one")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="estimator parameter; VALUE is read as JSON when it parses; "
                             "repeatable")
    gpm = parser.add_argument_group("GPM-ResNet parameters (passed when given)")
    gpm.add_argument("--config", default=None, choices=("paper", "paper_recipe", "lite"),
                     help="network and training defaults: paper (GPM-ResNet's default: the "
                          "paper's), paper_recipe (the paper's network, the tuned training) "
                          "or lite (the fast CPU variant)")
    gpm.add_argument("--validation-fraction", type=float, default=None, metavar="F",
                     help="share of TABLE held out for choosing the best epoch and "
                          "calibrating the errors when --validation is not given "
                          "(estimator default 0.2)")
    gpm.add_argument("--epochs", type=int, default=None, metavar="N",
                     help="passes over the training set (default: the configuration's)")
    gpm.add_argument("--batch-size", type=int, default=None, metavar="N",
                     help="galaxies per training step (default: the configuration's)")
    gpm.add_argument("--lr", type=float, default=None, help="initial learning rate")
    gpm.add_argument("--seed", type=int, default=None,
                     help="seed of initialisation, validation split, shuffling and "
                          "augmentation (estimator default 0)")
    gpm.add_argument("--device", default=None, help="auto, cpu, cuda")
    gpm.add_argument("--precision", default=None, choices=("auto", "fp32", "bf16"),
                     help="arithmetic while training: auto (bf16 on a GPU, fp32 on a CPU), "
                          "fp32 or bf16")
    gpm.add_argument("--n-ensemble", type=int, default=None, metavar="N",
                     help="networks trained from different seeds and averaged; their spread "
                          "is part of Z_pred_err (estimator default 1)")
    gpm.add_argument("--mc-passes", type=int, default=None, metavar="N",
                     help="Monte-Carlo DropBlock passes per network at prediction, for "
                          "Z_pred_err (estimator default 10; 1 = one deterministic pass)")
    gpm.add_argument("--deterministic", action="store_true", default=None,
                     help="deterministic kernels (bit-reproducible training, slower)")
    gpm.add_argument("--checkpoint-dir", default=None, help="write a checkpoint every epoch here")
    gpm.add_argument("--resume", action="store_true", default=None,
                     help="continue from the checkpoint in --checkpoint-dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def estimator_parameters(args, accepted):
    """The estimator parameters the command line sets: the given options and ``--param``.

    Raises
    ------
    ParameterError
        If an option is given that the estimator does not take.
    """
    from ..exceptions import ParameterError
    from .predict import parse_params

    params = {name: getattr(args, dest) for dest, name in _ESTIMATOR_OPTIONS.items()
              if getattr(args, dest) is not None}
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        options = ", ".join("--" + name.replace("_", "-") for name in unknown)
        msg = (f"estimator {args.estimator!r} takes no {options}; its parameters are "
               f"{sorted(accepted)}")
        raise ParameterError(msg)
    if "progress" in accepted:
        params["progress"] = not args.quiet
    params.update(parse_params(args.param))
    return params


def run(args):
    import json

    from ..exceptions import ParameterError
    from ..io import read_table
    from ..plugins import get_estimator

    cls = get_estimator(args.estimator)
    if not callable(getattr(cls, "save", None)):
        msg = f"estimator {args.estimator!r} has no save method: it cannot be trained to a file"
        raise ParameterError(msg)
    estimator = cls(**estimator_parameters(args, cls._param_names()))
    table = read_table(args.table, attach_cutouts=True)
    target = args.target or getattr(estimator, "default_target", "oh_p50")
    kwargs = {"target": target}
    if args.validation:
        if not estimator.uses_validation:
            msg = f"estimator {args.estimator!r} uses no validation table; drop --validation"
            raise ParameterError(msg)
        kwargs["validation"] = read_table(args.validation, attach_cutouts=True)
    estimator = estimator.fit(table, **kwargs) or estimator
    weights = estimator.save(args.out)
    print(f"saved {args.estimator} ({estimator.describe()}) to {weights.parent}")
    metrics = getattr(estimator, "validation_metrics_", None)
    if metrics:
        print("validation: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                           for k, v in metrics.items()}))
    return 0
