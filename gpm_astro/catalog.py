"""Label-catalogue selection and sky crossmatch: the paper's first stage (§2.1).

`select_starforming` keeps the SDSS MPA-JHU rows the paper trains on; `crossmatch` attaches to
every label row its nearest Legacy Survey image within a radius.
"""

import copy
import warnings
from collections.abc import Iterable

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Column, MaskedColumn, Table

from .exceptions import EmptyResultWarning, ParameterError, SchemaError
from .tables import missing_mask, provenance, record_step, require_table, resolve_columns
from .units import in_degrees, known_unit

__all__ = ["select_starforming", "crossmatch", "MATCH_FLAGS"]

#: Values of the ``match_flag`` column written by `crossmatch`.
MATCH_FLAGS = ("ok", "no_match", "invalid_coordinates", "image_taken")
#: Columns `crossmatch` adds; a label table that already has one of them is refused.
MATCH_COLUMNS = ("separation", "matched", "match_flag")

#: The values a measurement can physically take, per numeric cut of `select_starforming`;
#: a value outside (e.g. ``oh_p50 = 1e30``) fails its cut and is counted as ``implausible``.
PLAUSIBLE_RANGES = {"z": (-0.1, 10.0), "snr": (-np.inf, 1.0e5), "metallicity": (6.0, 10.5)}
#: Units each cut accepts besides none (a redshift in km/s is refused, not compared with 0.002).
_CUT_UNITS = {"metallicity": (u.dex, u.dimensionless_unscaled)}


# --------------------------------------------------------------------------------------------
# select_starforming
# --------------------------------------------------------------------------------------------

