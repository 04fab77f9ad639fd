"""Data source ``legacysurvey_cutouts``: g, r, z FITS cutouts from the Legacy Survey viewer.

One request per galaxy to ``{server}/cutout.fits?ra=..&dec=..&layer=ls-dr9&pixscale=0.262&
size=152&bands=grz``. Every answer is checked; a row whose cutout cannot be used is flagged in
``cutout_flag``, never raised:

==================  ==========================================================================
flag                meaning
==================  ==========================================================================
ok                  a finite (bands, size, size) cube with data in every band
invalid_position    ra / dec missing, not finite, or outside [0, 360) x [-90, 90]; not sent
outside_footprint   an all-zero cube, and the service's inverse variance is zero too (no
                    exposure there)
zero_cube           an all-zero cube although the inverse variance says data exist (or the
                    service sent none to decide): not trusted, fetched again by a later run
band_missing        one band all zero while the others hold data; the cube is kept
non_finite          NaN or infinite pixels; the cube is kept
bad_shape           a FITS cube of another shape, or with other bands, than requested
truncated           the body ended early, or the FITS file inside it is cut short (retried)
html_error_page     an HTML page instead of a FITS file (retried within the run)
not_fits            any other body that is not a FITS file (e.g. the viewer's bare text
                    "no such layer", sent with status 200 as text/html): not retried
http_error          an HTTP error status (after retries for 429 / 5xx)
timeout             no answer within the time-out (after retries)
connection_error    the connection failed (after retries)
==================  ==========================================================================

A single-band request (``bands="r"``) gets a 2-D image from the viewer; it is read as a
(1, size, size) cube.
"""

import io
import json
import warnings
from pathlib import Path

import numpy as np
from astropy import config as _config
from astropy.io import fits
from astropy.table import Column, Table

from gpm_astro.exceptions import ParameterError, RemoteServiceError
from gpm_astro.remote import (
    HTTPStatusError,
    MalformedResponseError,
    RemoteConf,
    RemoteDataSource,
    RemoteTimeoutError,
    TransientResponseError,
    TruncatedResponseError,
)
from gpm_astro.survey_constants import BANDS, CUTOUT_SIZE, PIXEL_SCALE_ARCSEC
from gpm_astro.tables import (numeric_column, record_step, require_columns, require_table,
                              warn_empty)
from gpm_astro.units import in_degrees

__all__ = ["Conf", "conf", "LegacySurveyCutouts", "CUTOUT_FLAGS", "FINAL_FLAGS", "KEEPS_IMAGE",
           "TRANSIENT_FLAGS", "UNDELIVERED_FLAGS", "parse_cutout", "zero_cube_flag"]

CUTOUT_FLAGS = ("ok", "invalid_position", "outside_footprint", "zero_cube", "band_missing",
                "non_finite", "bad_shape", "truncated", "html_error_page", "not_fits",
                "http_error", "timeout", "connection_error")
#: outcomes that asking again cannot change; a resumed fetch skips these rows
FINAL_FLAGS = frozenset({"ok", "invalid_position", "outside_footprint", "band_missing",
                         "non_finite", "bad_shape"})
#: answers worth asking again within the run (a proxy's page, a body cut short)
TRANSIENT_FLAGS = frozenset({"html_error_page", "truncated"})
#: the service did not deliver, even after the retries: the same fetch run again asks anew
UNDELIVERED_FLAGS = TRANSIENT_FLAGS | {"http_error", "timeout", "connection_error"}
#: flags that come with the cube as the service sent it
KEEPS_IMAGE = frozenset({"ok", "outside_footprint", "zero_cube", "band_missing", "non_finite"})
FLAG_DTYPE = "S24"
#: attribute of the HDF5 file that records what was asked for (checked on resume)
FETCH_ATTR = "gpm_astro_fetch"


