"""Tests of the mock sky: population, truth cases, catalogues, cutouts, determinism."""

import os

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table

from gpm_astro.exceptions import ParameterError
from gpm_astro_plugins.mock import (EXPECTED_FLAG, LABEL_CUTS, TRUTH_CASES, MockSky,
                                    MockSource, PopulationModel, mzr_tremonti)
from gpm_astro_plugins.mock.sky import polynomial_design

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def sky_data():
    return MockSky(n_galaxies=120, seed=11).generate()


@pytest.fixture(scope="module")
def big_catalog():
    """Catalogue part only (no cutouts): cheap for thousands of galaxies."""
    return MockSky(n_galaxies=4000, seed=5).catalog()


def _failing_cuts(labels):
    """Per cut, which rows fail it, read straight from the SkyServer-named columns."""
    return {
        "spectrotype": np.char.strip(np.asarray(labels["spectrotype"], dtype=str)) != "GALAXY",
        "reliable": np.asarray(labels["reliable"]) != 1,
        "z_warning": np.asarray(labels["z_warning"]) != 0,
        "bptclass": np.asarray(labels["bptclass"]) != 1,
        "z": np.asarray(labels["z"]) < 0.002,
        "snmedian_r": np.asarray(labels["snmedian_r"]) < 5,
        "oh_p50": np.asarray(labels["oh_p50"]) == -9999,
    }


def test_label_table_has_rows_for_every_cut(sky_data):
    labels = sky_data.labels
    failing = _failing_cuts(labels)
    assert set(failing) == set(LABEL_CUTS)
    for cut, fails in failing.items():
        assert fails.sum() >= 1, f"no label row fails the {cut} cut"
    # every defective row fails exactly one cut, so each cut's count does not depend on order
    n_failed = np.sum(list(failing.values()), axis=0)
    assert n_failed.max() == 1
    # non-galaxy spectra are blank-padded as SkyServer returns them
    non_galaxy = np.asarray(labels["spectrotype"], dtype=str)[failing["spectrotype"]]
    assert all(s != s.strip() for s in non_galaxy)


def test_select_starforming_removes_rows_at_every_cut(sky_data):
    from gpm_astro.catalog import select_starforming

    labels = sky_data.labels
    kept = select_starforming(labels)
    report = kept.meta["gpm_astro"]["select_starforming"]
    assert len(report) == 7
    assert all(step["removed"] >= 1 for step in report), report
    n_bad = np.sum(list(_failing_cuts(labels).values()), axis=0).astype(bool)
    assert len(kept) == int((~n_bad).sum())


def test_label_values_consistent_with_truth(sky_data):
    labels, truth = sky_data.labels, sky_data.truth
    labelled = truth[truth["specobjid"] >= 0]
    index = {int(s): i for i, s in enumerate(labels["specobjid"])}
    rows = np.array([index[int(s)] for s in labelled["specobjid"]])
    good = np.asarray(labels["oh_p50"][rows]) > -9000
    delta = np.asarray(labels["oh_p50"][rows])[good] - np.asarray(labelled["Z_true"])[good]
    assert 0.02 < np.std(delta) < 0.07
    assert np.all(labels["oh_p16"][rows][good] < labels["oh_p50"][rows][good])
    assert np.all(labels["oh_p84"][rows][good] > labels["oh_p50"][rows][good])
    assert np.all(labels["oh_p2p5"][rows][good] < labels["oh_p16"][rows][good])
    mass_error = np.asarray(labels["lgm_tot_p50"][rows]) - np.asarray(labelled["logmstar"])
    assert np.std(mass_error) < 0.15
    assert np.all(labels["lgm_fib_p50"][rows] < labels["lgm_tot_p50"][rows] + 0.4)
    # labels without an image exist
    assert len(labels) > len(labelled)


def test_label_positions_offset_from_images(sky_data):
    labels, images, truth = sky_data.labels, sky_data.images, sky_data.truth
    has_label = truth["specobjid"] >= 0
    index = {int(s): i for i, s in enumerate(labels["specobjid"])}
    rows = np.array([index[int(s)] for s in truth["specobjid"][has_label]])
    image_pos = SkyCoord(images["ra"][has_label], images["dec"][has_label])
    label_pos = SkyCoord(labels["ra"][rows], labels["dec"][rows])
    separation = image_pos.separation(label_pos).arcsec
    assert np.all(separation > 0)
    assert 0.1 < np.median(separation) < 0.3
    assert separation.max() < 1.5