def select_starforming(table, *, spectrotype="GALAXY", reliable=1, z_warning=0, bptclass=1,
                       z_min=0.002, snr_min=5.0, require_metallicity=True,
                       spectrotype_column="spectrotype", reliable_column="reliable",
                       z_warning_column="z_warning", bptclass_column="bptclass",
                       z_column="z", snr_column="snmedian_r", metallicity_column="oh_p50"):
    """Keep the star-forming galaxies with a reliable metallicity (paper §2.1).

    The cuts run in this order; a row must pass all of them:

    ============  ======================  =====================================
    cut           column (keyword)        rule (keyword, paper default)
    ============  ======================  =====================================
    spectrotype   ``spectrotype_column``  value in ``spectrotype`` ("GALAXY")
    reliable      ``reliable_column``     value in ``reliable`` (1)
    z_warning     ``z_warning_column``    value in ``z_warning`` (0)
    bptclass      ``bptclass_column``     value in ``bptclass`` (1, star-forming)
    z             ``z_column``            value >= ``z_min`` (0.002)
    snr           ``snr_column``          value >= ``snr_min`` (5, r band)
    metallicity   ``metallicity_column``  value present (``require_metallicity``)
    ============  ======================  =====================================

    Masked values, NaN and the sentinels -9999 and -99 in a numeric column count as missing,
    and a missing value fails its cut. String columns are compared after stripping blanks
    (SkyServer pads them); bytes are decoded as ASCII first. Comparisons are case-sensitive.

    Parameters
    ----------
    table : `~astropy.table.Table`
        SDSS MPA-JHU rows, with SkyServer's column names in any case.
    spectrotype : str or iterable of str or None, optional
        Accepted spectrum classes. ``None`` skips the cut (also for the other cuts below).
    reliable, z_warning, bptclass : int or iterable of int or None, optional
        Accepted values of the flag columns. ``bptclass=(1, 2)`` also keeps the low-S/N
        star-forming class.
    z_min : float or None, optional
        Smallest redshift kept (excludes Milky Way objects).
    snr_min : float or None, optional
        Smallest median r-band signal-to-noise per pixel kept.
    require_metallicity : bool, optional
        Remove rows whose metallicity column is missing.
    spectrotype_column, reliable_column, z_warning_column, bptclass_column, z_column, \
snr_column, metallicity_column : str, optional
        Names of the columns the cuts read, found ignoring case (SkyServer's ``snMedian_r``
        or CasJobs' ``BPTCLASS`` serve for ``snmedian_r`` and ``bptclass``; two columns that
        differ only in case are a `SchemaError`). The output keeps the table's own names.

    Returns
    -------
    `~astropy.table.Table`
        The kept rows in input order, with the input's columns and meta. For each cut, in order,
        ``meta["gpm_astro"]["select_starforming"]`` holds a dict with ``cut``, ``column``,
        ``rule``, ``removed``, ``missing`` (how many of the removed rows had no value),
        ``implausible`` (how many had a value no galaxy can have, see `PLAUSIBLE_RANGES`:
        a redshift outside [-0.1, 10], a median S/N above 1e5, a metallicity outside
        [6, 10.5]) and ``remaining``.

    Raises
    ------
    TypeError
        If ``table`` is not an astropy Table.
    SchemaError
        If a column a cut needs is absent (the message lists the columns present) or matches
        two columns that differ only in case, is not one-dimensional, is boolean (a bool
        ``bptclass`` is not class 1), has a unit (a redshift in km/s is refused; the
        metallicity may be in dex), or a numeric cut meets a string column; if
        ``meta['gpm_astro']`` is not the package's provenance dict.
    ParameterError
        If a threshold has the wrong type or is not finite.

    Warns
    -----
    EmptyResultWarning
        If no row survives (the empty table keeps every column).

    Examples
    --------
    >>> from astropy.table import Table
    >>> from gpm_astro import select_starforming
    >>> labels = Table({
    ...     "spectrotype": ["GALAXY  ", "QSO", "GALAXY", "GALAXY"],
    ...     "reliable": [1, 1, 1, 1], "z_warning": [0, 0, 0, 0],
    ...     "bptclass": [1, 1, 4, 1], "z": [0.05, 0.8, 0.1, 0.07],
    ...     "snmedian_r": [12.0, 30.0, 9.0, 7.5], "oh_p50": [8.9, 8.7, 9.1, -9999.0]})
    >>> kept = select_starforming(labels)
    >>> len(kept)
    1
    >>> [(c["cut"], c["removed"], c["remaining"])
    ...  for c in kept.meta["gpm_astro"]["select_starforming"]]  # doctest: +NORMALIZE_WHITESPACE
    [('spectrotype', 1, 3), ('reliable', 0, 3), ('z_warning', 0, 3), ('bptclass', 1, 2),
     ('z', 0, 2), ('snr', 0, 2), ('metallicity', 1, 1)]
    """
    require_table(table)
    cuts = [
        ("spectrotype", spectrotype_column, _allowed_values("spectrotype", spectrotype, str)),
        ("reliable", reliable_column, _allowed_values("reliable", reliable, int)),
        ("z_warning", z_warning_column, _allowed_values("z_warning", z_warning, int)),
        ("bptclass", bptclass_column, _allowed_values("bptclass", bptclass, int)),
        ("z", z_column, _threshold("z_min", z_min)),
        ("snr", snr_column, _threshold("snr_min", snr_min)),
        ("metallicity", metallicity_column, _flag("require_metallicity", require_metallicity)),
    ]
    active = [(name, column, rule) for name, column, rule in cuts if rule is not None]
    for name, column, _ in cuts:
        if not isinstance(column, str):
            msg = f"the column name for the {name} cut must be a str, got {column!r}"
            raise ParameterError(msg)
    # archives spell columns their own way (snMedian_r, BPTCLASS): found ignoring case
    actual = resolve_columns(table, [column for _, column, _ in active],
                             what="select_starforming")
    provenance(copy.copy(table.meta))  # a broken provenance record fails before any work

    keep = np.ones(len(table), dtype=bool)
    report = []
    for name, column, rule in cuts:
        if rule is None:
            report.append({"cut": name, "column": column, "rule": "skipped", "removed": 0,
                           "missing": 0, "implausible": 0, "remaining": int(keep.sum())})
            continue
        column = actual[column]
        passes, missing, implausible, text = _apply_cut(name, table[column], rule)
        removed_now = keep & ~passes
        keep &= passes
        report.append({"cut": name, "column": column, "rule": text,
                       "removed": int(removed_now.sum()),
                       "missing": int((removed_now & missing).sum()),
                       "implausible": int((removed_now & implausible).sum()),
                       "remaining": int(keep.sum())})

    out = table[keep]
    out.meta = copy.deepcopy(table.meta)
    provenance(out.meta)["select_starforming"] = report
    record_step(out, "select_starforming", n_input=len(table), n_output=len(out),
                spectrotype=spectrotype, reliable=reliable, z_warning=z_warning,
                bptclass=bptclass, z_min=z_min, snr_min=snr_min,
                require_metallicity=require_metallicity,
                columns={name: actual.get(column, column) for name, column, _ in cuts})
    if len(out) == 0:
        warnings.warn(f"select_starforming kept none of the {len(table)} input rows; "
                      f"per-cut counts: {[(c['cut'], c['removed']) for c in report]}",
                      EmptyResultWarning, stacklevel=2)
    return out