class Conf(RemoteConf):
    """Configuration of `LegacySurveyCutouts`."""

    server = _config.ConfigItem(
        "https://www.legacysurvey.org/viewer",
        "Base URL of the Legacy Survey viewer; cutouts come from {server}/cutout.fits.")
    timeout = _config.ConfigItem(60.0, "Seconds to wait for one cutout.")
    max_workers = _config.ConfigItem(
        4, "Cutouts requested at the same time (the service documents no rate limit: be kind).")


conf = Conf()


class _CutoutError(MalformedResponseError):
    """A body that is not a usable cutout; ``flag`` is the machine-readable reason."""

    def __init__(self, flag, message):
        super().__init__(message)
        self.flag = flag


class _TransientCutoutError(TransientResponseError):
    """A body a passing fault explains (HTML page, FITS cut short): asked again."""

    def __init__(self, flag, message):
        super().__init__(message)
        self.flag = flag


def parse_cutout(content, *, content_type="", bands="grz", size=152):
    """Read one cutout answer of the viewer.

    Parameters
    ----------
    content : bytes
        The response body.
    content_type : str
        The response's Content-Type header.
    bands : str
        The bands requested, in order.
    size : int
        The side in pixels requested.

    Returns
    -------
    flag : str
        ``"ok"``, ``"all_zero"`` (to be decided with the inverse variance, see
        `zero_cube_flag`), ``"band_missing"``, ``"non_finite"`` or one of the error flags of
        this module.
    detail : str
        A human-readable explanation ("" when ok).
    image : numpy.ndarray or None
        (len(bands), size, size) float32 for the flags in `KEEPS_IMAGE` and ``all_zero``,
        else None. A 2-D answer to a single-band request is given its band axis.

    Examples
    --------
    >>> flag, detail, image = parse_cutout(b"<!DOCTYPE html><html>No such layer</html>")
    >>> flag
    'html_error_page'
    """
    head = content[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head or b"<body" in head:
        text = content[:200].decode("utf-8", errors="replace")
        return "html_error_page", f"an HTML page came back instead of FITS: {text!r}", None
    if "html" in content_type.lower() and not content.startswith(b"SIMPLE  ="):
        # the viewer's own refusals are bare text sent as text/html with status 200
        # ("no such layer" for an unknown layer): asking again gives the same answer
        text = content[:200].decode("utf-8", errors="replace")
        return "not_fits", f"the viewer answered with text instead of FITS: {text!r}", None
    if not content.startswith(b"SIMPLE  ="):
        return "not_fits", f"body is not FITS: {content[:60]!r}", None
    if len(content) % 2880:
        return ("truncated",
                f"FITS body of {len(content)} bytes is not a whole number of 2880-byte blocks",
                None)
    try:
        header, data, _ = _read_fits(content)
    except Exception as exc:  # astropy raises OSError, ValueError, warnings-as-errors ...
        return "truncated", f"FITS file cannot be read: {exc}", None
    expected = (len(bands), size, size)
    if data is not None and len(bands) == 1 and data.shape == (size, size):
        data = data[np.newaxis]  # the viewer answers one band with a 2-D image
    if data is None or data.shape != expected:
        shape = None if data is None else data.shape
        return "bad_shape", f"expected a cube of shape {expected}, got {shape}", None
    got_bands = str(header.get("BANDS", bands)).strip()
    if got_bands != bands:
        return "bad_shape", f"expected bands {bands!r}, header BANDS={got_bands!r}", None
    finite = np.isfinite(data)
    if not finite.all():
        n_bad = int((~finite).sum())
        return ("non_finite", f"{n_bad} NaN or infinite pixel(s) in the cube "
                f"(per band: {(~finite).reshape(len(bands), -1).sum(axis=1).tolist()})", data)
    if not np.any(data):
        return "all_zero", "the cube is all zero", data
    empty = [band for band, plane in zip(bands, data) if not np.any(plane)]
    if empty:
        return "band_missing", f"band(s) {''.join(empty)} all zero, the others hold data", data
    return "ok", "", data


def _read_fits(content):
    """(primary header, primary data as float32 or None, INVVAR data or None)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy warns when a file is cut short
        with fits.open(io.BytesIO(content), memmap=False, lazy_load_hdus=False) as hdul:
            header = hdul[0].header
            data = None if hdul[0].data is None else np.array(hdul[0].data, np.float32)
            invvar = None
            for hdu in hdul[1:]:
                if str(hdu.header.get("IMAGETYP", "")).strip().upper() == "INVVAR" and \
                        hdu.data is not None:
                    invvar = np.array(hdu.data, np.float32)
    return header, data, invvar


def _whole_fits(response):
    """``validate`` of the ``&invvar`` request: a whole FITS file, else asked again."""
    content = response.content
    if not content.startswith(b"SIMPLE  =") or len(content) % 2880:
        msg = f"the inverse-variance answer is not a whole FITS file: {content[:200]!r}"
        raise TransientResponseError(msg)


def zero_cube_flag(content):
    """Decide an all-zero cube from the service's answer with ``&invvar``.

    The viewer sends zeros both where the survey has no data and, rarely, where it has; the
    inverse variance tells them apart: zero everywhere means no exposure (outside the
    footprint), positive somewhere means data exist and the zeros are not to be trusted.

    Returns
    -------
    flag : str
        ``"outside_footprint"`` or ``"zero_cube"``.
    detail : str

    Examples
    --------
    >>> zero_cube_flag(b"not fits")[0]
    'zero_cube'
    """
    try:
        _, _, invvar = _read_fits(content)
    except Exception as exc:
        return "zero_cube", f"all zero; the inverse-variance answer cannot be read: {exc}"
    if invvar is None:
        return "zero_cube", "all zero; the service sent no inverse variance to decide"
    if not np.any(np.nan_to_num(invvar, nan=0.0) > 0):
        return ("outside_footprint",
                "the cutout and its inverse variance are all zero (no survey data there)")
    return ("zero_cube", f"all zero although the inverse variance is positive in "
            f"{int((invvar > 0).sum())} pixel(s): data exist there")


class LegacySurveyCutouts(RemoteDataSource):
    """g, r, z cutouts for a table of positions from the Legacy Survey viewer's cutout service.

    Parameters
    ----------
    layer : str
        Viewer layer; ``"ls-dr9"`` (north data above dec 32.375 in the north galactic cap,
        south elsewhere).
    pixel_scale : float
        Arcsec per pixel (the service's ``pixscale``); DR9 native 0.262.
    size : int
        Cutout side in pixels (the service clamps sizes over 3000 silently, so they are refused).
    bands : str
        Bands in cube order.
    progress : bool
        Show a progress bar.
    cache, cache_dir, timeout, max_retries, backoff_factor, max_workers
        See `gpm_astro.remote.RemoteDataSource`.

    Examples
    --------
    >>> from astropy.table import Table
    >>> source = LegacySurveyCutouts()
    >>> payload = source.query(Table({"ra": [150.1], "dec": [2.2]}), get_query_payload=True)
    >>> payload[0]["params"]["layer"], payload[0]["params"]["size"]
    ('ls-dr9', 152)
    """

    name = "legacysurvey_cutouts"
    #: flags of the rows the service did not deliver (`UNDELIVERED_FLAGS`)
    undelivered_flags = UNDELIVERED_FLAGS
    provides = ("cutouts",)
    conf = conf

    def __init__(self, *, layer="ls-dr9", pixel_scale=PIXEL_SCALE_ARCSEC, size=CUTOUT_SIZE,
                 bands=BANDS, progress=True, cache=True, cache_dir=None, timeout=None,
                 max_retries=None, backoff_factor=None, max_workers=None):
        super().__init__(cache=cache, cache_dir=cache_dir, timeout=timeout,
                         max_retries=max_retries, backoff_factor=backoff_factor,
                         max_workers=max_workers)
        self.layer = layer
        self.pixel_scale = pixel_scale
        self.size = size
        self.bands = bands
        self.progress = progress

    # -- validation --------------------------------------------------------------------------
    def _check_params(self):
        if not isinstance(self.layer, str) or not self.layer.replace("-", "").isalnum():
            msg = f"layer must be a viewer layer name such as 'ls-dr9', got {self.layer!r}"
            raise ParameterError(msg)
        if not (isinstance(self.pixel_scale, (int, float)) and 0 < self.pixel_scale <= 60):
            msg = f"pixel_scale must be in (0, 60] arcsec, got {self.pixel_scale!r}"
            raise ParameterError(msg)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not (
                0 < self.size <= 3000):
            msg = f"size must be an integer in [1, 3000] pixels, got {self.size!r}"
            raise ParameterError(msg)
        if not (isinstance(self.bands, str) and self.bands and set(self.bands) <= set("grizY")
                and len(set(self.bands)) == len(self.bands)):
            msg = f"bands must be distinct letters from 'grizY', e.g. 'grz', got {self.bands!r}"
            raise ParameterError(msg)

    @staticmethod
    def _positions(targets, ra_column, dec_column):
        require_table(targets, "targets")
        require_columns(targets, [ra_column, dec_column], "legacysurvey_cutouts")
        coords = []
        for name in (ra_column, dec_column):
            column = targets[name]
            # strings or 2-D columns: SchemaError; masked, NaN or sentinel values: NaN
            values, _ = numeric_column(column, "legacysurvey_cutouts")
            unit = getattr(column, "unit", None)
            coords.append(in_degrees(values, unit, f"legacysurvey_cutouts: column {name!r}"))
        ra, dec = coords
        valid = np.isfinite(ra) & np.isfinite(dec) & (ra >= 0) & (ra < 360) & (np.abs(dec) <= 90)
        return ra, dec, valid

    def _params(self, ra, dec):
        return {"ra": f"{ra:.7f}", "dec": f"{dec:.7f}", "layer": self.layer,
                "pixscale": self.pixel_scale, "size": self.size, "bands": self.bands}

    def _fetch_one(self, position):
        """Fetch and check one cutout; return (flag, detail, image or None). Never raises
        for a service failure."""
        ra, dec = position
        bands, size = self.bands, self.size

        def validate(response):
            flag, detail, _ = parse_cutout(response.content,
                                           content_type=response.headers.get("content-type", ""),
                                           bands=bands, size=size)
            if flag in TRANSIENT_FLAGS:
                raise _TransientCutoutError(flag, detail)
            if flag not in KEEPS_IMAGE and flag != "all_zero":
                raise _CutoutError(flag, detail)

        try:
            response = self._request("GET", f"{self.server}/cutout.fits",
                                     params=self._params(ra, dec), validate=validate)
            flag, detail, image = parse_cutout(
                response.content, content_type=response.headers.get("content-type", ""),
                bands=bands, size=size)
            if flag == "all_zero":
                try:  # only a whole FITS answer is used or cached; anything else is retried
                    invvar = self._request("GET", f"{self.server}/cutout.fits",
                                           params={**self._params(ra, dec), "invvar": ""},
                                           validate=_whole_fits)
                    flag, detail = zero_cube_flag(invvar.content)
                except RemoteServiceError as exc:
                    flag, detail = ("zero_cube", f"all zero; the inverse-variance request "
                                    f"failed: {exc}")
        except (_CutoutError, _TransientCutoutError) as exc:
            return exc.flag, str(exc), None
        except HTTPStatusError as exc:
            return "http_error", str(exc), None
        except RemoteTimeoutError as exc:
            return "timeout", str(exc), None
        except TruncatedResponseError as exc:
            return "truncated", str(exc), None
        except RemoteServiceError as exc:
            return "connection_error", str(exc), None
        return flag, detail, image

    # -- public ------------------------------------------------------------------------------
    def query(self, targets, *, output=None, ra_column="ra", dec_column="dec",
              get_query_payload=False):
        """Fetch one cutout per row of ``targets``.

        Parameters
        ----------
        targets : astropy.table.Table
            Positions in ``ra_column`` / ``dec_column`` (deg; a unit is converted).
        output : str or path-like, optional
            An HDF5 file in the ssl-legacysurvey archive layout (dataset ``images``
            (N, bands, size, size), ``ra`` / ``dec`` = the cutout centres, and the input's
            other columns; an input ``ra`` / ``dec`` that is not the position used is stored
            as ``ra_input`` / ``dec_input``) written as cutouts arrive. If
            the file exists from an interrupted or partly failed run of the same request, rows
            already settled (flags in `FINAL_FLAGS`) are not fetched again. Use it for large
            jobs; without it the cutouts are returned in memory.
        ra_column, dec_column : str
            Names of the position columns.
        get_query_payload : bool
            Return the list of requests (dicts of method, url, params) instead of sending them.

        Returns
        -------
        astropy.table.Table or list of dict
            A new table: every input row in order, plus ``cutout`` ((N, bands, size, size)
            float32 nanomaggies, NaN where no cutout; only without ``output``), ``cutout_flag``
            and ``cutout_detail``. ``meta`` holds ``bands``, ``pixel_scale`` and, with
            ``output``, ``cutout_file``.

        Raises
        ------
        ParameterError
            Bad options, or ``output`` holds a different request.
        SchemaError
            ``targets`` lacks a position column.
        """
        self._check_params()
        ra, dec, valid = self._positions(targets, ra_column, dec_column)
        if get_query_payload:
            url = f"{self.server}/cutout.fits"
            return [{"method": "GET", "url": url, "params": self._params(r, d)}
                    for r, d, ok in zip(ra, dec, valid) if ok]
        if output is not None:
            return self._query_to_file(targets, ra, dec, valid, Path(output),
                                       (ra_column, dec_column))
        return self._query_in_memory(targets, ra, dec, valid)

    def _new_flags(self, n):
        flags = np.full(n, "invalid_position", dtype="U24")
        details = np.full(n, "ra/dec missing, not finite or out of range", dtype=object)
        return flags, details

    def _query_in_memory(self, targets, ra, dec, valid):
        n = len(targets)
        shape = (len(self.bands), self.size, self.size)
        images = np.full((n,) + shape, np.nan, dtype=np.float32)
        flags, details = self._new_flags(n)
        todo = np.flatnonzero(valid)
        results = self._map_concurrent(self._fetch_one, [(ra[i], dec[i]) for i in todo],
                                       desc="cutouts", progress=self.progress, total=len(todo))
        for k, outcome, error in results:
            if error is not None:  # _fetch_one turns service failures into flags: this is a bug
                raise error
            flag, detail, image = outcome
            row = todo[k]
            flags[row], details[row] = flag, detail
            if image is not None:
                images[row] = image
        result = self._result_table(targets, flags, details)
        result.add_column(Column(images, name="cutout", unit="nanomaggy",
                                 description=f"{self.bands} cutout, NaN where none"),
                          index=len(targets.colnames))
        return result

    def _result_table(self, targets, flags, details):
        result = Table(targets, copy=True)
        result["cutout_flag"] = Column(flags.astype(str), description="cutout outcome")
        result["cutout_detail"] = Column(np.array([str(d) for d in details], dtype=str),
                                         description="why a cutout is missing")
        result.meta["bands"] = self.bands
        result.meta["pixel_scale"] = float(self.pixel_scale)
        counts = {flag: int(np.sum(flags == flag)) for flag in np.unique(flags)}
        record_step(result, "legacysurvey_cutouts", server=self.server, layer=self.layer,
                    pixel_scale=self.pixel_scale, size=self.size, bands=self.bands,
                    n_rows=len(result), flag_counts=counts)
        if len(result) == 0:
            warn_empty("legacysurvey_cutouts")
        return result

    # -- large jobs straight to HDF5 ----------------------------------------------------------
    def _fetch_identity(self, n):
        return {"layer": self.layer, "pixel_scale": float(self.pixel_scale), "size": self.size,
                "bands": self.bands, "n_rows": int(n)}

    def _open_output(self, path, targets, ra, dec, position_columns):
        import h5py

        n = len(targets)
        identity = self._fetch_identity(n)
        if path.exists():
            handle = h5py.File(path, "r+")
            stored = json.loads(handle.attrs.get(FETCH_ATTR, "{}"))
            same = (stored == identity and "ra" in handle and
                    np.array_equal(handle["ra"][:], ra, equal_nan=True) and
                    np.array_equal(handle["dec"][:], dec, equal_nan=True))
            if not same:
                handle.close()
                msg = (f"output {str(path)!r} holds a different fetch ({stored}); expected "
                       f"{identity} for these {n} positions. Choose another file.")
                raise ParameterError(msg)
            return handle
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = h5py.File(path, "w")
        shape = (len(self.bands), self.size, self.size)
        handle.create_dataset("images", shape=(n,) + shape, dtype="float32",
                              chunks=(1,) + shape, fillvalue=np.nan)
        flux_bands = [f"flux_{band}" for band in "grz"]
        if all(name in targets.colnames for name in flux_bands):  # the archive's (N, 3) flux
            handle.create_dataset("flux", data=np.stack(
                [np.ma.filled(np.ma.asanyarray(targets[name], float), np.nan)
                 for name in flux_bands], axis=-1).astype(np.float32))
        for name in targets.colnames:
            column = targets[name]
            if column.ndim != 1 or name in ("images", "cutout_flag", "flux", *flux_bands) or \
                    name.startswith("mag_"):
                continue
            if name in position_columns:  # written below as the archive's ra / dec
                continue
            data = np.ma.filled(np.ma.asanyarray(column))
            if data.dtype.kind == "U":
                data = np.char.encode(data, "utf-8")
            if data.dtype.kind not in "biufS":
                continue
            # the archive's ra / dec are the cutout centres; other ra / dec columns are renamed
            dataset_name = f"{name}_input" if name in ("ra", "dec") else name
            if dataset_name not in handle:
                handle.create_dataset(dataset_name, data=data)
        handle.create_dataset("ra", data=ra)
        handle.create_dataset("dec", data=dec)
        handle.create_dataset("cutout_flag", shape=(n,), dtype=FLAG_DTYPE)
        handle.attrs[FETCH_ATTR] = json.dumps(identity)
        handle.attrs["bands"] = self.bands
        handle.attrs["pixel_scale"] = float(self.pixel_scale)
        handle.flush()
        return handle

    def _query_to_file(self, targets, ra, dec, valid, path, position_columns):
        n = len(targets)
        flags, details = self._new_flags(n)
        handle = self._open_output(path, targets, ra, dec, position_columns)
        try:
            stored = np.char.decode(handle["cutout_flag"][:], "utf-8")
            settled = np.isin(stored, list(FINAL_FLAGS))
            flags[settled] = stored[settled]
            details[settled] = "fetched by an earlier run"
            todo = np.flatnonzero(valid & ~settled)
            invalid = np.flatnonzero(~valid)
            handle["cutout_flag"][invalid] = np.full(len(invalid), b"invalid_position")
            images = handle["images"]
            flag_set = handle["cutout_flag"]
            salvage = []
            results = self._map_concurrent(self._fetch_one, [(ra[i], dec[i]) for i in todo],
                                           desc="cutouts", progress=self.progress,
                                           total=len(todo), salvage=salvage)

            def store(k, outcome):
                row = todo[k]
                flag, detail, image = outcome
                flags[row], details[row] = flag, detail
                if image is not None:
                    images[row] = image
                flag_set[row] = flag.encode()  # written last: a flag means the image is there

            try:
                for k, outcome, error in results:
                    if error is not None:
                        raise error
                    store(k, outcome)
                    # each row on disk as it comes: a killed run (SIGKILL, power cut) loses
                    # at most the rows in flight, even with the cache off
                    handle.flush()
            finally:
                results.close()  # stops the pool; finished but unread results land in salvage
                for k, outcome, _ in salvage:
                    store(k, outcome)
        finally:
            handle.flush()
            handle.close()
        result = self._result_table(targets, flags, details)
        result.meta["cutout_file"] = str(path)
        return result
