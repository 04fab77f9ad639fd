"""Time `gpm_astro.crossmatch` from 1e4 to 1e6 labels against 1e6 images.

Run: ``OMP_NUM_THREADS=1 python benchmarks/crossmatch.py [--quick]``. Prints seconds per size,
the growth ratio between sizes, and two baselines measured in the same run: astropy's
``match_to_catalog_sky`` alone (the floor: what crossmatch adds on top is the join), and
brute-force all-pairs haversine in numpy, timed on a few hundred labels and extrapolated.
"""

import argparse
import time

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from gpm_astro import crossmatch


def random_sky(n_images, n_labels, seed):
    """Images uniform on the sphere; labels = random images moved by up to 1.5 arcsec."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n_images)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n_images)))
    images = Table({"ra": ra, "dec": dec, "objid": np.arange(n_images),
                    "flux_r": rng.lognormal(1, 1, n_images)})
    picks = rng.integers(0, n_images, n_labels)
    moved = SkyCoord(ra[picks] * u.deg, dec[picks] * u.deg).directional_offset_by(
        rng.uniform(0, 360, n_labels) * u.deg, rng.uniform(0, 1.5, n_labels) * u.arcsec)
    labels = Table({"specobjid": np.arange(n_labels), "ra": moved.ra.deg,
                    "dec": moved.dec.deg, "oh_p50": rng.normal(8.9, 0.2, n_labels)})
    return labels, images


def best_of(func, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def brute_force_seconds_per_label(labels, images, n_probe=200, chunk=50):
    """Seconds per label of an all-pairs haversine nearest neighbour, numpy, chunked."""
    ra2, dec2 = np.radians(images["ra"]), np.radians(images["dec"])
    cos_dec2 = np.cos(dec2)
    start = time.perf_counter()
    for begin in range(0, n_probe, chunk):
        ra1 = np.radians(np.asarray(labels["ra"][begin:begin + chunk]))[:, None]
        dec1 = np.radians(np.asarray(labels["dec"][begin:begin + chunk]))[:, None]
        a = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * cos_dec2 * np.sin((ra2 - ra1) / 2) ** 2
        np.argmin(a, axis=1)
    return (time.perf_counter() - start) / n_probe


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1e5 images, 1e3..1e5 labels")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="also save a figure of the timings and separations")
    args = parser.parse_args()
    n_images = 100_000 if args.quick else 1_000_000
    sizes = [1_000, 10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]

    labels_all, images = random_sky(n_images, sizes[-1], seed=0)
    per_label_brute = brute_force_seconds_per_label(labels_all, images)
    crossmatch(labels_all[:100], images[:1000])  # warm-up: imports, first-call caches
    print(f"images: {n_images:,d}; radius 1 arcsec; labels offset 0-1.5 arcsec from an image")
    print(f"{'labels':>10} {'crossmatch s':>13} {'growth':>7} {'match_to_catalog_sky s':>23} "
          f"{'join overhead':>13} {'brute force s (extrap.)':>24} {'speed-up':>9} "
          f"{'matched':>8}")
    previous = None
    rows = []
    for n in sizes:
        labels = labels_all[:n]
        seconds, out = best_of(lambda: crossmatch(labels, images), args.repeat)

        def astropy_only():
            catalog = SkyCoord(images["ra"] * u.deg, images["dec"] * u.deg)
            return SkyCoord(labels["ra"] * u.deg, labels["dec"] * u.deg).match_to_catalog_sky(
                catalog)

        floor, _ = best_of(astropy_only, args.repeat)
        brute = per_label_brute * n
        growth = f"{seconds / previous:7.2f}" if previous else f"{'-':>7}"
        print(f"{n:>10,d} {seconds:>13.2f} {growth} {floor:>23.2f} {seconds / floor:>12.2f}x "
              f"{brute:>24.0f} {brute / seconds:>8.0f}x {out['matched'].mean():>8.3f}")
        previous = seconds
        rows.append((n, seconds, floor, brute))

    if not args.quick:
        square, _ = random_sky(n_images, n_images, seed=0)  # same images, 1e6 labels
        seconds, out = best_of(lambda: crossmatch(square, images), args.repeat)
        print(f"1,000,000 x 1,000,000: {seconds:.2f} s, {int(out['matched'].sum()):,d} matched")
    if args.plot:
        plot(rows, out, args.plot)


def plot(rows, out, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, seconds, floor, brute = (np.array(v) for v in zip(*rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=90)
    left.loglog(n, seconds, "o-", label="crossmatch")
    left.loglog(n, floor, "s--", label="match_to_catalog_sky alone")
    left.loglog(n, brute, "^:", label="brute force (extrapolated)")
    left.set_xlabel("label rows")
    left.set_ylabel("seconds (one core)")
    left.set_title(f"against {n_images_of(out):,d} images")
    left.legend(fontsize=8)
    sep = np.asarray(out["separation"][out["matched"]])
    right.hist(sep, bins=40, range=(0, 1), color="tab:blue")
    right.set_xlabel("separation of matched rows (arcsec)")
    right.set_ylabel("labels")
    right.set_title(f"{len(sep):,d} of {len(out):,d} labels within 1 arcsec")
    fig.tight_layout()
    fig.savefig(path)
    print(f"figure: {path}")


def n_images_of(out):
    return out.meta["gpm_astro"]["steps"][-1]["params"]["n_images"]


if __name__ == "__main__":
    main()
