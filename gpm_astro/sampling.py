"""Drawing the training sample and splitting it (paper section 2.2, METHOD.md section 4).

The paper draws 25,000 galaxies "uniformly based on the distribution of Z_true" and splits
them 5:3:2 into training, validation and test sets. Its sampling code was not published;
`uniform_in_z_sample` documents the method used here.
"""

import numpy as np

from .exceptions import ParameterError
from .tables import (missing_mask, record_step, require_columns, require_positive_int,
                     require_table)

__all__ = ["uniform_in_z_sample", "split_table", "equal_bin_allocation"]


def equal_bin_allocation(counts, n, rng):
    """Share ``n`` draws among bins as equally as their contents allow ("water filling").

    Every bin gets the same quota; a bin holding fewer rows than its quota gives all it has,
    and the shortfall is shared equally among the bins that still have rows, repeatedly, until
    ``n`` rows are allocated. When the quota does not divide evenly, the leftover single draws
    go to randomly chosen bins (drawn with ``rng``).

    Parameters
    ----------
    counts : array_like of int
        Rows available in each bin.
    n : int
        Total rows to draw; at most ``sum(counts)``.
    rng : numpy.random.Generator
        Source of randomness for the leftover draws.

    Returns
    -------
    numpy.ndarray of int
        Rows to draw from each bin; sums to ``n``, never exceeds ``counts``.

    Examples
    --------
    >>> import numpy as np
    >>> from gpm_astro.sampling import equal_bin_allocation
    >>> equal_bin_allocation([2, 50, 50, 50], 32, np.random.default_rng(0)).tolist()
    [2, 10, 10, 10]
    """
    counts = np.asarray(counts, dtype=np.int64)
    if n > counts.sum():
        msg = f"cannot draw {n!r} rows from bins holding {int(counts.sum())}"
        raise ParameterError(msg)
    allocation = np.zeros_like(counts)
    remaining = int(n)
    while remaining > 0:
        open_bins = np.flatnonzero(allocation < counts)
        quota = remaining // len(open_bins)
        if quota == 0:
            # fewer draws left than open bins: one more row to randomly chosen bins
            chosen = rng.choice(open_bins, size=remaining, replace=False)
            allocation[chosen] += 1
            break
        give = np.minimum(counts[open_bins] - allocation[open_bins], quota)
        allocation[open_bins] += give
        remaining -= int(give.sum())
    return allocation


