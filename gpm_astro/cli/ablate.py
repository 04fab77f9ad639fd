"""``gpm-astro ablate``: the paper's ablation studies (§4.2-4.6) into one folder."""

import json
import sys

from . import EXIT_OK

DESCRIPTION = """\
Rerun the evidence of the paper's Section 4 on a labelled sample (by default a mock sky made
by the pipeline):
  architectures  ResNet-34, ResNet-50, ResNet-101, MobileNetV2, EfficientNet-B0 and
                 DenseNet-121 against GPM-ResNet on the same split (Table 1)
  size           test errors in 1-arcsec bins of enclosing-circle radius (Fig. 11a)
  resolution     GPM-ResNet retrained on images resized to 16, 32, 64, 128, 152 px (Fig. 11b)
  bands          GPM-ResNet retrained on g, r, z, gr, gz, rz, grz (Fig. 11c)
  mzr            the mass-metallicity relation recovered from Z_pred (Fig. 13)
Writes one ECSV table per study, the figures and report.html into --out. A study whose table
exists is skipped on a rerun, and trained models are reused, so an interrupted run resumes.

The default is the paper-sized study (25,000 galaxies, the paper's networks and 50 epochs:
for a GPU). --quick is the CI-sized run: a few hundred mock galaxies, quarter-width networks
and 4 epochs: about 100 CPU-seconds (2 minutes of wall time on a shared 2-core machine).
"""


def add_parser(subparsers):
    import argparse

    from ..ablation import STUDY_NAMES

    parser = subparsers.add_parser(
        "ablate", help="the paper's ablation studies (architectures, size, resolution, "
                       "bands, mass-metallicity)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", metavar="DIR", help="output folder (required)")
    parser.add_argument("--quick", action="store_true",
                        help="CI-sized run: few hundred galaxies, lite widths, 4 epochs")
    parser.add_argument("--config", metavar="FILE",
                        help="settings file (.toml, .yaml, .yml or .json) overriding the "
                             "defaults; see --example-config")
    parser.add_argument("--studies", metavar="LIST",
                        help="comma-separated subset of: " + ", ".join(STUDY_NAMES))
    parser.add_argument("--run-config", metavar="FILE",
                        help="pipeline run configuration (as gpm-astro run reads) that makes "
                             "the labelled sample: the stages up to 'sample' run into DIR/sample")
    parser.add_argument("--sample-from", metavar="RUN_DIR",
                        help="use the sample of an existing pipeline output folder "
                             "(gpm-astro run / demo) instead of making one")
    parser.add_argument("--force", action="store_true",
                        help="redo studies whose tables exist (matching models are reused)")
    parser.add_argument("--quiet", action="store_true", help="no messages or progress bars")
    parser.add_argument("--example-config", action="store_true",
                        help="print the complete settings (JSON; with --quick the quick "
                             "ones), then exit")
    parser.set_defaults(func=run, _parser=parser)


def run(args):
    from ..ablation import load_settings, run_ablations
    from ..ablation.settings import _merge

    if args.example_config:
        sys.stdout.write(json.dumps(load_settings(args.config, quick=args.quick), indent=1)
                         + "\n")
        return EXIT_OK
    if not args.out:
        args._parser.error("give an output folder: --out DIR")
    settings = load_settings(args.config, quick=args.quick)
    if args.run_config:
        settings = _merge(settings, {"sample": {"run_dir": None,
                                                "pipeline": args.run_config}})
    if args.sample_from:
        settings = _merge(settings, {"sample": {"run_dir": args.sample_from}})
    studies = [s.strip() for s in args.studies.split(",") if s.strip()] if args.studies \
        else None
    result = run_ablations(args.out, settings, quick=args.quick, studies=studies,
                           force=args.force, progress=not args.quiet)
    if not args.quiet:
        for name, table in result["tables"].items():
            print(f"\n== {name} ==")
            table.pprint_all()
    print(f"report: {result['report']}")
    return EXIT_OK