def _allowed_values(name, value, kind):
    """Normalise an equality cut to a tuple of accepted values (None: cut skipped)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        values = (value,)
    else:
        values = tuple(value)
    if not values:
        msg = f"{name} must name at least one accepted value, got {value!r}"
        raise ParameterError(msg)
    checked = []
    for item in values:
        if kind is str:
            if isinstance(item, bytes):
                item = item.decode("ascii")
            if not isinstance(item, str):
                msg = f"{name} must be a str or an iterable of str, got {value!r}"
                raise ParameterError(msg)
            checked.append(item.strip())
        else:
            if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
                msg = f"{name} must be an int or an iterable of int, got {value!r}"
                raise ParameterError(msg)
            checked.append(int(item))
    return ("in", tuple(checked))


def _threshold(name, value):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        msg = f"{name} must be a real number or None, got {value!r}"
        raise ParameterError(msg)
    if not np.isfinite(value):
        msg = f"{name} must be finite, got {value!r}"
        raise ParameterError(msg)
    return (">=", float(value))


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        msg = f"{name} must be True or False, got {value!r}"
        raise ParameterError(msg)
    return ("present", None) if value else None


def _apply_cut(name, column, rule):
    """Return (passes, missing, implausible, rule text) for one cut on one column."""
    op, target = rule
    data = np.ma.asanyarray(column.value if isinstance(column, u.Quantity) else column)
    values = np.ma.getdata(data)
    kind = values.dtype.kind
    if data.ndim != 1:
        msg = (f"the {name} cut needs a one-dimensional column, but column {column.info.name!r} "
               f"has shape {data.shape}")
        raise SchemaError(msg)
    if kind == "b":
        msg = (f"the {name} cut cannot read the boolean column {column.info.name!r} (True is not "
               f"a {name} value); give the numbers or strings it holds")
        raise SchemaError(msg)
    _check_cut_unit(name, column)
    none = np.zeros(len(values), dtype=bool)
    if len(values) == 0:
        # no value to compare: a text file with no rows (SkyServer's answer to a query that
        # matched nothing) gives every column a made-up dtype, which says nothing
        return none, none, none, _rule_text(name, op, target)
    if kind in "USO":
        if op != "in" or not isinstance(target[0], str):
            msg = (f"the {name} cut needs a numeric column, but column {column.name!r} holds "
                   f"strings (dtype {values.dtype}), e.g. {_first_value(column)!r}")
            raise SchemaError(msg)
        strings = _stripped_strings(values)
        missing = np.ma.getmaskarray(data) | (strings == "")
        passes = np.isin(strings, list(target)) & ~missing
        return passes, missing, none, f"in {list(target)}"
    if kind not in "biuf":
        msg = (f"the {name} cut cannot compare column {column.name!r} of dtype {values.dtype}")
        raise SchemaError(msg)
    if op == "in" and isinstance(target[0], str):
        msg = (f"the {name} cut compares strings, but column {column.name!r} is numeric "
               f"(dtype {values.dtype}), e.g. {_first_value(column)!r}")
        raise SchemaError(msg)
    missing = missing_mask(data)
    implausible = none
    with np.errstate(invalid="ignore"):
        if op == "in":
            passes = np.isin(values, list(target))
        elif op == ">=":
            passes = values >= target
        else:
            passes = np.ones(len(values), dtype=bool)
        if name in PLAUSIBLE_RANGES:
            low, high = PLAUSIBLE_RANGES[name]
            implausible = ~missing & ((values < low) | (values > high))
    return passes & ~missing & ~implausible, missing, implausible, _rule_text(name, op, target)


def _rule_text(name, op, target):
    """How a cut's rule reads in its record, e.g. ``>= 0.002, plausible in [-0.1, 10.0]``."""
    text = {"in": lambda: f"in {list(target)}", ">=": lambda: f">= {target}",
            "present": lambda: "not missing"}[op]()
    if name in PLAUSIBLE_RANGES:
        low, high = PLAUSIBLE_RANGES[name]
        text += f", plausible in [{low}, {high}]"
    return text


