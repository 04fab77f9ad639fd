"""Speed of preprocess_cutouts against a straightforward per-cutout photutils implementation.

Usage::

    python benchmarks/preprocess.py [--galaxies 300] [--seed 3] [--reference 60] [--jobs N]

All timings come from the same run on the same cutouts (a mock sky): the ``default``
configuration on one core (a first pass, which pays for fresh memory pages, then the median
of ``--repeats`` later passes, as every later chunk of a long job runs) and on ``--jobs`` cores
(default: all; after a first pass), the same over a stream of chunks (``--stream`` passes) on
one and on ``--jobs`` cores (one core and several timed in turn), the ``paper`` configuration
on one core, and a reference that does the same steps the way the published scripts do, one
cutout at a time with photutils (Background2D, detect_sources, SourceCatalog for the central
source's ellipse, deblend_sources, a SourceCatalog for the count). The script prints cutouts
per second, milliseconds per cutout, and the speed-up of the default over the reference.
Close other work first: the numbers are wall-clock times.
"""

import argparse
import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402

from gpm_astro.preprocessing import iter_preprocess_cutouts, preprocess_cutouts  # noqa: E402

CENTRE = 75.5
PIXEL_SCALE = 0.262


def photutils_reference(cutout):
    """Flag one (3, 152, 152) cutout with photutils only, as the published scripts do.

    Returns the flag; the steps mirror the default configuration: background and noise
    (Background2D), detection (detect_sources) on the smoothed sum of the bands, the central
    source's ellipse (SourceCatalog), mask 1.4x, enclosing circle, deblending
    (deblend_sources) and a second SourceCatalog to count the sources.
    """
    from astropy.convolution import Gaussian2DKernel, convolve
    from photutils.background import Background2D, MedianBackground
    from photutils.segmentation import SourceCatalog, deblend_sources, detect_sources

    if not np.isfinite(cutout).all() or np.all(cutout == 0):
        return "invalid_pixels"
    image = cutout.sum(axis=0).astype(np.float64)
    background = Background2D(image, 50, filter_size=3, bkg_estimator=MedianBackground())
    data = image - background.background
    kernel = Gaussian2DKernel(3.0 / 2.3548, x_size=5, y_size=5)
    kernel.normalize()
    smoothed = convolve(data, kernel)
    segments = detect_sources(smoothed, 1.5 * background.background_rms, 10)
    if segments is None:
        return "no_central_source"
    catalogue = SourceCatalog(data, segments, convolved_data=smoothed)
    distance = np.hypot(catalogue.x_centroid - CENTRE, catalogue.y_centroid - CENTRE)
    nearest = int(np.nanargmin(distance))
    if distance[nearest] > 5:
        return "no_central_source"
    source = catalogue[nearest]
    a = 1.4 * 2.0 * source.semimajor_axis.value  # moments' sigma -> outline, enlarged
    b = 1.4 * 2.0 * source.semiminor_axis.value
    theta = source.orientation.value
    mask = np.zeros(image.shape, np.uint8)
    cv2.ellipse(mask, (int(source.x_centroid), int(source.y_centroid)), (int(a), int(b)),
                theta, 0, 360, 1, -1)
    target = (segments.data == source.label) & (mask > 0)
    contours, _ = cv2.findContours(target.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return "no_central_source"
    _, radius = cv2.minEnclosingCircle(np.concatenate(contours))
    if radius * PIXEL_SCALE > 6.0:
        return "too_large"
    central = segments.copy()
    central.keep_labels([source.label])
    deblended = deblend_sources(smoothed, central, 10, n_levels=32, contrast=1e-3,
                                progress_bar=False)
    count = len(SourceCatalog(data, deblended, convolved_data=smoothed))
    return "blended" if count > 1 else "ok"


def timed(function, *args, **kwargs):
    """Result, wall-clock seconds and CPU seconds of this process."""
    start, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start, time.process_time() - cpu


def timed_pass(*args, **kwargs):
    """Wall-clock and CPU seconds of one preprocess_cutouts call whose output is then dropped,
    as a streaming job drops each chunk once written."""
    _, seconds, cpu = timed(preprocess_cutouts, *args, **kwargs)
    return seconds, cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--galaxies", type=int, default=300)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--reference", type=int, default=60,
                        help="cutouts timed with the slow photutils reference")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache", default=None, help="npz file to keep the mock cutouts in")
    parser.add_argument("--repeats", type=int, default=3,
                        help="later passes timed, one core and several in turn (median)")
    parser.add_argument("--stream", type=int, default=3,
                        help="also time the cutouts passed this many times as a stream of "
                             "chunks, on one core and on --jobs cores (0: skip)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    from preprocess_truth import mock_cutouts

    cutouts, case, expected = mock_cutouts(args.galaxies, args.seed, args.cache)
    table = Table({"cutout": cutouts}, meta={"bands": "grz", "pixel_scale": PIXEL_SCALE})
    n = len(table)
    print(f"{n} mock cutouts (152 x 152 x 3), {os.cpu_count()} cores visible")
    preprocess_cutouts(table[:16], progress=False)  # imports and caches
    preprocess_cutouts(table[:16], config="paper", progress=False)

    rows = []  # (name, cutouts, wall seconds, CPU seconds or None)
    # the first pass pays for fresh memory pages; a long job's later chunks run like the
    # later passes. Those are repeated --repeats times, one core and several in turn (so a
    # busy moment of the machine falls on both), and the median counts.
    cold, cold_cpu = timed_pass(table, n_jobs=1, progress=False)
    rows.append(("default, 1 core, first pass", n, cold, cold_cpu))
    if args.jobs > 1:
        preprocess_cutouts(table[:16 * args.jobs], n_jobs=args.jobs, batch_size=16,
                           progress=False)  # start the worker processes
        timed_pass(table, n_jobs=args.jobs, progress=False)  # the workers' first pass

    def stream(n_jobs):
        # a long job: the table passed --stream times as chunks of 500, as a data source
        # streams them
        chunks = (table[start:start + 500] for _ in range(args.stream)
                  for start in range(0, n, 500))
        for _ in iter_preprocess_cutouts(chunks, n_jobs=n_jobs, progress=False):
            pass

    runs = {"one": lambda: timed_pass(table, n_jobs=1, progress=False)}
    if args.jobs > 1:
        runs["many"] = lambda: timed_pass(table, n_jobs=args.jobs, progress=False)
        if args.stream:
            runs["stream one"] = lambda: timed(stream, 1)[1:]
            runs["stream many"] = lambda: timed(stream, args.jobs)[1:]
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(run())
    median = {name: tuple(np.median(np.array(values), axis=0))
              for name, values in times.items()}
    one, one_cpu = median["one"]
    rows.append(("default, 1 core", n, one, one_cpu))
    if args.jobs > 1:
        many = median["many"][0]
        rows.append((f"default, {args.jobs} processes", n, many, None))
        if args.stream:
            stream_one, stream_one_cpu = median["stream one"]
            stream_many = median["stream many"][0]
            rows.append(("stream, 1 core", n * args.stream, stream_one, stream_one_cpu))
            rows.append((f"stream, {args.jobs} processes", n * args.stream, stream_many, None))
    paper, paper_cpu = timed_pass(table, config="paper", progress=False)
    rows.append(("paper, 1 core", n, paper, paper_cpu))
    subset = cutouts[:args.reference]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flags, reference, reference_cpu = timed(
            lambda: [photutils_reference(c) for c in subset])
    rows.append(("photutils reference, 1 core", len(subset), reference, reference_cpu))
    right = np.mean(np.array(flags) == expected[:len(subset)])

    print(f"{'pipeline':<30}{'cutouts':>8}{'cutouts/s':>11}{'ms/cutout':>11}"
          f"{'CPU ms/cutout':>15}")
    for name, count, seconds, cpu in rows:
        cpu_text = f"{1e3 * cpu / count:.2f}" if cpu is not None else "-"
        print(f"{name:<30}{count:>8}{count / seconds:>11.0f}{1e3 * seconds / count:>11.2f}"
              f"{cpu_text:>15}")
    speed_up = (reference_cpu / len(subset)) / (one_cpu / n)
    print(f"default (1 core) is {speed_up:.1f}x faster than the photutils reference in CPU "
          f"time per cutout ({(reference / len(subset)) / (one / n):.1f}x in wall-clock time); "
          f"the reference is right on {right:.0%} of its {len(subset)} cutouts")
    if args.jobs > 1:
        print(f"{args.jobs} processes: {one / many:.2f}x the wall-clock speed of 1 core")
    if args.jobs > 1 and args.stream:
        print(f"stream of {n * args.stream} cutouts in chunks of 500: {args.jobs} processes "
              f"{stream_one / stream_many:.2f}x the wall-clock speed of 1 core")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"1-minute load average at the end: {load:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
