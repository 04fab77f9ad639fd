"""Figures for docs/preprocessing.rst in the manner of the paper's Fig. 3.

Usage::

    python docs/scripts/preprocessing_figure.py [--seed 7] [--galaxies 200] [--out DIR]

For one mock galaxy of each truth case, and for each configuration (``default``, ``paper``),
six panels: (a) the original cutout as the Legacy Survey viewer draws it, (b) the image that
is thresholded (paper: the grey of the viewer's RGB; default: the noise-weighted, smoothed
flux image in units of its noise), (c) the binary image, (d) contours with the fitted
ellipses (all candidates thin, the target's enlarged mask ellipse thick), (e) the masked
target, (f) the minimum enclosing circle used by the size limit. Each row is titled with the
truth case and the flag the configuration gave. Writes ``steps_default.png`` and
``steps_paper.png``.
"""

import argparse
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Circle, Ellipse  # noqa: E402

from gpm_astro.preprocessing import resolve_steps, run_steps  # noqa: E402
from gpm_astro.visualization import lupton_rgb_grz  # noqa: E402
from gpm_astro_plugins.preprocessing.common import _brightest_share  # noqa: E402
from gpm_astro_plugins.preprocessing.imaging import (cv_ellipse_to_axes,  # noqa: E402
                                                     enclosing_circle, largest_component)

CASES = ("clean", "blended", "too_large", "empty_centre", "bad_pixels")
TITLES = ("(a) original", "(b) thresholded image", "(c) binary", "(d) contours, ellipses",
          "(e) masked target", "(f) enclosing circle")


def pick_examples(seed, n_galaxies):
    from gpm_astro_plugins.mock import MockSky

    sky = MockSky(n_galaxies=n_galaxies, seed=seed).generate()
    cutouts = np.asarray(sky.images["cutout"], np.float32)
    truth = sky.truth
    chosen = []
    for case in CASES:
        rows = np.flatnonzero(np.asarray(truth["truth_case"]) == case)
        if case == "bad_pixels":  # a NaN block shows more than an all-zero cutout
            nan_rows = [r for r in rows if str(truth["bad_pixel_kind"][r]) == "nan_block"]
            rows = nan_rows or rows
        if case == "clean":  # a clean galaxy with a neighbour in the field, if there is one
            rows = rows[np.argsort([-np.sum(cutouts[r, 1] > 0.05) for r in rows])][5:] \
                if len(rows) > 10 else rows
        chosen.append(int(rows[0]))
    return cutouts[chosen]


def _ellipse_patch(x, y, a, b, theta, **style):
    return Ellipse((x, y), 2 * a, 2 * b, angle=theta, fill=False, **style)


def panels(config, cutout):
    """The six panel images and overlays of one cutout under one configuration."""
    steps = resolve_steps(config=config)
    images = cutout[None].copy()
    context = {"pixel_scale": 0.262, "bands": "grz", "rows": {}}
    check = steps[0].process(images, context)
    cleaned, flags, columns = run_steps(images, steps)
    flag = str(flags[0])
    if check.flags[0] != "ok":
        return flag, None
    mask_step = steps[1]
    masked = mask_step.process(images, context)
    rows = dict(masked.columns, **masked.extras)
    binary = rows["binary"][0]
    if config == "paper":
        thresholded = rows["grey"][0].astype(float)
        edges = cv2.Canny(binary.astype(np.uint8) * 255, 30, 90)
        contours, _ = cv2.findContours(edges, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        candidates = [cv_ellipse_to_axes(cv2.fitEllipse(c)) for c in contours if len(c) >= 5]
        region = largest_component(binary & rows["target_mask"][0])
        label = "grey of the viewer RGB"
    else:
        noise = float(rows["detection_noise"][0]) or 1.0
        thresholded = (rows["detection"][0] - float(rows["detection_sky"][0])) / noise
        contours, _ = cv2.findContours(binary.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_NONE)
        candidates = []
        region = _brightest_share(rows["segment"][0] & rows["target_mask"][0],
                                  rows["detection"][0], float(rows["detection_sky"][0]), 0.9)
        label = "flux S/N (smoothed)"
    target = [float(columns[k][0][0]) for k in
              ("target_x", "target_y", "target_a", "target_b", "target_theta")]
    circle = enclosing_circle(region) if region.any() else (math.nan,) * 3
    return flag, {"thresholded": thresholded, "label": label, "binary": binary,
                  "contours": contours, "candidates": candidates, "target": target,
                  "masked": cleaned[0], "circle": circle}


def draw(config, cutouts, path):
    fig, axes = plt.subplots(len(cutouts), 6, figsize=(9.6, 1.75 * len(cutouts)))
    for row, (case, cutout) in enumerate(zip(CASES, cutouts)):
        flag, info = panels(config, cutout)
        axes[row, 0].imshow(lupton_rgb_grz(cutout), origin="lower")
        axes[row, 0].set_ylabel(f"{case}\n-> {flag}", fontsize=8)
        if info is None:
            axes[row, 1].text(75, 75, f"rejected by\ncheck_pixels:\n{flag}", ha="center",
                              va="center", fontsize=7)
        else:
            stretch = np.arcsinh(info["thresholded"] / max(np.nanstd(info["thresholded"]), 1e-9))
            axes[row, 1].imshow(stretch, origin="lower", cmap="gray")
            axes[row, 2].imshow(info["binary"], origin="lower", cmap="gray")
            axes[row, 3].imshow(info["binary"], origin="lower", cmap="gray", alpha=0.35)
            for contour in info["contours"]:
                points = contour[:, 0, :]
                axes[row, 3].plot(points[:, 0], points[:, 1], lw=0.5, color="tab:cyan")
            for ellipse in info["candidates"]:
                axes[row, 3].add_patch(_ellipse_patch(*ellipse, lw=0.5, color="tab:orange"))
            if np.isfinite(info["target"]).all():
                axes[row, 3].add_patch(_ellipse_patch(*info["target"], lw=1.5, color="red"))
            axes[row, 4].imshow(lupton_rgb_grz(info["masked"]), origin="lower")
            axes[row, 5].imshow(lupton_rgb_grz(info["masked"]), origin="lower")
            x, y, r = info["circle"]
            if np.isfinite(r):
                axes[row, 5].add_patch(Circle((x, y), r, fill=False, color="yellow", lw=1.2))
                axes[row, 5].text(4, 6, f'{r * 0.262:.1f}"', color="yellow", fontsize=7)
            axes[row, 1].text(4, 6, info["label"], color="yellow", fontsize=6)
        for col in range(6):
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            axes[row, col].set_xlim(0, 151)
            axes[row, col].set_ylim(0, 151)
            if row == 0:
                axes[row, col].set_title(TITLES[col], fontsize=8)
    fig.suptitle(f"preprocessing steps, configuration '{config}'", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=64)
    plt.close(fig)
    print(f"wrote {path} ({Path(path).stat().st_size / 1024:.0f} kB)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--galaxies", type=int, default=200)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "_static"
                                             / "preprocessing"))
    args = parser.parse_args(argv)
    cutouts = pick_examples(args.seed, args.galaxies)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for config in ("default", "paper"):
        draw(config, cutouts, Path(args.out) / f"steps_{config}.png")


if __name__ == "__main__":
    sys.exit(main())