def _check_cut_unit(name, column):
    """SchemaError when a cut's column has a unit the cut cannot compare with its rule."""
    unit = known_unit(getattr(column, "unit", None))  # a VOTable's dex is astropy's dex
    if unit is None or unit == u.dimensionless_unscaled:
        return
    if any(unit == accepted for accepted in _CUT_UNITS.get(name, ())):
        return
    if name == "z" and unit.is_equivalent(u.km / u.s):
        msg = (f"the z cut needs a redshift (no unit), but column {column.info.name!r} is a "
               f"velocity in {unit}; convert it (z = v / c) or give the redshift column")
    else:
        msg = (f"the {name} cut compares plain numbers, but column {column.info.name!r} has unit "
               f"{unit}; give the column without a unit (or in the unit the cut expects)")
    raise SchemaError(msg)


def _stripped_strings(values):
    if values.dtype.kind == "S":
        values = np.char.decode(values, "ascii", errors="replace")
    elif values.dtype.kind == "O":
        values = np.array([v.decode("ascii", errors="replace") if isinstance(v, bytes)
                           else ("" if v is None else str(v)) for v in values], dtype=str)
    return np.char.strip(values.astype(str))


def _first_value(column):
    return column[0] if len(column) else None


# --------------------------------------------------------------------------------------------
# crossmatch
# --------------------------------------------------------------------------------------------