def test_truth_cases_occur_at_configured_rates(big_catalog):
    _, _, truth = big_catalog
    n = len(truth)
    rates = MockSky().case_rates
    for case in TRUTH_CASES:
        observed = np.sum(truth["truth_case"] == case)
        expected = rates[case] * n
        sigma = np.sqrt(n * rates[case] * (1 - rates[case]))
        assert abs(observed - expected) < 4 * sigma, (case, observed, expected)
    assert all(truth["expected_flag"] == [EXPECTED_FLAG[c] for c in truth["truth_case"]])


def test_custom_rates_are_used():
    sky = MockSky(n_galaxies=2000, seed=2, blend_rate=0.3, large_rate=0.0, empty_rate=0.2,
                  bad_pixel_rate=0.0)
    _, _, truth = sky.catalog()
    assert np.sum(truth["truth_case"] == "too_large") == 0
    assert abs(np.mean(truth["truth_case"] == "blended") - 0.3) < 4 * np.sqrt(0.21 / 2000)
    assert abs(np.mean(truth["truth_case"] == "empty_centre") - 0.2) < 4 * np.sqrt(0.16 / 2000)


def test_metallicity_follows_documented_relation_in_mass_bins(big_catalog):
    _, _, truth = big_catalog
    model = PopulationModel()
    x = np.asarray(truth["logmstar"])
    z_true = np.asarray(truth["Z_true"])
    expected = mzr_tremonti(x) + model.fmr_slope * np.asarray(truth["ssfr_offset"])
    assert x.min() >= 8.5 and x.max() <= 11.5
    for lo in np.arange(9.0, 11.5, 0.5):
        in_bin = (x >= lo) & (x < lo + 0.5)
        if in_bin.sum() < 50:
            continue
        # the scatter is the mass-dependent one: sigma(x) = 0.07 * 10 ** (0.4 * (10 - x))
        scaled = (z_true[in_bin] - expected[in_bin]) / model.scatter_at(x[in_bin])
        tolerance = 4 / np.sqrt(in_bin.sum())
        assert abs(scaled.mean()) < tolerance, (lo, scaled.mean())
        assert abs(scaled.std() - 1.0) < 0.2, (lo, scaled.std())
        # the plain MZR holds on average up to the selection's bias of the sSFR offset
        assert abs(np.mean(z_true[in_bin] - mzr_tremonti(x[in_bin]))) < 0.1


def _poly_sigma(features, target, order):
    """Fit a full polynomial on the first half, return the std of residuals on the second."""
    design = polynomial_design((features - features.mean(0)) / features.std(0), order)
    half = len(target) // 2
    coef, *_ = np.linalg.lstsq(design[:half], target[:half], rcond=None)
    return np.std(target[half:] - design[half:] @ coef)


def test_colour_alone_is_worse_than_the_noise_floor(big_catalog):
    _, images, truth = big_catalog
    use = (truth["truth_case"] == "clean") & truth["labelled"]
    mags = np.column_stack([images[f"mag_{b}"][use].filled(np.nan) for b in "grz"])
    colours = np.column_stack([mags[:, 0] - mags[:, 1], mags[:, 1] - mags[:, 2]])
    z_true = np.asarray(truth["Z_true"][use])
    colour_sigma = _poly_sigma(colours, z_true, 2)
    floor = np.std(z_true - np.asarray(truth["Z_best"][use]))
    assert PopulationModel().intrinsic_scatter < floor < 0.12
    assert colour_sigma > floor + 0.01
    assert truth.meta["noise_floor_clean_labelled"] == pytest.approx(floor)


def test_per_galaxy_floor_varies_and_matches_the_residuals(big_catalog):
    _, _, truth = big_catalog
    use = (truth["truth_case"] == "clean") & truth["labelled"]
    floor = np.asarray(truth["Z_floor"][use])
    residual = np.asarray(truth["Z_true"][use] - truth["Z_best"][use])
    assert np.all(np.isfinite(floor)) and np.all(floor > 0)
    # some galaxies are at least twice as hard to measure as others
    assert np.percentile(floor, 95) > 2 * np.percentile(floor, 5)
    # in each fifth of the floor, the noise-free residual's rms is at most the floor (the
    # floor adds what the pixels hide) and not far below it
    edges = np.quantile(floor, [0.2, 0.4, 0.6, 0.8])
    fifth = np.digitize(floor, edges)
    for k in range(5):
        ratio = np.sqrt(np.mean(residual[fifth == k] ** 2) / np.mean(floor[fifth == k] ** 2))
        assert 0.8 < ratio < 1.12, (k, ratio)
    assert truth.meta["per_galaxy_floor_rms_clean_labelled"] == pytest.approx(
        np.sqrt(np.mean(floor ** 2)))


