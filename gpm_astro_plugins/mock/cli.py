"""``gpm-astro mock``: write a mock sky (labels, truth, archive HDF5 files) to a directory.

The mock plugin registers this command through the hook ``gpm_astro_register_commands``.
"""

from pathlib import Path

from gpm_astro.base import Command

__all__ = ["MockCommand"]


class MockCommand(Command):
    """``gpm-astro mock``: draw a mock sky and write it in the archive layout."""

    name = "mock"
    help = "write a mock sky to disk"
    description = ("Draw a mock Legacy Survey sky with MPA-JHU-like labels and known truth, "
                   "and write labels.fits, truth.fits and images_npix152_*.h5 (the "
                   "ssl-legacysurvey layout) into OUT, chunk by chunk.")

    def add_arguments(self, parser):
        parser.add_argument("--n", type=int, default=1000, help="galaxies in the image catalogue "
                            "(default 1000)")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        parser.add_argument("--out", required=True, help="output directory (created if missing)")
        parser.add_argument("--chunk-size", type=int, default=1000,
                            help="galaxies drawn at a time (default 1000)")
        parser.add_argument("--rows-per-file", type=int, default=1_000_000,
                            help="galaxies per HDF5 file (default 1,000,000 as in the archive)")
        for name, default in (("blend-rate", 0.10), ("large-rate", 0.08), ("empty-rate", 0.06),
                              ("bad-pixel-rate", 0.06), ("labelled-fraction", 0.6)):
            parser.add_argument(f"--{name}", type=float, default=default,
                                help=f"(default {default})")
        parser.add_argument("--overwrite", action="store_true", help="replace existing files")
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def run(self, args):
        from gpm_astro.cli import refuse_existing

        from .sky import MockSky

        for name in ("labels.fits", "truth.fits"):
            refuse_existing(Path(args.out) / name, args.overwrite)

        sky = MockSky(n_galaxies=args.n, seed=args.seed, blend_rate=args.blend_rate,
                      large_rate=args.large_rate, empty_rate=args.empty_rate,
                      bad_pixel_rate=args.bad_pixel_rate, labelled_fraction=args.labelled_fraction,
                      progress=not args.no_progress)
        paths = sky.write(Path(args.out), chunk_size=args.chunk_size,
                          rows_per_file=args.rows_per_file, overwrite=args.overwrite)
        print(f"labels: {paths['labels']}")
        print(f"truth:  {paths['truth']}")
        for path in paths["images"]:
            print(f"images: {path}")
        return 0