def crossmatch(labels, images, *, radius=1.0 * u.arcsec, one_to_one=False, ra_column="ra",
               dec_column="dec", image_ra_column="ra", image_dec_column="dec", label_id=None,
               image_id=None, suffix="_image"):
    """Attach to every label row its nearest image-catalogue row on the sky (paper §2.1).

    A left join: every row of ``labels`` is kept, in order; the columns of ``images`` are
    appended, masked where no image lies within ``radius``. The nearest neighbour comes from
    `astropy.coordinates.SkyCoord.match_to_catalog_sky`, so RA wrap-around at 0/360 deg and the
    poles are handled exactly. Multi-dimensional image columns (the ``cutout`` column,
    (n, 3, 152, 152)) come along.

    Parameters
    ----------
    labels : `~astropy.table.Table`
        The label catalogue, e.g. the output of `select_starforming`.
    images : `~astropy.table.Table`
        The image catalogue (Legacy Survey rows, optionally with ``cutout``).
    radius : `~astropy.units.Quantity` or float, optional
        Largest accepted separation; a plain number is in arcsec. Default 1 arcsec.
    one_to_one : bool, optional
        If True, an image claimed by several labels stays with the closest one (the first in
        label order on a tie); the others become unmatched with ``match_flag="image_taken"``.
        They are not re-matched to their second-nearest image. If False (default), labels
        match independently and two labels may share an image.
    ra_column, dec_column : str, optional
        Coordinate columns of ``labels``, found ignoring case (as are all column names given
        here; two columns that differ only in case are a `SchemaError`).
    image_ra_column, image_dec_column : str, optional
        Coordinate columns of ``images``.
    label_id, image_id : str or sequence of str, optional
        Columns that identify a row (e.g. ``"specobjid"``, ``("release", "brickid",
        "objid")``). When given, a duplicated, masked or NaN identifier is an error. When not
        given, duplicated rows are matched independently (and in one-to-one mode the first of
        two duplicated labels keeps the image).
    suffix : str, optional
        Appended to the name of an image column that clashes (ignoring case) with a label
        column (or with an output column ``separation``, ``matched``, ``match_flag``), e.g.
        ``ra`` -> ``ra_image``.

    Returns
    -------
    `~astropy.table.Table`
        ``len(labels)`` rows in label order: the label columns, the image columns (masked
        columns, masked where unmatched), ``separation`` (arcsec, masked where unmatched),
        ``matched`` (bool) and ``match_flag``: ``"ok"``, ``"no_match"`` (nothing within
        ``radius``), ``"invalid_coordinates"`` (masked, NaN, a missing-value sentinel -9999
        or -99, \\|ra\\| > 360 or \\|dec\\| > 90 in the label row) or ``"image_taken"``
        (one-to-one mode). Image rows with invalid coordinates are never
        matched. ``meta`` is the labels' meta plus the images' keys it lacks (e.g. ``bands``,
        ``pixel_scale``), with the step and its counts recorded.

    Raises
    ------
    TypeError
        If ``labels`` or ``images`` is not an astropy Table.
    SchemaError
        If a coordinate or id column is missing, not numeric, or has a non-angle unit; if an id
        is duplicated, masked or NaN; if a suffixed name still clashes; if ``labels`` already
        has a column ``separation``, ``matched`` or ``match_flag`` (never overwritten: rename
        it first).
    ParameterError
        If ``radius`` is not a positive finite angle or an option has the wrong type.

    Warns
    -----
    EmptyResultWarning
        If ``labels`` is empty (the empty result has the full schema).

    Examples
    --------
    >>> import astropy.units as u
    >>> from astropy.table import Table
    >>> from gpm_astro import crossmatch
    >>> labels = Table({"specobjid": [1, 2, 3], "ra": [359.9999, 10.0, 200.0],
    ...                 "dec": [0.0, -89.99999, 5.0]})
    >>> images = Table({"objid": [7, 8], "ra": [0.0001, 190.0],
    ...                 "dec": [0.0, -89.99999]}, units={"ra": u.deg, "dec": u.deg})
    >>> out = crossmatch(labels, images, radius=1 * u.arcsec)
    >>> out["specobjid", "objid", "matched", "match_flag"].pprint()
    specobjid objid matched match_flag
    --------- ----- ------- ----------
            1     7    True         ok
            2     8    True         ok
            3    --   False   no_match
    >>> print(f"{out['separation'][0]:.3f}")
    0.720
    """
    require_table(labels, "labels")
    require_table(images, "images")
    radius = _match_radius(radius)
    if not isinstance(one_to_one, (bool, np.bool_)):
        msg = f"one_to_one must be True or False, got {one_to_one!r}"
        raise ParameterError(msg)
    if not isinstance(suffix, str) or not suffix:
        msg = f"suffix must be a non-empty str, got {suffix!r}"
        raise ParameterError(msg)
    # found ignoring case (SkyServer's RA / DEC, specObjID); the output keeps the tables' names
    label_names = resolve_columns(labels, [ra_column, dec_column], what="crossmatch (labels)")
    image_names = resolve_columns(images, [image_ra_column, image_dec_column],
                                  what="crossmatch (images)")
    ra_column, dec_column = label_names[ra_column], label_names[dec_column]
    image_ra_column = image_names[image_ra_column]
    image_dec_column = image_names[image_dec_column]
    label_lower = {name.lower() for name in labels.colnames}
    taken_names = [name for name in MATCH_COLUMNS if name.lower() in label_lower]
    if taken_names:
        msg = (f"the label table already has column(s) {taken_names} (compared ignoring case), "
               f"which crossmatch writes; rename them first (e.g. "
               f"labels.rename_column({taken_names[0]!r}, {taken_names[0] + '_label'!r}))")
        raise SchemaError(msg)
    provenance(copy.copy(labels.meta))
    image_history = provenance(copy.copy(images.meta)).get("steps", [])
    _check_unique_ids(labels, label_id, "labels")
    _check_unique_ids(images, image_id, "images")

    label_ra, label_dec, label_ok = _coordinates(labels, ra_column, dec_column, "labels")
    image_ra, image_dec, image_ok = _coordinates(images, image_ra_column, image_dec_column,
                                                 "images")
    names = _output_names(labels, images, suffix)

    n_labels = len(labels)
    index = np.zeros(n_labels, dtype=np.int64)
    separation = np.full(n_labels, np.nan)
    flag = np.full(n_labels, "invalid_coordinates", dtype="<U19")
    flag[label_ok] = "no_match"
    valid_images = np.flatnonzero(image_ok)
    if label_ok.any() and len(valid_images):
        catalog = SkyCoord(image_ra[valid_images] * u.deg, image_dec[valid_images] * u.deg)
        targets = SkyCoord(label_ra[label_ok] * u.deg, label_dec[label_ok] * u.deg)
        nearest, sep2d, _ = targets.match_to_catalog_sky(catalog)
        rows = np.flatnonzero(label_ok)
        index[rows] = valid_images[nearest]
        separation[rows] = sep2d.to_value(u.arcsec)
        within = rows[separation[rows] <= radius.to_value(u.arcsec)]
        flag[within] = "ok"
        if one_to_one:
            _keep_closest_claim(index, separation, flag)
    matched = flag == "ok"

    out = Table(labels, copy=True)
    out.meta = copy.deepcopy(labels.meta)
    taken = images[index] if len(images) else _empty_rows_like(images, n_labels)
    for name in images.colnames:
        out[names[name]] = _masked(taken[name], ~matched)
    out["separation"] = MaskedColumn(np.where(matched, separation, 0.0), mask=~matched,
                                     unit=u.arcsec,
                                     description="angular distance to the matched image")
    out["matched"] = Column(matched, description=f"an image lies within {radius}")
    out["match_flag"] = Column(flag, description="ok or the reason there is no match")

    for key, value in images.meta.items():
        if key not in out.meta:
            out.meta[key] = copy.deepcopy(value)
    counts = {flag_name: int((flag == flag_name).sum()) for flag_name in MATCH_FLAGS}
    record_step(out, "crossmatch", radius=radius, one_to_one=bool(one_to_one),
                ra_column=ra_column, dec_column=dec_column, image_ra_column=image_ra_column,
                image_dec_column=image_dec_column, n_labels=n_labels, n_images=len(images),
                n_images_invalid=int((~image_ok).sum()), counts=counts,
                image_steps=image_history)
    if n_labels == 0:
        warnings.warn("crossmatch got an empty label table; the result is empty",
                      EmptyResultWarning, stacklevel=2)
    return out


