"""select_starforming and crossmatch: exact counts, brute-force checks, bad input."""

import doctest
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.table import MaskedColumn, QTable, Table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpm_astro.catalog
from gpm_astro import crossmatch, select_starforming
from gpm_astro.exceptions import EmptyResultWarning, ParameterError, SchemaError

CUT_ORDER = ["spectrotype", "reliable", "z_warning", "bptclass", "z", "snr", "metallicity"]


def test_doctests_in_catalog_module():
    result = doctest.testmod(gpm_astro.catalog, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --------------------------------------------------------------------------------------------
# select_starforming
# --------------------------------------------------------------------------------------------

def bad_row_table(string_kind="str"):
    """18 rows: every way a row can fail each cut, plus three rows that pass."""
    n = 18
    good = {"spectrotype": "GALAXY", "reliable": 1, "z_warning": 0, "bptclass": 1, "z": 0.05,
            "snmedian_r": 10.0, "oh_p50": 8.9}
    rows = [dict(good, specobjid=i) for i in range(n)]
    rows[1]["spectrotype"] = "QSO"
    rows[2]["spectrotype"] = "  GALAXY   "      # SkyServer padding: kept
    rows[4]["reliable"] = 0
    rows[5]["reliable"] = -9999
    rows[6]["z_warning"] = 4
    rows[7]["bptclass"] = 4
    rows[8]["bptclass"] = -1
    rows[9]["z"] = 0.001
    rows[10]["z"] = np.nan
    rows[11]["snmedian_r"] = 4.9
    rows[12]["snmedian_r"] = -9999.0
    rows[13]["oh_p50"] = -9999.0
    rows[14]["oh_p50"] = -99.0
    rows[15]["oh_p50"] = np.nan
    rows[17]["z"] = 0.002                     # boundaries are inclusive: kept
    rows[17]["snmedian_r"] = 5.0
    table = Table(rows=[[r[c] for c in rows[0]] for r in rows], names=list(rows[0]))
    spectro = [r["spectrotype"] for r in rows]
    if string_kind == "bytes":
        spectro = [s.encode("ascii") for s in spectro]
    mask = np.zeros(n, dtype=bool)
    mask[3] = True
    table["spectrotype"] = MaskedColumn(spectro, mask=mask)
    oh_mask = np.zeros(n, dtype=bool)
    oh_mask[16] = True
    table["oh_p50"] = MaskedColumn(table["oh_p50"], mask=oh_mask)
    return table


EXPECTED = [  # (cut, removed, missing among removed, remaining)
    ("spectrotype", 2, 1, 16),
    ("reliable", 2, 1, 14),
    ("z_warning", 1, 0, 13),
    ("bptclass", 2, 0, 11),
    ("z", 2, 1, 9),
    ("snr", 2, 1, 7),
    ("metallicity", 4, 4, 3),
]


@pytest.mark.parametrize("string_kind", ["str", "bytes"])
def test_select_starforming_exact_per_cut_counts(string_kind):
    table = bad_row_table(string_kind)
    before = table.copy()
    kept = select_starforming(table)
    assert list(kept["specobjid"]) == [0, 2, 17]
    report = kept.meta["gpm_astro"]["select_starforming"]
    assert [(c["cut"], c["removed"], c["missing"], c["remaining"]) for c in report] == EXPECTED
    assert kept.colnames == table.colnames
    assert kept.meta["gpm_astro"]["steps"][-1]["step"] == "select_starforming"
    # input untouched, meta included
    assert table.meta == before.meta == {}
    assert all(np.all(table[c] == before[c]) for c in table.colnames
               if table[c].dtype.kind != "f")


def test_select_starforming_thresholds_are_keywords():
    table = bad_row_table()
    relaxed = select_starforming(table, bptclass=(1, 4), z_min=0.0005, snr_min=None,
                                 require_metallicity=False)
    # bptclass 4 now passes; z 0.001 passes; snr and metallicity skipped
    assert list(relaxed["specobjid"]) == [0, 2, 7, 9, 11, 12, 13, 14, 15, 16, 17]
    report = {c["cut"]: c for c in relaxed.meta["gpm_astro"]["select_starforming"]}
    assert report["snr"]["rule"] == "skipped" and report["snr"]["removed"] == 0
    assert [c["cut"] for c in relaxed.meta["gpm_astro"]["select_starforming"]] == CUT_ORDER


def test_select_starforming_column_names_are_keywords():
    table = bad_row_table()
    table.rename_column("snmedian_r", "sn_median")
    with pytest.raises(SchemaError, match="snmedian_r.*sn_median"):
        select_starforming(table)
    kept = select_starforming(table, snr_column="sn_median")
    assert list(kept["specobjid"]) == [0, 2, 17]
    # a skipped cut does not need its column
    table.remove_column("sn_median")
    assert len(select_starforming(table, snr_min=None)) == 5


def test_select_starforming_missing_column_lists_present_ones():
    table = bad_row_table()
    table.remove_column("bptclass")
    with pytest.raises(SchemaError) as info:
        select_starforming(table)
    assert "'bptclass'" in str(info.value)
    assert "specobjid" in str(info.value) and "oh_p50" in str(info.value)


def test_select_starforming_empty_input_and_empty_result_keep_schema():
    table = bad_row_table()
    with pytest.warns(EmptyResultWarning):
        empty = select_starforming(table[:0])
    assert empty.colnames == table.colnames and len(empty) == 0
    with pytest.warns(EmptyResultWarning, match="none of the 18"):
        none_left = select_starforming(table, z_min=5.0)
    assert none_left.colnames == table.colnames and len(none_left) == 0
    assert none_left.meta["gpm_astro"]["select_starforming"][4]["remaining"] == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"z_min": "0.002"}, "z_min must be a real number"),
    ({"z_min": np.inf}, "z_min must be finite"),
    ({"snr_min": True}, "snr_min must be a real number"),
    ({"bptclass": 1.0}, "bptclass must be an int"),
    ({"bptclass": ()}, "at least one"),
    ({"spectrotype": 3}, "spectrotype must be a str"),
    ({"require_metallicity": 1}, "require_metallicity must be True or False"),
    ({"z_column": 3}, "column name for the z cut"),
])
def test_select_starforming_bad_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        select_starforming(bad_row_table(), **kwargs)


