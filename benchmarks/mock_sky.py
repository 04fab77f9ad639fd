"""Benchmark of the mock sky: speed for 1,000 galaxies, and memory while writing many.

Run on one core::

    OMP_NUM_THREADS=1 python benchmarks/mock_sky.py              # 1,000 galaxies + 100,000 to disk
    OMP_NUM_THREADS=1 python benchmarks/mock_sky.py --n 5000     # a smaller disk run

Part 1 times ``MockSky(n_galaxies=1000).generate()`` (catalogue, noise-floor fit, cutouts) and,
as a baseline measured in the same run, the straightforward GalSim way of drawing the same
targets (one bulge + disk profile convolved with each band's PSF, drawn on a full 152 x 152
image per band), printing the ratio. Part 2 writes ``--n`` galaxies to a temporary directory
chunk by chunk and reports the time and the peak memory (resident set, and tracemalloc's peak
of Python / numpy allocations during the write).
"""

import argparse
import os
import resource
import tempfile
import time
import tracemalloc

os.environ.setdefault("OMP_NUM_THREADS", "1")

import galsim  # noqa: E402

from gpm_astro_plugins.mock import MockSky  # noqa: E402


def naive_render(truth, n):
    """Baseline: one full-size GalSim draw of bulge + disk per band, no stamps."""
    start = time.perf_counter()
    for row in truth[:n]:
        for band in range(3):
            psf = galsim.Moffat(beta=3.5, fwhm=float(row["psf_fwhm"][band]))
            beta = float(row["position_angle"]) * galsim.degrees
            bulge = galsim.DeVaucouleurs(half_light_radius=float(row["bulge_hlr_arcsec"]),
                                         flux=float(row["bulge_flux"][band])).shear(
                q=float(row["bulge_q"]), beta=beta)
            disk = galsim.Exponential(half_light_radius=float(row["disk_hlr_arcsec"]),
                                      flux=float(row["disk_flux"][band])).shear(
                q=float(row["disk_q"]), beta=beta)
            galsim.Convolve(bulge + disk, psf).drawImage(nx=152, ny=152, scale=0.262)
    return (time.perf_counter() - start) / n


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="galaxies written to disk")
    parser.add_argument("--n-speed", type=int, default=1000, help="galaxies timed in part 1")
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--skip-disk", action="store_true", help="only run part 1")
    args = parser.parse_args()

    sky = MockSky(n_galaxies=args.n_speed, seed=1)
    start = time.perf_counter()
    labels, images, truth = sky.catalog()  # includes the one-off noise-floor fit
    first_catalogue = time.perf_counter() - start
    start = time.perf_counter()
    sky.catalog()  # the fit is cached now: the catalogue alone
    catalogue = time.perf_counter() - start
    start = time.perf_counter()
    sky.render(images, truth)
    rendering = time.perf_counter() - start
    per_cutout = rendering / args.n_speed
    targets = truth[truth["truth_case"] == "clean"]
    baseline = naive_render(targets, min(100, len(targets)))
    print(f"part 1: {args.n_speed} galaxies on one core: {first_catalogue + rendering:.1f} s "
          f"in all = catalogue {catalogue:.1f} s + one-off noise-floor fit "
          f"{first_catalogue - catalogue:.1f} s + cutouts {rendering:.1f} s")
    print(f"        cutouts: {1000 * per_cutout:.1f} ms per galaxy (target, neighbours, noise); "
          f"baseline, the target alone drawn per band on the full 152 x 152 image: "
          f"{1000 * baseline:.1f} ms; ratio baseline / ours = {baseline / per_cutout:.2f}")
    print(f"        noise floor (clean labelled): "
          f"{truth.meta.get('noise_floor_clean_labelled', float('nan')):.4f} dex")
    if args.skip_disk:
        return

    rss_before = peak_rss_mib()
    with tempfile.TemporaryDirectory() as tmp:
        tracemalloc.start()
        start = time.perf_counter()
        paths = MockSky(n_galaxies=args.n, seed=2).write(tmp, chunk_size=args.chunk_size)
        elapsed = time.perf_counter() - start
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        size = sum(os.path.getsize(p) for p in paths["images"])
    print(f"part 2: {args.n} galaxies written in chunks of {args.chunk_size} in "
          f"{elapsed:.0f} s ({1000 * elapsed / args.n:.1f} ms per galaxy), "
          f"{size / 2**30:.2f} GiB of HDF5")
    print(f"        peak traced allocations during the write: {traced_peak / 2**20:.0f} MiB; "
          f"peak resident set: {peak_rss_mib():.0f} MiB (before the write: "
          f"{rss_before:.0f} MiB); the cutouts alone would take "
          f"{args.n * 3 * 152 * 152 * 4 / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