def _match_radius(radius):
    if isinstance(radius, (bool, np.bool_)):
        msg = f"radius must be a positive angle, got {radius!r}"
        raise ParameterError(msg)
    if isinstance(radius, (int, float, np.integer, np.floating)):
        radius = float(radius) * u.arcsec
    if not isinstance(radius, u.Quantity) or not radius.isscalar:
        msg = f"radius must be a positive angle (e.g. 1 * u.arcsec), got {radius!r}"
        raise ParameterError(msg)
    if not radius.unit.is_equivalent(u.deg):
        msg = f"radius must be an angle, got {radius!r} with unit {radius.unit}"
        raise ParameterError(msg)
    if not (np.isfinite(radius.value) and radius.value > 0):
        msg = f"radius must be a positive finite angle, got {radius!r}"
        raise ParameterError(msg)
    return radius.to(u.arcsec)


def _coordinates(table, ra_column, dec_column, what):
    """Return (ra_deg, dec_deg, valid) with invalid rows marked: masked, NaN, a missing-value
    sentinel (-9999, -99: an RA of -9999 is no position, not RA 81 deg), |ra| > 360 or
    |dec| > 90."""
    arrays = []
    valid = np.ones(len(table), dtype=bool)
    for name in (ra_column, dec_column):
        column = table[name]
        unit = getattr(column, "unit", None)
        data = np.ma.asanyarray(column.value if isinstance(column, u.Quantity) else column)
        if data.ndim != 1:
            msg = f"{what} column {name!r} must be one-dimensional, got shape {data.shape}"
            raise SchemaError(msg)
        if data.dtype.kind not in "iuf":
            msg = (f"{what} column {name!r} must hold numbers (degrees or an angle unit), got "
                   f"dtype {data.dtype}, e.g. {_first_value(column)!r}")
            raise SchemaError(msg)
        # a plain ndarray: a MaskedColumn's data keeps its unit, and data * unit is deg2
        values = np.array(np.ma.getdata(data), dtype=np.float64, subok=False)
        valid &= ~missing_mask(data)  # the sentinels as the catalogue writes them
        values = in_degrees(values, unit, f"{what} column {name!r}")
        valid &= np.isfinite(values)
        arrays.append(values)
    ra, dec = arrays
    with np.errstate(invalid="ignore"):
        valid &= (np.abs(ra) <= 360.0) & (np.abs(dec) <= 90.0)
    return ra, dec, valid


