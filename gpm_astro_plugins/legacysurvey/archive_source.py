"""Data source ``legacysurvey_archive``: galaxies from ssl-legacysurvey HDF5 files, lazily.

Selection runs in two passes so that no image is read for a galaxy that is not wanted:
first the small ``source_type`` / ``ra`` / ``dec`` datasets are scanned in chunks to find the
wanted row numbers, then only those rows are read, ``chunk_size`` at a time, through
`gpm_astro_plugins.legacysurvey.archive.iter_archive`. A whole file is never loaded.
"""

import numbers

import astropy.units as u
import numpy as np
from astropy.table import Column, vstack

from gpm_astro.base import DataSource
from gpm_astro.exceptions import ParameterError
from gpm_astro.tables import record_step, warn_empty

from .archive import SOURCE_TYPE_CODES, archive_files, archive_length, iter_archive
from .archive_reader import open_archive_file

__all__ = ["LegacySurveyArchive", "TRACTOR_TYPES"]

#: Tractor morphological types of Legacy Survey DR9
TRACTOR_TYPES = ("PSF", "REX", "EXP", "DEV", "SER", "DUP")
#: rows read per step of the selection scan (three small datasets only)
SCAN_CHUNK = 200_000
#: cost of reading one scattered row, in contiguous rows (h5py; see _read_selected)
SCATTER_COST = 32
#: small datasets whose checksum identifies an archive's galaxies (see `fingerprint`)
FINGERPRINT_DATASETS = ("ra", "dec")
#: rows of each fingerprinted block (see `LegacySurveyArchive.fingerprint`)
FINGERPRINT_BLOCK = 10_000


def _fingerprint_blocks(n_rows):
    """(start, stop) of the rows `LegacySurveyArchive.fingerprint` hashes in a file."""
    if n_rows <= 3 * FINGERPRINT_BLOCK:
        return [(0, n_rows)]
    middle = (n_rows - FINGERPRINT_BLOCK) // 2
    return [(0, FINGERPRINT_BLOCK), (middle, middle + FINGERPRINT_BLOCK),
            (n_rows - FINGERPRINT_BLOCK, n_rows)]


def _normalise_source_types(source_type, codes):
    """Turn str / bytes / int codes (or a sequence of them) into a set of Tractor names."""
    if source_type is None:
        return None
    values = ([source_type] if isinstance(source_type, (str, bytes, numbers.Integral))
              else list(source_type))
    if not values:
        msg = f"source_type must name at least one type, got {source_type!r}"
        raise ParameterError(msg)
    names = set()
    for value in values:
        if isinstance(value, (bool, np.bool_)):
            msg = f"source_type must be str, bytes or an integer code, got {value!r}"
            raise ParameterError(msg)
        if isinstance(value, numbers.Integral):
            if int(value) not in codes:
                msg = f"source_type code {value!r} is not one of {codes}"
                raise ParameterError(msg)
            names.add(codes[int(value)])
            continue
        if isinstance(value, bytes):
            value = value.decode("ascii", errors="replace")
        if not isinstance(value, str) or value.strip().upper() not in TRACTOR_TYPES:
            msg = f"source_type must be one of {TRACTOR_TYPES} (or their codes), got {value!r}"
            raise ParameterError(msg)
        names.add(value.strip().upper())
    return names


def _degrees(value, name):
    if isinstance(value, u.Quantity):
        value = value.to_value(u.deg)
    try:
        value = float(value)
    except (TypeError, ValueError):
        msg = f"{name} must be a number of degrees or an angle Quantity, got {value!r}"
        raise ParameterError(msg) from None
    if not np.isfinite(value):
        msg = f"{name} must be finite, got {value!r}"
        raise ParameterError(msg)
    return value


def _cone(ra, dec, radius):
    given = [x is not None for x in (ra, dec, radius)]
    if not any(given):
        return None
    if not all(given):
        msg = f"a cone needs ra, dec and radius together, got ra={ra!r}, dec={dec!r}, " \
              f"radius={radius!r}"
        raise ParameterError(msg)
    ra, dec, radius = _degrees(ra, "ra"), _degrees(dec, "dec"), _degrees(radius, "radius")
    if abs(dec) > 90:
        msg = f"dec must be in [-90, 90] deg, got {dec!r}"
        raise ParameterError(msg)
    if not 0 < radius <= 180:
        msg = f"radius must be in (0, 180] deg, got {radius!r}"
        raise ParameterError(msg)
    return ra % 360.0, dec, radius