def test_per_galaxy_floor_grows_with_pixel_noise():
    from gpm_astro_plugins.mock.measurement import feature_covariance

    gal = {"bulge_flux": np.array([[1.0, 2.0, 3.0]]), "disk_flux": np.array([[3.0, 5.0, 7.0]]),
           "disk_hlr_arcsec": np.array([1.0]), "bulge_hlr_arcsec": np.array([0.3]),
           "disk_q": np.array([0.6]), "bulge_q": np.array([0.8]),
           "position_angle": np.array([30.0])}
    prior = np.eye(9)
    sigmas = []
    for sky in (0.01, 0.1):
        observing = {"psf_fwhm": np.full((1, 3), 1.3), "sky_sigma": np.full((1, 3), sky)}
        cov = feature_covariance(gal, observing, prior, pixel_scale=0.262,
                                 gains=(6900.0, 9000.0, 1600.0), moffat_beta=3.5)
        sigmas.append(np.sqrt(np.diag(cov[0])))
    # ten times the sky noise: the colours' errors grow (nearly) tenfold
    assert np.all(sigmas[1][:2] > 5 * sigmas[0][:2])


def test_labelled_and_faint_magnitudes(big_catalog):
    _, images, truth = big_catalog
    mag_r = np.asarray(truth["mag_true"][:, 1])
    labelled = np.asarray(truth["labelled"])
    assert np.percentile(mag_r[labelled], 1) > 14.3
    assert np.percentile(mag_r[labelled], 99) < 17.85
    assert np.median(mag_r[~labelled]) > 18.5
    assert set(images["release"]) <= {9010, 9011}
    assert set(images["source_type"]) <= {"EXP", "DEV", "REX", "SER", "PSF"}
    exp_unlabelled = (images["source_type"] == "EXP") & ~labelled
    assert exp_unlabelled.sum() > 0.2 * (~labelled).sum()
    # (brickid, objid) identifies a galaxy
    pairs = set(zip(images["brickid"].tolist(), images["objid"].tolist()))
    assert len(pairs) == len(images)
    # the archive is sorted by decreasing z flux
    assert np.all(np.diff(images["flux_z"]) <= 0)


def test_cutouts_by_truth_case(sky_data):
    images, truth = sky_data.images, sky_data.truth
    cutouts = images["cutout"]
    assert cutouts.shape == (len(truth), 3, 152, 152)
    assert cutouts.dtype == np.float32
    assert images.meta["bands"] == "grz" and images.meta["pixel_scale"] == 0.262
    yy, xx = np.mgrid[:152, :152]
    core = np.hypot(xx - 75.5, yy - 75.5) < 4
    for i, case in enumerate(truth["truth_case"]):
        image = cutouts[i]
        if case == "bad_pixels":
            assert np.isnan(image).any() or np.all(image == 0)
        else:
            assert np.all(np.isfinite(image))
        # the mean of the ~50 core pixels has noise sigma / 7
        sigma = float(truth["sky_sigma"][i, 1])
        if case in ("clean", "blended", "too_large"):
            # the target is at the centre: its core is far above the sky in r
            assert image[1][core].mean() > (5 if truth["labelled"][i] else 1.5) * sigma
        if case == "empty_centre":
            assert abs(image[1][core].mean()) < 0.6 * sigma


def test_catalogue_flux_matches_cutout(sky_data):
    images, truth = sky_data.images, sky_data.truth
    yy, xx = np.mgrid[:152, :152]
    clean = np.flatnonzero((truth["truth_case"] == "clean") & truth["labelled"])
    assert len(clean) >= 10
    for i in clean:
        # inside the zone kept free of neighbours (isophote ~2.5 hlr, plus 25 px)
        radius = 2.5 * float(truth["hlr_arcsec"][i]) / 0.262 + 25
        aperture = np.hypot(xx - 75.5, yy - 75.5) < radius
        measured = images["cutout"][i][1][aperture].sum()
        assert measured == pytest.approx(float(images["flux_r"][i]), rel=0.15)