def _check_unique_ids(table, id_columns, what):
    if id_columns is None:
        return
    names = [id_columns] if isinstance(id_columns, str) else list(id_columns)
    if not names or not all(isinstance(n, str) for n in names):
        msg = f"the {what} id must be a column name or a sequence of names, got {id_columns!r}"
        raise ParameterError(msg)
    names = list(resolve_columns(table, names, what=f"crossmatch ({what} id)").values())
    for name in names:
        # a masked or NaN id identifies nothing; a masked one's hidden value must not be
        # called a duplicate, and NaN never equals NaN, so NaN ids would pass as unique
        data = np.ma.asanyarray(table[name])
        absent = np.ma.getmaskarray(data).copy()
        if np.ma.getdata(data).dtype.kind in "fc":
            absent |= np.isnan(np.ma.getdata(data))
        masked = np.flatnonzero(absent)
        if masked.size:
            msg = (f"{what} id column {name!r} is masked or NaN in {masked.size} row(s), e.g. "
                   f"row(s) "
                   f"{masked[:5].tolist()}: an id must be present to check that it is unique; "
                   f"remove those rows or fill the ids first")
            raise SchemaError(msg)
    if len(table) < 2:
        return
    keys = table[names].copy(copy_data=True)
    keys.sort(names)
    key_values = np.asarray(keys.as_array())
    repeated = np.flatnonzero(key_values[1:] == key_values[:-1])
    if len(repeated):
        examples = [e[0] if len(e) == 1 else e for e in key_values[repeated[:5]].tolist()]
        msg = (f"{what} id {names} is duplicated ({len(repeated)} repeated rows), e.g. "
               f"{examples}")
        raise SchemaError(msg)


def _output_names(labels, images, suffix):
    # compared ignoring case, so the output never holds two names that differ only in case
    taken = {n.lower() for n in labels.colnames} | {"separation", "matched", "match_flag"}
    names = {}
    for name in images.colnames:
        new = name + suffix if name.lower() in taken else name
        if new.lower() in taken or new.lower() in {v.lower() for v in names.values()}:
            msg = (f"image column {name!r} clashes with a label or output column, and "
                   f"{new!r} clashes too; rename one of them or pass another suffix")
            raise SchemaError(msg)
        names[name] = new
    return names


def _keep_closest_claim(index, separation, flag):
    """In place: of the labels matched to one image, only the closest stays matched."""
    claimed = np.flatnonzero(flag == "ok")
    order = claimed[np.lexsort((claimed, separation[claimed], index[claimed]))]
    first = np.ones(len(order), dtype=bool)
    first[1:] = index[order][1:] != index[order][:-1]
    flag[order[~first]] = "image_taken"


def _empty_rows_like(images, n_rows):
    """An all-zero table with the images' schema and ``n_rows`` rows (for an empty catalogue)."""
    columns = []
    for name in images.colnames:
        column = images[name]
        data = np.zeros((n_rows,) + column.shape[1:], dtype=column.dtype)
        columns.append(Column(data, name=name, unit=getattr(column, "unit", None),
                              description=getattr(column.info, "description", None)))
    return Table(columns)


def _masked(column, mask):
    """The column as a MaskedColumn, masked on the rows where ``mask`` is True."""
    if isinstance(column, u.Quantity):
        column = Column(column.value, unit=column.unit)
    if not isinstance(column, Column):
        msg = (f"image column {column.info.name!r} is a {type(column).__name__} mixin column, "
               f"which crossmatch cannot mask; convert it to plain columns first")
        raise SchemaError(msg)
    data = np.asarray(column)  # ``column`` is a fresh copy (images[index]): safe to edit
    data[mask] = np.zeros((), dtype=data.dtype)
    shape_mask = np.broadcast_to(mask.reshape((-1,) + (1,) * (column.ndim - 1)), column.shape)
    old_mask = np.ma.getmaskarray(np.ma.asanyarray(column))
    return MaskedColumn(data, mask=shape_mask | old_mask, unit=column.unit,
                        description=column.info.description, format=column.info.format)
