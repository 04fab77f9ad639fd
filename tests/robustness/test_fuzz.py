"""Property-based fuzzing (hypothesis) of the Table functions, the estimators and the CLI.

Every generated case must end in one of three ways: a clear package error (a `GPMAstroError`
subclass), a flagged row, or a correct result checked against an oracle written here, apart
from the code under test. A raw library exception, or a result that quietly means something
else (a km/s redshift compared with 0.002, a string "False" read as true), fails the test.
The examples are derandomized (fixed seed) so CI is reproducible; `test_case_count` checks
that one run covers at least 1,000 cases.
"""

import contextlib
import io
import os
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Column, MaskedColumn, Table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpm_astro import crossmatch, predict_metallicity, preprocess_cutouts, select_starforming
from gpm_astro.catalog import MATCH_FLAGS
from gpm_astro.cli import main
from gpm_astro.exceptions import GPMAstroError, GPMAstroWarning
from gpm_astro.image_checks import cutout_flags
from gpm_astro.io import write_table
from gpm_astro.testing import make_estimator_table

from .conftest import SIZE

CASES = {}
EXAMPLES = {"select": 9, "crossmatch": 50, "mass_metallicity": 150,
            "colour_polynomial": 100, "gpm_resnet": 100, "preprocess": 60, "cli": 150}