def test_select_starforming_wrong_types():
    with pytest.raises(TypeError, match="astropy.table.Table, got dict"):
        select_starforming({"z": [0.1]})
    table = bad_row_table()
    table["reliable"] = table["reliable"].astype(str)
    with pytest.raises(SchemaError, match="reliable.*needs a numeric column.*'reliable'"):
        select_starforming(table)
    table = bad_row_table()
    table["spectrotype"] = np.arange(len(table))
    with pytest.raises(SchemaError, match="compares strings"):
        select_starforming(table)


def _row_passes(row):
    def present(value):
        return not (np.ma.is_masked(value) or not np.isfinite(value) or value in (-9999, -99))
    return (row["spectrotype"].strip() == "GALAXY" and row["reliable"] == 1
            and row["z_warning"] == 0 and row["bptclass"] == 1
            and present(row["z"]) and row["z"] >= 0.002
            and present(row["snmedian_r"]) and row["snmedian_r"] >= 5
            and present(row["oh_p50"]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(0, 60))
def test_select_starforming_matches_row_by_row_rule(seed, n):
    rng = np.random.default_rng(seed)
    table = Table({
        "specobjid": np.arange(n),
        "spectrotype": rng.choice(["GALAXY", " GALAXY", "QSO", "STAR", "GALAXY  "], n),
        "reliable": rng.choice([0, 1, 1, 1, -9999], n),
        "z_warning": rng.choice([0, 0, 0, 4, 16], n),
        "bptclass": rng.choice([-1, 1, 1, 2, 3, 4, 5], n),
        "z": rng.choice([0.0, 0.001, 0.002, 0.05, 0.3, -9999.0, np.nan], n),
        "snmedian_r": rng.choice([1.0, 5.0, 4.99, 20.0, -99.0, np.nan], n),
        "oh_p50": rng.choice([8.5, 9.1, -9999.0, -99.0, np.nan], n),
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyResultWarning)
        kept = select_starforming(table)
    expected = [row["specobjid"] for row in table if _row_passes(row)]
    assert list(kept["specobjid"]) == expected
    report = kept.meta["gpm_astro"]["select_starforming"]
    assert sum(c["removed"] for c in report) == n - len(expected)
    assert report[-1]["remaining"] == len(expected)


# --------------------------------------------------------------------------------------------
# crossmatch
# --------------------------------------------------------------------------------------------

def haversine_deg(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    a = (np.sin((dec2 - dec1) / 2) ** 2
         + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2)
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(a, 0, 1))))


