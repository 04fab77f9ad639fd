"""The labelled sample the studies share, and the band composites of the band study.

The sample is the pipeline's own: its uniform-in-Z draw split 5:3:2 (``sample/sample.fits``)
with the cleaned cutouts (``preprocess/labelled_cutouts.h5``), read from an existing run or
made by running a pipeline configuration up to its sample stage.
"""

from pathlib import Path

import numpy as np

from ..exceptions import ParameterError, SchemaError
from ..survey_constants import BANDS, PIXEL_SCALE_ARCSEC

__all__ = ["SPLITS", "COMPOSITE_CHANNELS", "prepare_sample", "read_split", "band_composite"]

SPLITS = ("train", "validation", "test")
#: names of the three channels of a band composite: blue, green, red
COMPOSITE_CHANNELS = "BGR"


def prepare_sample(sample_settings, out, *, progress=True):
    """Return the pipeline folder holding the sample, running the pipeline if needed.

    Parameters
    ----------
    sample_settings : dict
        ``run_dir`` (an existing pipeline output folder) or ``pipeline`` (a configuration run
        up to its sample stage into ``out/sample``; a finished run is not repeated).
    out : pathlib.Path
        The ablation output folder.
    progress : bool, optional
        Pipeline messages.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ParameterError
        If ``run_dir`` holds no sample.
    """
    if sample_settings.get("run_dir"):
        run_dir = Path(sample_settings["run_dir"])
    else:
        from ..pipeline import Pipeline

        run_dir = Path(out) / "sample"
        Pipeline(sample_settings["pipeline"], output_dir=run_dir, progress=progress).run(
            until="sample")
    for needed in ("sample/sample.fits", "preprocess/labelled_cutouts.h5"):
        if not (run_dir / needed).is_file():
            msg = (f"{str(run_dir)!r} holds no {needed}: give a pipeline output folder whose "
                   f"sample stage has run (with keep_cutouts = true, the default)")
            raise ParameterError(msg)
    return run_dir


def read_split(run_dir, split):
    """One part of the pipeline's sample with its cutouts (bands g, r, z in nanomaggies).

    Parameters
    ----------
    run_dir : path-like
        A pipeline output folder.
    split : str
        ``train``, ``validation`` or ``test``.

    Returns
    -------
    astropy.table.Table
        The rows of that split, with a ``cutout`` column (n, 3, S, S).
    """
    from ..io import read_table
    from ..pipeline import read_cutouts

    if split not in SPLITS:
        raise ParameterError(f"split must be one of {SPLITS}, got {split!r}")
    run_dir = Path(run_dir)
    sample = read_table(run_dir / "sample/sample.fits")
    part = sample[np.asarray(sample["split"]).astype(str) == split]
    part["cutout"] = read_cutouts(run_dir / "preprocess/labelled_cutouts.h5",
                                  np.asarray(part["cutout_row"]))
    part.meta["bands"] = BANDS
    part.meta.setdefault("pixel_scale", PIXEL_SCALE_ARCSEC)
    return part


def band_composite(table, bands):
    """The paper's three-channel image of one, two or three bands (§4.5), on flux images.

    One band is copied into all three channels; two bands go to (first, mean of both,
    second) as (blue, green, red); three bands keep their order. The published code built
    these from asinh-stretched colour images (so a "single band" still mixed all three) and
    ordered the pairs inconsistently; here the composite is made of the fluxes themselves,
    in the same order for every pair (the bluer band first, as g is in g, r, z).

    Parameters
    ----------
    table : astropy.table.Table
        With ``cutout`` (n, len(meta['bands']), S, S).
    bands : str
        Band letters present in ``table.meta['bands']``, e.g. ``"gz"``.

    Returns
    -------
    astropy.table.Table
        A copy whose ``cutout`` holds the composite, ``meta['bands'] = 'BGR'`` (the channel
        names) and ``meta['band_composite']`` saying what each channel holds.

    Raises
    ------
    ParameterError
        Unknown band, repeated band, or more than three bands.
    SchemaError
        No ``cutout`` column.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from gpm_astro.ablation.data import band_composite
    >>> t = Table({"cutout": np.arange(3.0).reshape(1, 3, 1, 1) + 1})
    >>> t.meta["bands"] = "grz"
    >>> c = band_composite(t, "gz")
    >>> c["cutout"][0, :, 0, 0].tolist(), c.meta["band_composite"]
    ([1.0, 2.0, 3.0], ['g', '(g+z)/2', 'z'])
    """
    if "cutout" not in table.colnames:
        raise SchemaError(f"band_composite needs a 'cutout' column; columns: {table.colnames}")
    source = str(table.meta.get("bands", "grz"))
    if (not isinstance(bands, str) or not 1 <= len(bands) <= 3 or len(set(bands)) != len(bands)
            or any(b not in source for b in bands)):
        msg = (f"bands must be 1-3 distinct letters of the table's bands {source!r}, "
               f"got {bands!r}")
        raise ParameterError(msg)
    images = np.asarray(np.ma.getdata(table["cutout"]), dtype=np.float32)
    planes = [images[:, source.index(b)] for b in bands]
    if len(bands) == 1:
        channels, names = [planes[0]] * 3, [bands] * 3
    elif len(bands) == 2:
        channels = [planes[0], 0.5 * (planes[0] + planes[1]), planes[1]]
        names = [bands[0], f"({bands[0]}+{bands[1]})/2", bands[1]]
    else:
        channels, names = planes, list(bands)
    out = table.copy(copy_data=False)
    out.remove_column("cutout")
    out["cutout"] = np.stack(channels, axis=1).astype(np.float32)
    out.meta = dict(table.meta, bands=COMPOSITE_CHANNELS, band_composite=names)
    return out