def fuzz_settings(name):
    return settings(max_examples=EXAMPLES[name], deadline=None, derandomize=True,
                    database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def count(name):
    CASES[name] = CASES.get(name, 0) + 1


def outcome(function, *args, **kwargs):
    """Call ``function``; return its result, or None after a package error. Anything else
    raised propagates and fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GPMAstroWarning)  # e.g. an empty result
            return function(*args, **kwargs)
    except GPMAstroError:
        return None


# ------------------------------------------------------------------ column strategies

N_ROWS = st.integers(min_value=0, max_value=5)
WILD_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                        st.sampled_from([-9999.0, -99.0, 1e30, -1e30, 0.0, 5.0, 0.002]))
UNITS = st.sampled_from([None, None, None, "", "deg", "arcsec", "rad", "km / s", "dex", "m"])


@st.composite
def wild_column(draw, n):
    """Any column a table file could hold: numbers, flags, text, bytes, objects, 2-D."""
    kind = draw(st.sampled_from(["float", "int", "bool", "str", "bytes", "object", "2d"]))
    if kind == "float":
        data = np.array(draw(st.lists(WILD_FLOATS, min_size=n, max_size=n)), dtype=float)
    elif kind == "int":
        data = np.array(draw(st.lists(st.integers(-2**31, 2**31 - 1), min_size=n, max_size=n)),
                        dtype=np.int64)
    elif kind == "bool":
        data = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    elif kind == "str":
        words = st.sampled_from(["GALAXY", " GALAXY ", "QSO", "", "True", "False", "1", "nan",
                                 "abc", "8.9"])
        data = np.array(draw(st.lists(words, min_size=n, max_size=n)), dtype="U12")
    elif kind == "bytes":
        data = np.array([w.encode() for w in draw(st.lists(
            st.sampled_from(["GALAXY", "x", "1"]), min_size=n, max_size=n))], dtype="S8")
    elif kind == "object":
        items = st.sampled_from([None, 1, 1.5, "a", b"b", True])
        data = np.empty(n, dtype=object)
        data[:] = draw(st.lists(items, min_size=n, max_size=n))
    else:
        data = np.array(draw(st.lists(WILD_FLOATS, min_size=2 * n, max_size=2 * n)),
                        dtype=float).reshape(n, 2)
    return _finish(draw, data)


def _finish(draw, data):
    unit = draw(UNITS)
    if draw(st.booleans()):
        mask = np.array(draw(st.lists(st.booleans(), min_size=len(data), max_size=len(data))),
                        dtype=bool).reshape((len(data),) + (1,) * (data.ndim - 1))
        return MaskedColumn(data, mask=np.broadcast_to(mask, data.shape), unit=unit)
    return Column(data, unit=unit)


@st.composite
def typical_column(draw, n, values, variants=True):
    """Plausible values; with ``variants``, now and then as booleans or with a unit; now and
    then with masked cells."""
    data = np.array(draw(st.lists(values, min_size=n, max_size=n)))
    if data.dtype.kind == "f" or len(data) == 0:
        data = data.astype(float)
    unit = None
    if variants:
        if data.dtype.kind in "iuf" and draw(st.integers(0, 5)) == 0:
            data = data.astype(bool)  # e.g. a flag column stored as True/False
        if draw(st.integers(0, 3)) == 0:
            unit = draw(UNITS)
    if draw(st.integers(0, 4)) == 0:
        mask = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
        return MaskedColumn(data, mask=mask, unit=unit)
    return Column(data, unit=unit)


def column(n, typical):
    """Mostly a plausible column, sometimes anything at all."""
    return st.one_of(typical_column(n, typical), typical_column(n, typical),
                     typical_column(n, typical), wild_column(n))


PROVENANCE = st.sampled_from([{"steps": []}, "text", ["a"], {"steps": "no"}, 3, None])


def _add_provenance(table, value):
    if value is not None:
        table.meta["gpm_astro"] = value


# ------------------------------------------------------------------ select_starforming

# mostly values that pass every cut, so that kept rows (which the oracle checks) are common
LABEL_COLUMNS = {
    "spectrotype": st.sampled_from(["GALAXY", "GALAXY", "GALAXY  ", "QSO"]),
    "reliable": st.sampled_from([1, 1, 1, 0]),
    "z_warning": st.sampled_from([0, 0, 0, 4]),
    "bptclass": st.sampled_from([1, 1, 1, 4]),
    "z": st.one_of(st.floats(0.01, 0.4), st.floats(0.01, 0.4),
                   st.sampled_from([0.001, -9999.0, 1e30])),
    "snmedian_r": st.one_of(st.floats(5.0, 40.0), st.floats(5.0, 40.0),
                            st.sampled_from([4.9, np.nan])),
    "oh_p50": st.one_of(st.floats(8.0, 9.4), st.floats(8.0, 9.4),
                        st.sampled_from([-9999.0, np.nan, 1e30, 20.0])),
}


@st.composite
def label_tables(draw, trouble, how):
    """A label table whose only troubled part is ``trouble`` (a column, ``"provenance"`` or
    None), made so ``how`` (``missing``, ``wild``: anything at all, ``unit``, ``bool``)."""
    n = draw(N_ROWS)
    table = Table()
    for name, values in LABEL_COLUMNS.items():
        if name != trouble:
            table[name] = draw(typical_column(n, values, variants=False))
        elif how == "wild":
            table[name] = draw(wild_column(n))
        elif how == "unit":
            table[name] = draw(typical_column(n, values, variants=False))
            table[name].unit = draw(UNITS.filter(lambda unit: unit is not None))
        elif how == "bool":
            table[name] = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    table["row"] = np.arange(n)
    if trouble == "provenance":
        _add_provenance(table, draw(PROVENANCE))
    return table


#: Every way a label table is troubled: nothing, its provenance, or one column in one way.
TROUBLES = [(None, None), ("provenance", None)] + [
    (name, how) for name in LABEL_COLUMNS for how in ("missing", "wild", "unit", "bool")]


def _cell(column, row):
    """(present, value) of one cell as the selection must read it."""
    data = np.ma.asanyarray(column.value if isinstance(column, u.Quantity) else column)
    if np.ma.getmaskarray(data)[row]:
        return False, None
    value = np.ma.getdata(data)[row]
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        value = value.strip()
        return value != "", value
    if isinstance(value, (float, np.floating)) and (not np.isfinite(value)
                                                     or value in (-9999.0, -99.0)):
        return False, None
    if isinstance(value, (int, np.integer)) and value in (-9999, -99):
        return False, None
    return True, value


def _kept_row_is_right(table, row):
    rules = {
        "spectrotype": lambda v: v == "GALAXY",
        "reliable": lambda v: not isinstance(v, (bool, np.bool_)) and v == 1,
        "z_warning": lambda v: not isinstance(v, (bool, np.bool_)) and v == 0,
        "bptclass": lambda v: not isinstance(v, (bool, np.bool_)) and v == 1,
        "z": lambda v: isinstance(v, (int, float, np.number)) and 0.002 <= v <= 10,
        "snmedian_r": lambda v: isinstance(v, (int, float, np.number)) and 5 <= v <= 1e5,
        "oh_p50": lambda v: isinstance(v, (int, float, np.number)) and 6 <= v <= 10.5,
    }
    for name, rule in rules.items():
        unit = getattr(table[name], "unit", None)
        assert unit in (None, u.dimensionless_unscaled) or (name == "oh_p50"
                                                             and unit == u.dex), \
            f"{name} with unit {unit} was used as if it had none"
        present, value = _cell(table[name], row)
        assert present and rule(value), f"row {row} kept with {name} = {value!r}"


@pytest.mark.parametrize("trouble, how", TROUBLES)
def test_select_starforming(trouble, how):
    fuzz_select(trouble, how)


def fuzz_select(trouble, how):
    @fuzz_settings("select")
    @given(table=label_tables(trouble, how))
    def check(table):
        check_select_starforming(table)

    check()


def check_select_starforming(table):
    count("select")
    before = table.copy()
    kept = outcome(select_starforming, table)
    assert table.meta == before.meta and table.colnames == before.colnames
    if kept is None:
        return
    for row in kept["row"]:
        _kept_row_is_right(table, int(row))
    report = kept.meta["gpm_astro"]["select_starforming"]
    assert sum(cut["removed"] for cut in report) == len(table) - len(kept)


# ------------------------------------------------------------------ crossmatch

COORD = st.one_of(st.floats(0, 360), st.floats(-90, 90), st.sampled_from([np.nan, 95.0]))


@st.composite
def sky_tables(draw, labels, clash=None):
    n = draw(st.integers(0, 4))
    table = Table()
    for name in ("ra", "dec"):
        table[name] = draw(st.one_of(typical_column(n, COORD), typical_column(n, COORD),
                                     wild_column(n)))
        if isinstance(table[name], Column) and draw(st.booleans()):
            table[name].unit = draw(UNITS)
    if labels:
        table["row"] = np.arange(n)
        if clash is not None:
            table[clash] = np.zeros(n)  # a label column named like an output of crossmatch
    else:
        table["objid"] = np.arange(100, 100 + n)
    _add_provenance(table, draw(PROVENANCE))
    return table


def _same(a, b):
    a, b = np.ma.asanyarray(a), np.ma.asanyarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not np.array_equal(np.ma.getmaskarray(a), np.ma.getmaskarray(b)):
        return False
    equal_nan = a.dtype.kind in "fc"
    return np.array_equal(np.ma.getdata(a), np.ma.getdata(b), equal_nan=equal_nan)


def _degrees(column):
    unit = getattr(column, "unit", None)
    values = np.asarray(np.ma.getdata(np.ma.asanyarray(column)), dtype=float)
    if unit is None or unit == u.dimensionless_unscaled:
        return values
    return (values * unit).to_value(u.deg)


RADII = st.one_of(st.floats(0.01, 1e6), st.sampled_from([0.0, -1.0, np.nan]),
                  st.just(2 * u.deg), st.just(1 * u.m))


@pytest.mark.parametrize("clash", [None, "matched", "separation", "match_flag"])
def test_crossmatch(clash):
    @fuzz_settings("crossmatch")
    @given(labels=sky_tables(True, clash), images=sky_tables(False), radius=RADII)
    def check(labels, images, radius):
        check_crossmatch(labels, images, radius)

    check()


def check_crossmatch(labels, images, radius):
    count("crossmatch")
    out = outcome(crossmatch, labels, images, radius=radius)
    if out is None:
        return
    assert out["row"].tolist() == list(range(len(labels)))
    for name in labels.colnames:  # every label column comes back unchanged
        assert _same(out[name], labels[name]), f"label column {name!r} was changed"
    assert set(out["match_flag"]) <= set(MATCH_FLAGS)
    radius_arcsec = u.Quantity(radius, u.arcsec).to_value(u.arcsec)
    for row in np.flatnonzero(out["matched"]):
        image = int(out["objid"][row]) - 100
        here = SkyCoord(_degrees(labels["ra"])[row] * u.deg,
                        _degrees(labels["dec"])[row] * u.deg)
        there = SkyCoord(_degrees(images["ra"])[image] * u.deg,
                         _degrees(images["dec"])[image] * u.deg)
        separation = here.separation(there).to_value(u.arcsec)
        assert separation <= radius_arcsec * (1 + 1e-9) + 1e-9
        assert separation == pytest.approx(float(out["separation"][row]), abs=1e-6)
    assert np.ma.getmaskarray(out["objid"]).tolist() == (~np.asarray(out["matched"])).tolist()


# ------------------------------------------------------------------ estimators

MASSES = st.one_of(st.floats(8.0, 12.0), st.sampled_from([-9999.0, np.nan, 1e30]))
OK_FLAGS = st.one_of(st.just(None), typical_column(0, st.booleans()), st.just("wild"))


@st.composite
def mass_tables(draw):
    n = draw(N_ROWS)
    table = Table({"lgm_tot_p50": draw(column(n, MASSES)), "row": np.arange(n)})
    choice = draw(st.sampled_from(["none", "bool", "bool", "wild"]))
    if choice == "bool":
        table["preprocess_ok"] = draw(typical_column(n, st.booleans()))
        table["preprocess_flag"] = np.full(n, "blended")
    elif choice == "wild":
        table["preprocess_ok"] = draw(wild_column(n))
    return table


@fuzz_settings("mass_metallicity")
@given(table=mass_tables())
def test_mass_metallicity(table):
    from gpm_astro.survey_constants import TREMONTI_MASS_RANGE

    count("mass_metallicity")
    out = outcome(predict_metallicity, table, estimator="mass_metallicity", progress=False)
    if out is None:
        return
    assert len(out) == len(table)
    if len(table) == 0:
        return  # nothing was read, so nothing can have been misread
    if "preprocess_ok" in table.colnames:
        assert table["preprocess_ok"].dtype.kind == "b", "a non-boolean preprocess_ok was used"
        failed = ~np.ma.filled(np.ma.asanyarray(table["preprocess_ok"]), False)
    else:
        failed = np.zeros(len(table), dtype=bool)
    mass = table["lgm_tot_p50"]
    if not failed.all():  # the estimator read the mass column
        assert mass.ndim == 1 and mass.dtype.kind in "iuf", "a non-numeric mass was used"
    for row in range(len(table)):
        flag = out["Z_pred_flag"][row]
        present, value = _cell(mass, row)
        if failed[row]:
            assert flag.startswith("preprocess:")
        elif flag == "ok":
            assert present and TREMONTI_MASS_RANGE[0] <= value <= TREMONTI_MASS_RANGE[1]
            x = value
            expected = -1.492 + 1.847 * x - 0.08026 * x ** 2  # Tremonti et al. (2004)
            assert float(out["Z_pred"][row]) == pytest.approx(expected, abs=1e-9)
        else:
            assert np.ma.getmaskarray(out["Z_pred"])[row]


@pytest.fixture(scope="module")
def colour_training():
    return make_estimator_table(40, seed=5, cutout_size=16)


FLUXES = st.one_of(st.floats(1.0, 100.0), st.sampled_from([0.0, -3.0, np.nan, -9999.0, 1e30]))


@st.composite
def flux_tables(draw):
    n = draw(N_ROWS)
    return Table({f"flux_{band}": draw(column(n, FLUXES)) for band in "grz"})


@fuzz_settings("colour_polynomial")
@given(table=flux_tables())
def test_colour_polynomial(colour_training, table):
    count("colour_polynomial")
    out = outcome(predict_metallicity, table, estimator="colour_polynomial",
                  fit_table=colour_training, progress=False, extrapolate=True)
    if out is None:
        return
    for row in np.flatnonzero(out["Z_pred_flag"] == "ok"):
        for band in "grz":
            present, value = _cell(table[f"flux_{band}"], row)
            assert present and not isinstance(value, (bool, np.bool_, str)) and value > 0
        assert np.isfinite(out["Z_pred"][row])


NONSENSE = ["galaxy", "galaxy", "zeros", "constant", "huge", "negative", "nan", "inf", "tiny"]


@st.composite
def cutout_tables(draw):
    n = draw(st.integers(1, 4))
    table = make_estimator_table(n, seed=draw(st.integers(0, 50)), cutout_size=SIZE)
    images = np.asarray(table["cutout"]).astype(np.float64)
    families = draw(st.lists(st.sampled_from(NONSENSE), min_size=n, max_size=n))
    for row, family in enumerate(families):
        image = images[row]
        if family == "zeros":
            image[:] = 0
        elif family == "constant":
            image[:] = draw(st.floats(-10, 10).filter(lambda v: v != 0))
        elif family == "huge":
            image *= draw(st.sampled_from([1e7, 1e30, 1e300]))
        elif family == "negative":
            image[:] = -np.abs(image)
        elif family in ("nan", "inf"):
            image.flat[draw(st.integers(0, image.size - 1))] = np.nan if family == "nan" \
                else -np.inf
        elif family == "tiny":
            image *= 1e-6  # faint, but a galaxy still
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float64, np.float16, np.int16,
                                  np.uint8, bool, np.complex64]))
    with np.errstate(all="ignore"):
        table["cutout"] = images.astype(dtype)
    return table, families


@fuzz_settings("gpm_resnet")
@given(case=cutout_tables())
def test_gpm_resnet_images(saved_model, case):
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

    count("gpm_resnet")
    table, families = case
    estimator = GPMResNetEstimator.load(saved_model, device="cpu", progress=False)
    out = outcome(predict_metallicity, table, estimator=estimator, progress=False)
    assert out is not None, "a cutout table of the right shape is never an error"
    flags = out["Z_pred_flag"].tolist()
    is_float = table["cutout"].dtype.kind == "f"
    for row, family in enumerate(families):
        if not is_float or family in ("zeros", "constant", "huge", "negative", "nan", "inf"):
            assert flags[row] != "ok", f"{family} cutout of {table['cutout'].dtype} got a Z"
            assert np.ma.getmaskarray(out["Z_pred"])[row]
        elif flags[row] == "ok":
            assert np.isfinite(out["Z_pred"][row])
    assert flags == cutout_flags(table["cutout"]).tolist()


@st.composite
def preprocess_cases(draw):
    table = make_estimator_table(draw(st.integers(1, 2)), seed=draw(st.integers(0, 9)),
                                 cutout_size=16)
    images = np.asarray(table["cutout"])
    family = draw(st.sampled_from(["galaxy", "zeros", "nan", "huge", "negative"]))
    if family == "zeros":
        images[:] = 0
    elif family == "nan":
        images[..., 3, 3] = np.nan
    elif family == "huge":
        images *= 1e30
    elif family == "negative":
        images *= -1
    table["cutout"] = images
    table.meta["bands"] = draw(st.sampled_from(["grz", "grz", ["g", "r", "z"], "gri", 5, None]))
    table.meta["pixel_scale"] = draw(st.sampled_from([0.262, 0.262, "0.262", "abc", None,
                                                      -1.0, np.nan, [1, 2]]))
    scale = draw(st.sampled_from([None, None, 0.262, 1 * u.m, 0.3 * u.arcsec, "x", 0]))
    return table, scale


@fuzz_settings("preprocess")
@given(case=preprocess_cases())
def test_preprocess_cutouts(case):
    count("preprocess")
    table, scale = case
    with np.errstate(all="ignore"):
        out = outcome(preprocess_cutouts, table, pixel_scale=scale, progress=False)
    if out is None:
        return
    assert len(out) == len(table)
    assert out["preprocess_ok"].dtype.kind == "b"
    for row in np.flatnonzero(out["preprocess_ok"]):
        assert np.isfinite(np.asarray(out["cutout"][row])).all()


# ------------------------------------------------------------------ the command line

@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    galaxies = make_estimator_table(6, seed=7, cutout_size=16)
    labels = galaxies.copy()
    labels.remove_column("cutout")
    labels["spectrotype"] = "GALAXY"
    for name, value in (("reliable", 1), ("z_warning", 0), ("bptclass", 1)):
        labels[name] = np.full(len(labels), value)
    labels["snmedian_r"] = 12.0
    labels["Z_pred"] = labels["oh_p50"] + 0.05
    labels["word"] = "text"
    write_table(galaxies, folder / "galaxies.h5")
    write_table(labels, folder / "labels.csv")
    (folder / "broken.fits").write_bytes(b"SIMPLE  = not a fits file")
    (folder / "folder.csv").mkdir()
    return folder


INPUTS = st.sampled_from(["galaxies.h5", "labels.csv", "broken.fits", "folder.csv",
                          "missing.ecsv", "noending"])
OUTPUTS = st.sampled_from(["out.ecsv", "out.h5", "labels.csv", "out.unknown", "folder.csv",
                           "nofolder/out.fits"])
WORDS = st.sampled_from(["Z_pred", "oh_p50", "word", "nope", "mass_metallicity",
                         "colour_polynomial", "gpm_resnt", "order=3", "bogus=1", "order=x",
                         "mass_column=word", "=1", "noequals", "-3", "0", "2.5"])


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from(["select", "crossmatch", "predict", "evaluate",
                                    "preprocess"]))
    if command == "crossmatch":
        argv = [command, draw(INPUTS), draw(INPUTS), draw(OUTPUTS)]
    elif command == "predict":
        argv = [command, draw(INPUTS), draw(OUTPUTS), "--no-progress", "--estimator",
                draw(WORDS)]
        for _ in range(draw(st.integers(0, 2))):
            argv += ["--param", draw(WORDS)]
        if draw(st.booleans()):
            argv += ["--batch-size", draw(WORDS)]
    elif command == "evaluate":
        argv = [command, draw(INPUTS), "--out", "evaluation", "--pred", draw(WORDS),
                "--true", draw(WORDS)]
    elif command == "preprocess":
        argv = [command, draw(INPUTS), draw(OUTPUTS), "--quiet"]
    else:
        argv = [command, draw(INPUTS), draw(OUTPUTS)]
        for _ in range(draw(st.integers(0, 2))):
            argv += [draw(st.sampled_from(["--z-min", "--snr-min", "--bptclass"])),
                     draw(WORDS)]
    if draw(st.booleans()):
        argv.append("--overwrite")
    return argv


@fuzz_settings("cli")
@given(argv=command_lines())
def test_cli(cli_files, argv):
    count("cli")
    stderr = io.StringIO()
    previous = os.getcwd()
    os.chdir(cli_files)
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse: a usage error, printed with the usage
                code = exc.code
    finally:
        os.chdir(previous)
    message = stderr.getvalue()
    assert code in (0, 1, 2), f"{argv}: exit {code}: {message}"
    if code == 1:
        assert message.startswith("gpm-astro: error: ") and message.count("\n") == 1, message


def test_case_count():
    """At least 1,000 generated cases a run (when the whole module ran)."""
    if set(CASES) != set(EXAMPLES):
        pytest.skip("only part of the fuzz suite ran")
    assert sum(CASES.values()) >= 1000, CASES
    assert CASES["select"] == 9 * len(TROUBLES)