def brute_force(label_ra, label_dec, image_ra, image_dec, radius_arcsec, one_to_one=False):
    """Nearest image of every label by all-pairs haversine; -1 where none within radius."""
    sep = haversine_deg(label_ra[:, None], label_dec[:, None],
                        image_ra[None, :], image_dec[None, :]) * 3600
    nearest = np.argmin(sep, axis=1)
    best = sep[np.arange(len(label_ra)), nearest]
    index = np.where(best <= radius_arcsec, nearest, -1)
    if one_to_one:
        for image in np.unique(index[index >= 0]):
            claimants = np.flatnonzero(index == image)
            winner = claimants[np.argmin(best[claimants])]
            index[claimants[claimants != winner]] = -2
    return index, best


def random_sky(rng, n_images, n_labels, region):
    """Images in a small region (RA across 0/360 or around a pole); labels near some of them."""
    if region == "ra_wrap":
        image_ra = np.mod(rng.uniform(-0.05, 0.05, n_images), 360.0)
        image_dec = rng.uniform(-0.05, 0.05, n_images)
    elif region in ("north_pole", "south_pole"):
        sign = 1 if region == "north_pole" else -1
        image_ra = rng.uniform(0, 360, n_images)
        image_dec = sign * (90 - rng.uniform(0, 0.05, n_images))
    else:
        image_ra = rng.uniform(120, 120.1, n_images)
        image_dec = rng.uniform(30, 30.1, n_images)
    picks = rng.integers(0, n_images, n_labels)
    # offsets up to 3 arcsec in a random direction, applied on the sphere
    offset = rng.uniform(0, 3.0, n_labels) * u.arcsec
    angle = rng.uniform(0, 360, n_labels) * u.deg
    from astropy.coordinates import SkyCoord

    moved = SkyCoord(image_ra[picks] * u.deg, image_dec[picks] * u.deg).directional_offset_by(
        angle, offset)
    return image_ra, image_dec, moved.ra.deg, moved.dec.deg


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1),
       region=st.sampled_from(["ra_wrap", "north_pole", "south_pole", "plain"]),
       with_units=st.booleans(), one_to_one=st.booleans(),
       radius=st.sampled_from([0.5, 1.0, 2.0]))
def test_crossmatch_equals_brute_force(seed, region, with_units, one_to_one, radius):
    rng = np.random.default_rng(seed)
    image_ra, image_dec, label_ra, label_dec = random_sky(rng, 150, 120, region)
    labels = Table({"specobjid": np.arange(len(label_ra)), "ra": label_ra, "dec": label_dec})
    images = Table({"objid": np.arange(len(image_ra)) + 1000, "ra": image_ra,
                    "dec": image_dec})
    if with_units:
        labels["ra"].unit = u.deg
        labels["dec"].unit = u.deg
        images["ra"] = (image_ra * u.deg).to(u.rad)   # other angle unit: converted
        images["dec"] = (image_dec * u.deg).to(u.rad)
    out = crossmatch(labels, images, radius=radius * u.arcsec, one_to_one=one_to_one)
    expected, best = brute_force(label_ra, label_dec, image_ra, image_dec, radius, one_to_one)

    assert len(out) == len(labels)
    assert list(out["specobjid"]) == list(labels["specobjid"])
    matched = expected >= 0
    assert np.array_equal(np.asarray(out["matched"]), matched)
    assert np.array_equal(np.asarray(out["objid"][matched]), expected[matched] + 1000)
    assert np.allclose(out["separation"][matched], best[matched], rtol=1e-6, atol=1e-5)
    assert np.all(out["separation"].mask == ~matched)
    assert np.all(out["objid"].mask == ~matched)
    flags = np.where(expected == -2, "image_taken", np.where(matched, "ok", "no_match"))
    assert list(out["match_flag"]) == list(flags)
    if one_to_one:
        taken = np.asarray(out["objid"][matched])
        assert len(np.unique(taken)) == len(taken)
    assert out["separation"].unit == u.arcsec


def test_crossmatch_wraparound_and_pole_exact():
    labels = Table({"ra": [359.99995, 0.0, 45.0], "dec": [10.0, 89.9999, -89.9999995]})
    images = Table({"ra": [0.00005, 180.0, 225.0], "dec": [10.0, 89.9999, -89.9999995]})
    out = crossmatch(labels, images, radius=1 * u.arcsec)
    assert list(out["matched"]) == [True, True, True]
    expected = haversine_deg(labels["ra"], labels["dec"], images["ra"], images["dec"]) * 3600
    assert np.allclose(out["separation"], expected, atol=1e-6)
    # across the pole: 2 x 0.0001 deg = 0.72 arcsec
    assert out["separation"][1] == pytest.approx(0.72, abs=1e-4)