def _separation_deg(ra1, dec1, ra2, dec2):
    """Great-circle distance (haversine), degrees; arrays broadcast."""
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    hav = (np.sin((dec2 - dec1) / 2) ** 2
           + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2)
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(hav, 0, 1))))


class LegacySurveyArchive(DataSource):
    """Cutouts and catalogue columns from ssl-legacysurvey HDF5 archive files.

    Parameters
    ----------
    path : str or path-like
        One archive file or a directory of them (``images/{south,north}/...``, searched
        recursively; rows are numbered across files in the archive's order).
    chunk_size : int
        Rows per yielded Table.
    source_type_codes : dict, optional
        Integer code -> Tractor type used to read a user's integer ``source_type``; default
        `gpm_astro_plugins.legacysurvey.archive.SOURCE_TYPE_CODES`.
    progress : bool
        Show a progress bar while reading.

    Examples
    --------
    >>> import tempfile
    >>> from gpm_astro_plugins.mock import MockSky
    >>> from gpm_astro_plugins.legacysurvey.archive import write_archive
    >>> data = MockSky(n_galaxies=6, seed=3).generate()
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_archive(data.images, tmp)
    ...     table = LegacySurveyArchive(path=tmp).query(rows=[1, 4])
    >>> table["archive_row"].tolist(), table["cutout"].shape
    ([1, 4], (2, 3, 152, 152))
    """

    name = "legacysurvey_archive"
    provides = ("catalog", "cutouts")
    file_patterns = ("images_npix*_*_*.h5",)

    @classmethod
    def read_file(cls, path):
        """The whole archive file as one Table, cutouts included."""
        return cls(path=path).query()

    def __init__(self, *, path=None, chunk_size=1000, source_type_codes=None, progress=False):
        self.path = path
        self.chunk_size = chunk_size
        self.source_type_codes = source_type_codes
        self.progress = progress

    def _check(self, chunk_size):
        if self.path is None:
            msg = "legacysurvey_archive needs path= (an archive file or directory), got None"
            raise ParameterError(msg)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or \
                chunk_size <= 0:
            msg = f"chunk_size must be a positive integer, got {chunk_size!r}"
            raise ParameterError(msg)

    def select_rows(self, *, source_type=None, rows=None, ra=None, dec=None, radius=None):
        """Return the archive row numbers (increasing) that match every criterion.

        Reads only ``source_type``, ``ra`` and ``dec``, in chunks of `SCAN_CHUNK` rows.

        Parameters
        ----------
        source_type : str, bytes, int or sequence of them, optional
            Tractor types to keep (``"EXP"``, ``b"EXP"`` or its integer code).
        rows : slice or increasing sequence of int, optional
            Candidate rows (numbered from 0 across the files).
        ra, dec, radius : float (deg) or angle Quantity, optional
            Keep galaxies within ``radius`` of (ra, dec).

        Returns
        -------
        numpy.ndarray of int64, or None when no criterion is given (every row).

        Raises
        ------
        ParameterError
            An unknown type or code, a partial or invalid cone, bad ``rows``, or a type
            asked of an archive without a ``source_type`` column.
        """
        self._check(self.chunk_size)
        codes = SOURCE_TYPE_CODES if self.source_type_codes is None else self.source_type_codes
        types = _normalise_source_types(source_type, codes)
        cone = _cone(ra, dec, radius)
        if types is None and cone is None:
            return None if rows is None else self._candidates(rows)
        columns = (["source_type"] if types is not None else []) + \
                  (["ra", "dec"] if cone is not None else [])
        if types is not None:
            self._require_source_type()
        candidates = None if rows is None else self._candidates(rows)
        kept, seen = [], 0
        for chunk in iter_archive(self.path, chunk_size=SCAN_CHUNK, rows=candidates,
                                  columns=columns, cutouts=False):
            index = (np.arange(seen, seen + len(chunk)) if candidates is None
                     else candidates[seen:seen + len(chunk)])
            seen += len(chunk)
            keep = np.ones(len(chunk), bool)
            if types is not None:
                keep &= np.isin(np.asarray(chunk["source_type"], dtype=str), sorted(types))
            if cone is not None:
                keep &= _separation_deg(cone[0], cone[1], np.asarray(chunk["ra"], float),
                                        np.asarray(chunk["dec"], float)) <= cone[2]
            kept.append(index[keep])
        return np.concatenate(kept).astype(np.int64) if kept else np.zeros(0, np.int64)

    def _require_source_type(self):
        for path in archive_files(self.path):
            with open_archive_file(path) as handle:
                if "source_type" not in handle:
                    msg = (f"{str(path)!r} has no 'source_type' column (cutouts fetched from the "
                           f"Legacy Survey service carry none), so rows cannot be selected by "
                           f"Tractor type; select none (source_type=None, `--source-type all` "
                           f"on the command line) to take every row")
                    raise ParameterError(msg)

    def _candidates(self, rows):
        if isinstance(rows, slice):
            return np.arange(*rows.indices(archive_length(self.path)), dtype=np.int64)
        wanted = np.asarray(rows)
        if wanted.ndim != 1 or (wanted.size and wanted.dtype.kind not in "iu"):
            msg = f"rows must be a slice or a 1-D sequence of integers, got {rows!r}"
            raise ParameterError(msg)
        wanted = wanted.astype(np.int64)
        n_rows = archive_length(self.path)
        if wanted.size and (np.any(np.diff(wanted) <= 0) or wanted[0] < 0
                            or wanted[-1] >= n_rows):
            msg = f"rows must be strictly increasing indices in [0, {n_rows}), got {rows!r}"
            raise ParameterError(msg)
        return wanted

    def iter_query(self, *, chunk_size=None, source_type=None, rows=None, ra=None, dec=None,
                   radius=None, cutouts=True, columns=None):
        """Yield the selected galaxies as Tables of at most ``chunk_size`` rows.

        Parameters
        ----------
        chunk_size : int, optional
            Default: the source's ``chunk_size``.
        source_type, rows, ra, dec, radius
            Selection, see `select_rows`; all given criteria must hold.
        cutouts : bool
            Read the images into a ``cutout`` column.
        columns : sequence of str, optional
            Archive datasets to read (default all).

        Yields
        ------
        astropy.table.Table
            Columns of `iter_archive` (``cutout``, ``flux_g/r/z``, ``mag_g/r/z``,
            ``source_type`` as str, ...) plus ``archive_row``, the row number in the archive.
        """
        chunk_size = self.chunk_size if chunk_size is None else chunk_size
        self._check(chunk_size)
        selected = self.select_rows(source_type=source_type, rows=rows, ra=ra, dec=dec,
                                    radius=radius)
        if selected is not None and len(selected) == 0:
            return
        criteria = {"source_type": source_type, "rows": None if rows is None else "given",
                    "ra": ra, "dec": dec, "radius": radius}
        read = dict(columns=columns, cutouts=cutouts)
        if selected is None:
            chunks = self._tag(iter_archive(self.path, chunk_size=chunk_size,
                                            progress=self.progress, **read), 0)
        else:
            chunks = self._read_selected(selected, chunk_size, read)
        for chunk in chunks:
            record_step(chunk, "legacysurvey_archive", path=str(self.path), **criteria)
            yield chunk

    @staticmethod
    def _tag(chunks, offset, local_rows=None):
        """Add ``archive_row`` (offset + row in the file) to chunks read in order."""
        done = 0
        for chunk in chunks:
            local = (np.arange(done, done + len(chunk)) if local_rows is None
                     else local_rows[done:done + len(chunk)])
            done += len(chunk)
            chunk.add_column(Column(offset + local, name="archive_row",
                                    description="row number in the archive"), index=0)
            yield chunk

    def _read_selected(self, selected, chunk_size, read):
        """Yield the ``selected`` rows in Tables of ``chunk_size``, file by file.

        h5py reads scattered rows one at a time (about 8 ms a cutout measured, against about
        0.2 ms in contiguous slices), so in each file the rows are either streamed from the
        first to the last selected row and filtered, or read scattered, whichever reads less
        (a scattered row counted as `SCATTER_COST` contiguous ones). No row outside that span
        is read, so a damaged row elsewhere in the file does not stop the read.
        """
        from tqdm.auto import tqdm

        offset = 0
        bar = tqdm(total=len(selected), desc="reading archive", unit="galaxy",
                   disable=not self.progress)
        try:
            for file_path in archive_files(self.path):
                length = archive_length(file_path)
                lo, hi = np.searchsorted(selected, [offset, offset + length])
                local = selected[lo:hi] - offset
                if len(local):
                    if local[-1] - local[0] + 1 <= SCATTER_COST * len(local):
                        parts = self._stream_file(file_path, offset, local, chunk_size, read)
                    else:
                        parts = self._tag(iter_archive(file_path, chunk_size=chunk_size,
                                                       rows=local, **read), offset, local)
                    for part in parts:  # at most chunk_size rows; not re-packed (memory)
                        bar.update(len(part))
                        yield part
                offset += length
        finally:
            bar.close()

    def _stream_file(self, file_path, offset, local, chunk_size, read):
        """Read one file contiguously from the first to the last row of ``local``; keep those."""
        first = int(local[0])
        reader = iter_archive(file_path, chunk_size=chunk_size,
                              rows=slice(first, int(local[-1]) + 1), **read)
        try:
            for chunk in self._tag(reader, offset + first):
                rows = np.asarray(chunk["archive_row"]) - offset
                keep = np.isin(rows, local, assume_unique=True)
                if keep.all():  # every row wanted: no copy of the cutouts
                    yield chunk
                elif keep.any():
                    yield chunk[keep]
                if rows[-1] >= local[-1]:
                    break
        finally:
            reader.close()

    def fingerprint(self):
        """What tells this archive's galaxies from another's at the same path, cheaply.

        Per file: its name (relative to ``path``), its row count and a SHA-256 of its
        `FINGERPRINT_DATASETS`: all of them in a file of up to 3 x `FINGERPRINT_BLOCK` rows,
        else that many rows at its start, middle and end (a block that cannot be read counts
        as its error's class), so that a start reads ~0.5 MB a file, not the whole columns.
        The catalogue engine keeps it in a run's recipe, so that a rerun on another archive
        put at the same path is refused, never resumed.

        Returns
        -------
        list of dict
            ``file``, ``n_rows`` and ``sha256`` of each archive file, in the archive's order.
        """
        import hashlib
        from pathlib import Path

        self._check(self.chunk_size)
        root = Path(self.path)
        found = []
        for file_path in archive_files(self.path):
            digest = hashlib.sha256()
            with open_archive_file(file_path) as handle:
                for name in FINGERPRINT_DATASETS:
                    if name not in handle:
                        continue
                    dataset = handle[name]
                    digest.update(f"|{name}|{dataset.dtype.str}|{dataset.shape}|".encode())
                    for start, stop in _fingerprint_blocks(dataset.shape[0]):
                        try:
                            block = dataset[start:stop]
                        except OSError as exc:
                            digest.update(f"|{start}:{type(exc).__name__}|".encode())
                            continue
                        digest.update(np.ascontiguousarray(block).tobytes())
            name = file_path.name if root.is_file() else str(file_path.relative_to(root))
            found.append({"file": name, "n_rows": archive_length(file_path),
                          "sha256": digest.hexdigest()})
        return found

    def writer(self, directory, *, start=0, rows_per_file=None, extra_columns=()):
        """An `~gpm_astro_plugins.legacysurvey.archive.ArchiveWriter` into ``directory`` (this
        source's own layout), e.g. for a cleaned sample that this source then reads back."""
        from .archive import ROWS_PER_FILE, ArchiveWriter

        return ArchiveWriter(directory, start=start, extra_columns=extra_columns,
                             rows_per_file=ROWS_PER_FILE if rows_per_file is None
                             else rows_per_file)

    def query(self, **criteria):
        """Return every selected galaxy as one Table (keep selections small: cutouts are
        277 kB each). Criteria as for `iter_query`; an empty selection gives an empty table
        with the full schema and an `~gpm_astro.exceptions.EmptyResultWarning`."""
        chunks = list(self.iter_query(**criteria))
        if len(chunks) == 1:  # read for this call alone: no copy of its cutouts
            return chunks[0]
        if chunks:
            table = vstack(chunks, metadata_conflicts="silent")
            table.meta = chunks[-1].meta
            return table
        schema_criteria = {k: v for k, v in criteria.items() if k in ("cutouts", "columns")}
        sample = next(self.iter_query(rows=[0], **schema_criteria), None)
        if sample is None:
            msg = f"the archive at {str(self.path)!r} holds no rows"
            raise ParameterError(msg)
        warn_empty("legacysurvey_archive")
        return sample[:0]