def uniform_in_z_sample(table, n, *, column="oh_p50", n_bins=20, value_range=None, seed=0):
    """Draw ``n`` rows whose ``column`` values are as uniform as the table allows.

    Method: the valid values of ``column`` are split into ``n_bins`` equal-width bins over
    ``value_range`` (default: their minimum to maximum). Each bin contributes the same number
    of rows, ``n / n_bins``; a bin holding fewer rows contributes all of them and the shortfall
    is redistributed equally over the other bins (see `equal_bin_allocation`). Rows are drawn
    without replacement, at random within each bin. The result is flat in ``column`` where the
    table is rich enough and follows the table's own distribution in sparse tails.

    Parameters
    ----------
    table : astropy.table.Table
        The candidates (e.g. the 86,660 labelled cutouts that survive preprocessing).
    n : int
        Rows to draw (the paper: 25,000).
    column : str, optional
        The quantity to flatten; rows where it is masked, NaN, -9999 or -99 are never drawn.
    n_bins : int, optional
        Number of equal-width bins.
    value_range : (float, float), optional
        Bin range; rows outside it are never drawn.
    seed : int, optional
        Seed of the random generator; the same seed gives the same rows.

    Returns
    -------
    astropy.table.Table
        The drawn rows, in their input order. ``meta['gpm_astro']`` records the parameters and
        the per-bin counts available and drawn.

    Raises
    ------
    SchemaError
        If ``column`` is missing.
    ParameterError
        If ``n`` exceeds the usable rows, or ``n`` / ``n_bins`` / ``value_range`` are invalid.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from gpm_astro.sampling import uniform_in_z_sample
    >>> t = Table({"oh_p50": np.random.default_rng(1).normal(9.0, 0.2, 2000)})
    >>> len(uniform_in_z_sample(t, 500, n_bins=10, seed=3))
    500
    """
    require_table(table)
    require_columns(table, [column], "uniform_in_z_sample")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        msg = f"n must be a non-negative integer, got {n!r}"
        raise ParameterError(msg)
    require_positive_int(n_bins, "n_bins")
    usable = ~missing_mask(table[column])
    values = np.asarray(np.ma.getdata(table[column]), dtype=float)
    if value_range is None:
        if not usable.any():
            msg = f"column {column!r} holds no usable value to sample from"
            raise ParameterError(msg)
        low, high = float(values[usable].min()), float(values[usable].max())
    else:
        low, high = (float(v) for v in value_range)
        if not high > low:
            msg = f"value_range must be (low, high) with high > low, got {value_range!r}"
            raise ParameterError(msg)
        usable &= (values >= low) & (values <= high)
    n_usable = int(usable.sum())
    if n > n_usable:
        msg = (f"cannot draw n={n!r} rows: only {n_usable} rows have a usable {column!r} "
               f"in [{low}, {high}]")
        raise ParameterError(msg)

    edges = np.linspace(low, high, n_bins + 1)
    rows = np.flatnonzero(usable)
    bin_of_row = np.clip(np.searchsorted(edges, values[rows], side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(bin_of_row, minlength=n_bins)
    rng = np.random.default_rng(seed)
    allocation = equal_bin_allocation(counts, n, rng)
    chosen = [rng.choice(rows[bin_of_row == b], size=k, replace=False)
              for b, k in enumerate(allocation) if k > 0]
    chosen = np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=int)

    out = table[chosen]
    out.meta = _copy_meta(table.meta)
    record_step(out, "uniform_in_z_sample", n=n, column=column, n_bins=n_bins,
                value_range=[low, high], seed=seed, n_usable=n_usable,
                available_per_bin=counts.tolist(), drawn_per_bin=allocation.tolist())
    return out


def split_table(table, fractions=(5, 3, 2), *, seed=123):
    """Split a table at random into training, validation and test sets (paper: 5:3:2).

    Parameters
    ----------
    table : astropy.table.Table
        The sample to split.
    fractions : sequence of 3 positive numbers, optional
        Relative sizes of the training, validation and test sets; normalised to sum to 1.
    seed : int, optional
        Seed of the random permutation (the published code used 123).

    Returns
    -------
    train, validation, test : astropy.table.Table
        Disjoint subsets covering every row once, each in input order. Sizes are
        ``round(n * f_train)``, ``round(n * f_val)`` and the rest (25,000 rows give 12,500 /
        7,500 / 5,000). Each records the split in ``meta['gpm_astro']``.

    Raises
    ------
    ParameterError
        If ``fractions`` is not three positive numbers.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from gpm_astro.sampling import split_table
    >>> train, val, test = split_table(Table({"i": range(10)}))
    >>> len(train), len(val), len(test)
    (5, 3, 2)
    """
    require_table(table)
    try:
        weights = np.asarray(fractions, dtype=float)
    except (TypeError, ValueError):
        weights = None
    if weights is None or weights.shape != (3,) or not np.all(np.isfinite(weights)) \
            or np.any(weights <= 0):
        msg = f"fractions must be three positive numbers (train, validation, test), got " \
              f"{fractions!r}"
        raise ParameterError(msg)
    weights = weights / weights.sum()
    n = len(table)
    n_train = int(round(n * weights[0]))
    n_val = min(int(round(n * weights[1])), n - n_train)
    order = np.random.default_rng(seed).permutation(n)
    parts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    out = []
    for name, rows in zip(("train", "validation", "test"), parts):
        subset = table[np.sort(rows)]
        subset.meta = _copy_meta(table.meta)
        record_step(subset, "split_table", part=name, fractions=weights.tolist(), seed=seed,
                    n_rows=len(rows), n_total=n)
        out.append(subset)
    return tuple(out)


def _copy_meta(meta):
    import copy

    return copy.deepcopy(meta)