def test_crossmatch_keeps_rows_columns_meta_and_cutouts():
    rng = np.random.default_rng(1)
    labels = Table({"specobjid": [10, 11, 12, 13], "ra": [10.0, 20.0, 30.0, 40.0],
                    "dec": [1.0, 2.0, 3.0, 4.0], "oh_p50": [8.9, 9.0, 8.7, 8.8]},
                   meta={"survey": "sdss"})
    cutouts = rng.normal(size=(3, 3, 152, 152)).astype(np.float32)
    images = Table({"ra": [30.0, 10.0 + 0.5 / 3600, 99.0], "dec": [3.0, 1.0, 5.0],
                    "objid": [5, 6, 7], "flux_r": [1.0, 2.0, 3.0] * u.nanomaggy,
                    "cutout": cutouts}, meta={"bands": "grz", "pixel_scale": 0.262,
                                              "survey": "ls"})
    labels_before, images_before = labels.copy(), images.copy()
    out = crossmatch(labels, images)
    assert out.colnames == ["specobjid", "ra", "dec", "oh_p50", "ra_image", "dec_image",
                            "objid", "flux_r", "cutout", "separation", "matched",
                            "match_flag"]
    assert list(out["objid"].filled(-1)) == [6, -1, 5, -1]
    assert out["cutout"].shape == (4, 3, 152, 152)
    assert out["cutout"].dtype == np.float32
    assert np.array_equal(out["cutout"][0].data, cutouts[1])
    assert np.array_equal(out["cutout"][2].data, cutouts[0])
    assert out["cutout"].mask[1].all() and not out["cutout"].mask[0].any()
    assert out["flux_r"].unit == u.nanomaggy
    assert out["separation"][0] == pytest.approx(0.5 * np.cos(np.radians(1.0)), rel=1e-6)
    assert out.meta["survey"] == "sdss" and out.meta["bands"] == "grz"
    assert out.meta["pixel_scale"] == 0.262
    step = out.meta["gpm_astro"]["steps"][-1]
    assert step["step"] == "crossmatch"
    assert step["params"]["counts"] == {"ok": 2, "no_match": 2, "invalid_coordinates": 0,
                                        "image_taken": 0}
    assert labels.meta == labels_before.meta and "gpm_astro" not in labels.meta
    assert labels.colnames == labels_before.colnames
    assert images.colnames == images_before.colnames


def test_crossmatch_one_to_one_gives_image_to_closer_label():
    labels = Table({"id": [1, 2, 3], "ra": [10.0 + 0.8 / 3600, 10.0 + 0.3 / 3600, 50.0],
                    "dec": [0.0, 0.0, 0.0]})
    images = Table({"objid": [1, 2], "ra": [10.0, 10.0 + 2.5 / 3600], "dec": [0.0, 0.0]})
    shared = crossmatch(labels, images)
    assert list(shared["objid"].filled(-1)) == [1, 1, -1]
    unique = crossmatch(labels, images, one_to_one=True)
    assert list(unique["objid"].filled(-1)) == [-1, 1, -1]
    assert list(unique["match_flag"]) == ["image_taken", "ok", "no_match"]
    # equal separations: the first label in order keeps the image
    tie = Table({"ra": [10.0, 10.0], "dec": [0.5 / 3600, -0.5 / 3600]})
    out = crossmatch(tie, images[:1], one_to_one=True)
    assert list(out["match_flag"]) == ["ok", "image_taken"]


def test_crossmatch_invalid_coordinates_are_flagged_rows():
    labels = Table({"ra": MaskedColumn([10.0, np.nan, 10.0, 10.0, 10.0],
                                       mask=[False, False, True, False, False]),
                    "dec": [0.0, 0.0, 0.0, 91.0, 0.0]})
    images = Table({"ra": [np.nan, 10.0], "dec": [0.0, 0.0], "objid": [1, 2]})
    out = crossmatch(labels, images)
    assert list(out["match_flag"]) == ["ok", "invalid_coordinates", "invalid_coordinates",
                                       "invalid_coordinates", "ok"]
    assert list(out["objid"].filled(-1)) == [2, -1, -1, -1, 2]
    assert out.meta["gpm_astro"]["steps"][-1]["params"]["n_images_invalid"] == 1