def test_same_seed_same_data_and_different_seed_differs():
    first = MockSky(n_galaxies=10, seed=3).generate()
    second = MockSky(n_galaxies=10, seed=3).generate()
    third = MockSky(n_galaxies=10, seed=4).generate()
    np.testing.assert_array_equal(first.images["cutout"], second.images["cutout"])
    for name in ("labels", "truth"):
        a, b = getattr(first, name), getattr(second, name)
        assert a.colnames == b.colnames
        for col in a.colnames:
            np.testing.assert_array_equal(np.asarray(a[col]), np.asarray(b[col]))
    assert not np.array_equal(first.truth["Z_true"], third.truth["Z_true"])


def test_iter_generate_matches_generate():
    sky = MockSky(n_galaxies=7, seed=8)
    whole = sky.generate()
    chunks = list(sky.iter_generate(chunk_size=3))
    assert [len(c.images) for c in chunks] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([c.images["cutout"] for c in chunks]),
                                  whole.images["cutout"])
    assert len(chunks[0].labels) == len(whole.labels) and len(chunks[1].labels) == 0


def test_write_files_and_identical_bytes(tmp_path):
    import h5py

    first = MockSky(n_galaxies=9, seed=21).write(tmp_path / "a", chunk_size=4, rows_per_file=5)
    second = MockSky(n_galaxies=9, seed=21).write(tmp_path / "b", chunk_size=4,
                                                  rows_per_file=5)
    rechunked = MockSky(n_galaxies=9, seed=21).write(tmp_path / "c", chunk_size=2,
                                                     rows_per_file=5)
    assert [p.name for p in first["images"]] == ["images_npix152_000000000_000000005.h5",
                                                  "images_npix152_000000005_000000009.h5"]
    for a, b in zip(first["images"], second["images"]):
        assert a.read_bytes() == b.read_bytes()
    # drawn in other chunks, the files' datasets are still byte-identical
    for a, c in zip(first["images"], rechunked["images"]):
        with h5py.File(a, "r") as fa, h5py.File(c, "r") as fc:
            assert list(fa) == list(fc)
            for name in fa:
                assert fa[name].dtype == fc[name].dtype
                assert fa[name][...].tobytes() == fc[name][...].tobytes()
    labels = Table.read(first["labels"])
    truth = Table.read(first["truth"])
    assert len(truth) == 9 and "truth_case" in truth.colnames
    assert "oh_p50" in labels.colnames
    with pytest.raises(ParameterError, match="exists"):
        MockSky(n_galaxies=9, seed=21).write(tmp_path / "a")


def test_data_write(tmp_path, sky_data):
    paths = sky_data.write(tmp_path)
    assert paths["labels"].exists() and paths["truth"].exists()
    assert len(paths["images"]) == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"n_galaxies": -1}, "n_galaxies"),
    ({"n_galaxies": 2.5}, "n_galaxies"),
    ({"seed": -3}, "seed"),
    ({"blend_rate": 1.5}, "blend_rate"),
    ({"empty_rate": -0.1}, "empty_rate"),
    ({"labelled_fraction": 2}, "labelled_fraction"),
    ({"blend_rate": 0.5, "large_rate": 0.4, "empty_rate": 0.2}, "must not exceed 1"),
    ({"population": "default"}, "population"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        MockSky(**kwargs).catalog()


def test_unwritable_path(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ParameterError, match="a_file"):
        MockSky(n_galaxies=2, seed=0).write(blocker / "sub")


def test_zero_galaxies():
    labels, images, truth = MockSky(n_galaxies=0, seed=0).catalog()
    assert len(images) == 0 and len(truth) == 0 and len(labels) == 0


def test_registered_as_data_source(monkeypatch, fresh_plugins):
    # load only this plugin, through its entry point as any third-party plugin
    monkeypatch.setenv(fresh_plugins.PLUGINS_ENV_VAR, "mock")
    fresh_plugins.reset_plugins()
    cls = fresh_plugins.get_source("mock")
    assert cls is MockSource
    source = cls(n_galaxies=6, seed=9)
    images = source.query(table="images")
    assert len(images) == 6 and "cutout" in images.colnames
    assert len(source.query(table="truth")) == 6
    assert sum(len(t) for t in source.iter_query(table="images", chunk_size=4)) == 6
    assert sum(len(t) for t in source.iter_query(table="labels", chunk_size=4)) == \
        len(source.query(table="labels"))
    with pytest.raises(ParameterError, match="table"):
        source.query(table="spectra")
