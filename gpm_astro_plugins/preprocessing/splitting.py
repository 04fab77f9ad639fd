"""Splitting a target's region: its distant neighbours joined to it by faint wings.

Used by `~gpm_astro_plugins.preprocessing.noise_aware.MaskNeighbours` (``split_beyond``).
"""

import cv2
import numpy as np

__all__ = ["split_distant_peaks"]


def split_distant_peaks(labels, area, label, detection, *, centre, lowest, prominence,
                        min_distance, min_own_share=0.3, footprint=5):
    """Split off the target region's distant neighbours joined to it only by faint wings.

    At the 1.5-sigma isophote a bright galaxy and a neighbour several arcseconds away are often
    one 8-connected region. Within region ``label`` of ``labels`` the local maxima of
    ``detection`` (over ``footprint`` x ``footprint`` px) that reach ``lowest`` and lie more
    than ``min_distance`` px from ``centre`` (the target's peak) seed a watershed of the region
    against the target's peak; each such piece whose peak stands ``prominence`` or more above
    its saddle with the rest (its highest pixel bordering another piece), and whose light above
    that saddle holds at least ``min_own_share`` of the piece's flux, gets a label of its own,
    so that it is masked as a neighbour. The last condition keeps a large galaxy's own outer
    disc: an HII-region knot there is a prominent peak, but it sits on the disc's light, and
    its watershed piece is mostly disc (on GalSim knotty discs of half-light radius 4-6" the
    pieces that carved the disc held at most 22 % of their flux above the saddle, an equal
    neighbour 7" away 49 %, other neighbouring galaxies and stars 60-99 %); split off, those
    pieces carve the disc away and a galaxy too large for `SizeLimit` passes it. Closer peaks
    stay in the target's region for the blend check. ``labels`` and ``area`` are returned
    updated (new labels after the old ones).
    """
    from skimage.segmentation import watershed

    region = labels == label
    x0, y0, w, h = cv2.boundingRect(region.view(np.uint8))
    box = (slice(y0, y0 + h), slice(x0, x0 + w))
    inside, values = region[box], detection[box].astype(np.float32)
    kernel = np.ones((footprint, footprint), np.uint8)
    peaks = inside & (values >= cv2.dilate(values, kernel)) & (values >= lowest)
    rows, cols = np.nonzero(peaks)
    far = np.hypot(cols + x0 - centre[0], rows + y0 - centre[1]) > min_distance
    if not far.any():
        return labels, area
    centre_row = min(max(int(round(centre[1])) - y0, 0), h - 1)
    centre_col = min(max(int(round(centre[0])) - x0, 0), w - 1)
    seeds = list(zip(rows[far], cols[far]))
    while True:  # again without the seeds that failed, until every piece left passes
        markers = np.zeros((h, w), np.int32)
        markers[centre_row, centre_col] = 1
        for k, (row, col) in enumerate(seeds, start=2):
            markers[row, col] = k
        pieces = watershed(-values, markers, mask=inside)
        kept = []
        for k, (row, col) in enumerate(seeds, start=2):
            piece = pieces == k
            border = piece & (cv2.dilate((inside & ~piece).view(np.uint8), np.ones((3, 3),
                                         np.uint8)) > 0)
            saddle = float(values[border].max()) if border.any() else -np.inf
            if values[row, col] - saddle < prominence:
                continue
            light = values[piece]
            own = float(np.maximum(light - saddle, 0.0).sum()) if border.any() else np.inf
            if own >= min_own_share * float(np.maximum(light, 0.0).sum()):
                kept.append((row, col))
        if not kept:
            return labels, area
        if len(kept) == len(seeds):
            break
        seeds = kept
    labels = labels.copy()
    new_areas = []
    for k in range(2, len(seeds) + 2):
        piece = pieces == k
        labels[box][piece] = len(area) + len(new_areas)
        new_areas.append(int(piece.sum()))
    area = np.concatenate([area, new_areas]).astype(area.dtype)
    area[label] -= int(sum(new_areas))
    return labels, area