def test_crossmatch_radius_forms():
    labels = Table({"ra": [10.0], "dec": [0.0]})
    images = Table({"ra": [10.0 + 1.5 / 3600], "dec": [0.0]})
    assert not crossmatch(labels, images)["matched"][0]
    assert crossmatch(labels, images, radius=2.0)["matched"][0]           # plain number: arcsec
    assert crossmatch(labels, images, radius=0.001 * u.deg)["matched"][0]
    assert crossmatch(QTable(labels), QTable(images), radius=2)["matched"][0]


@pytest.mark.parametrize("radius, match", [
    (0 * u.arcsec, "positive"), (-1.0, "positive"), (np.nan, "positive"),
    (1 * u.m, "must be an angle"), ("1 arcsec", "positive angle"), (True, "positive angle"),
    ([1, 2] * u.arcsec, "positive angle"),
])
def test_crossmatch_bad_radius(radius, match):
    table = Table({"ra": [1.0], "dec": [1.0]})
    with pytest.raises(ParameterError, match=match):
        crossmatch(table, table, radius=radius)


def test_crossmatch_bad_inputs():
    good = Table({"ra": [1.0], "dec": [1.0]})
    with pytest.raises(TypeError, match="labels must be an astropy.table.Table, got list"):
        crossmatch([1, 2], good)
    with pytest.raises(TypeError, match="images must be"):
        crossmatch(good, np.zeros(3))
    with pytest.raises(SchemaError, match=r"\['dec'\].*columns present: \['ra'\]"):
        crossmatch(Table({"ra": [1.0]}), good)
    with pytest.raises(SchemaError, match="unit.*not an angle"):
        crossmatch(Table({"ra": [1.0] * u.m, "dec": [1.0] * u.deg}), good)
    with pytest.raises(SchemaError, match="must hold numbers"):
        crossmatch(Table({"ra": ["10:00:00"], "dec": [1.0]}), good)
    with pytest.raises(ParameterError, match="one_to_one must be True or False"):
        crossmatch(good, good, one_to_one="yes")
    clash = Table({"ra": [1.0], "dec": [1.0], "ra_image": [2.0]})
    with pytest.raises(SchemaError, match="'ra_image' clashes"):
        crossmatch(clash, good)


def test_crossmatch_duplicated_ids():
    labels = Table({"specobjid": [1, 2, 1], "ra": [1.0, 2.0, 3.0], "dec": [0.0, 0.0, 0.0]})
    images = Table({"brickid": [5, 5, 6], "objid": [1, 2, 1], "ra": [1.0, 2.0, 3.0],
                    "dec": [0.0, 0.0, 0.0]})
    with pytest.raises(SchemaError, match=r"labels id \['specobjid'\] is duplicated.*\[1\]"):
        crossmatch(labels, images, label_id="specobjid")
    out = crossmatch(labels[:2], images, label_id="specobjid", image_id=("brickid", "objid"))
    assert list(out["matched"]) == [True, True]
    images["objid"][1] = 1
    with pytest.raises(SchemaError, match=r"images id.*duplicated.*\(5, 1\)"):
        crossmatch(labels[:2], images, image_id=("brickid", "objid"))
    with pytest.raises(SchemaError, match="nope"):
        crossmatch(labels, images, label_id="nope")
    # without ids, duplicated label rows are matched independently (documented)
    twice = Table({"ra": [1.0, 1.0], "dec": [0.0, 0.0]})
    assert list(crossmatch(twice, images)["matched"]) == [True, True]


def test_crossmatch_empty_tables_keep_schema():
    labels = Table({"specobjid": [1, 2], "ra": [1.0, 2.0], "dec": [0.0, 0.0]})
    images = Table({"objid": [1], "ra": [1.0], "dec": [0.0],
                    "cutout": np.zeros((1, 3, 4, 4), np.float32)})
    with pytest.warns(EmptyResultWarning):
        empty = crossmatch(labels[:0], images)
    assert len(empty) == 0
    assert empty.colnames == ["specobjid", "ra", "dec", "objid", "ra_image", "dec_image",
                              "cutout", "separation", "matched", "match_flag"]
    no_images = crossmatch(labels, images[:0])
    assert list(no_images["match_flag"]) == ["no_match", "no_match"]
    assert no_images["cutout"].shape == (2, 3, 4, 4) and no_images["cutout"].mask.all()
