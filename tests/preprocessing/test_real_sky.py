"""What real galaxies bring to the preprocessing: clumpy discs, and saturation by its shape."""

import numpy as np
from astropy.table import Table

from gpm_astro.preprocessing import preprocess_cutouts
from gpm_astro_plugins.mock.rendering import Clumps, CutoutRenderer, _counts_per_nanomaggy
from gpm_astro_plugins.preprocessing.common import CheckPixels

from . import constructed as C


def mock_disc(clumps=None, companion=None, seed=0):
    """A mock disc (GalSim, Moffat PSF, mock-sky noise), optionally clumpy and with a
    companion (flux ratio, separation px) close enough to leave no saddle."""
    renderer = CutoutRenderer(counts_per_nanomaggy=_counts_per_nanomaggy())
    canvas = renderer.blank()
    psf = renderer.psf_model([1.35, 1.3, 1.25])
    centre = renderer.centre
    disk = np.array([4.0, 6.0, 8.0])
    renderer.add_galaxy(canvas, psf, x=centre, y=centre, bulge_flux=0.1 * disk,
                        disk_flux=disk, bulge_hlr=0.4, disk_hlr=1.6, bulge_q=0.9, disk_q=0.6,
                        position_angle=30.0, clumps=clumps)
    if companion is not None:
        ratio, separation = companion
        renderer.add_galaxy(canvas, psf, x=centre + separation, y=centre + 1.0,
                            bulge_flux=np.zeros(3), disk_flux=ratio * 1.1 * disk,
                            bulge_hlr=0.1, disk_hlr=0.8, bulge_q=1.0, disk_q=0.8,
                            position_angle=100.0)
    return renderer.add_noise(np.random.default_rng(seed), canvas, [0.004, 0.007, 0.026])


def test_default_keeps_clumpy_discs_and_rejects_a_companion_without_saddle():
    clumpy = [mock_disc(Clumps(0.4, 0.1, n, seed=s), seed=s)
              for s, n in zip(range(4), (8, 12, 16, 24))]
    pair = mock_disc(companion=(0.6, 9.0), seed=12)  # a shoulder: no saddle between the two
    table = Table({"cutout": np.stack(clumpy + [pair])})
    out = preprocess_cutouts(table, progress=False)
    assert out["preprocess_flag"].tolist() == ["ok"] * 4 + ["blended"]
    assert np.all(out["companion"][:4] < 0.12) and out["companion"][4] > 0.12
    # the saddle test alone lets the pair through: the companion test caught it
    saddle_only = preprocess_cutouts(table, steps=[
        "check_pixels", "mask_neighbours",
        ("size_limit", {"max_radius": 6.0, "region": "flux_fraction"}),
        ("blend_check", {"contrast": 0.03}), "fragment_check"], progress=False)
    assert saddle_only["preprocess_flag"][4] == "ok"


def saturated_star(image, x, y, level=35.0, trail=14):
    """A DR9-like saturated star: a flat top at ``level`` nanomaggies and a bleed trail."""
    yy, xx = np.mgrid[:image.shape[1], :image.shape[2]]
    wings = 60.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.5 ** 2))
    star = np.minimum(wings, level)
    star[int(y) - trail:int(y) + trail, int(x) - 1:int(x) + 2] = level  # along the columns
    return image + star[None].astype(np.float32)


def test_saturation_is_found_by_its_flat_top_not_its_level():
    clean = C.isolated(seed=3)
    star = saturated_star(clean, 110.0, 40.0)
    bright_galaxy = C.isolated(seed=4, r_mag=14.5, r_eff=2.0)  # peak ~40 nmgy, not flat
    images = C.stack(clean, star, bright_galaxy)
    assert bright_galaxy[1].max() > 30 and star.max() < 1e6  # far below the old threshold
    result = CheckPixels().process(images, {})
    assert result.flags.tolist() == ["ok", "invalid_pixels", "ok"]
    assert result.columns["pixel_problem"].tolist() == ["", "saturated", ""]
    assert CheckPixels(saturation_plateau=None).process(images, {}).flags.tolist() == \
        ["ok"] * 3


def test_invalid_pixels_sub_reason_is_in_the_output_table():
    nan = C.nan_block(seed=1)
    star = saturated_star(C.isolated(seed=2), 100.0, 100.0)
    out = preprocess_cutouts(Table({"cutout": C.stack(C.isolated(seed=0), nan, star)}),
                             progress=False)
    assert out["preprocess_flag"].tolist() == ["ok", "invalid_pixels", "invalid_pixels"]
    assert out["pixel_problem"].tolist() == ["", "nonfinite", "saturated"]
    assert "saturated" in out["pixel_problem"].description


#: (dx, dy) px of real targets from their cutout's centre (the catalogued position is not the
#: light's peak to the pixel)
OFFSETS = [(2.0, 0.0), (-2.0, 1.5), (1.5, -2.0), (0.0, 2.5)]


def test_a_target_a_pixel_or_two_off_centre_is_not_a_blend():
    # the companion test rotates about the target's nucleus, not about the cutout's centre
    isolated = [C.isolated(seed=s, r_mag=18.0, r_eff=3.0, x=C.CENTRE + dx, y=C.CENTRE + dy)
                for s, (dx, dy) in enumerate(OFFSETS)]
    out = preprocess_cutouts(Table({"cutout": C.stack(*isolated)}), progress=False)
    assert out["preprocess_flag"].tolist() == ["ok"] * len(OFFSETS)
    assert np.all(out["companion"] < 0.05)
    assert np.allclose(out["target_x"], [C.CENTRE + dx for dx, _ in OFFSETS], atol=1.0)
    assert np.allclose(out["target_y"], [C.CENTRE + dy for _, dy in OFFSETS], atol=1.0)
    # an off-centre target with a companion leaving no saddle is still a blend
    shoulders = [C.noisy(C.galaxy(19.0, x=C.CENTRE + dx, y=C.CENTRE + dy)
                         + 0.3 * C.galaxy(19.0, x=C.CENTRE + dx + 5.0, y=C.CENTRE + dy - 1.0,
                                          r_eff=1.5, angle=120.0), seed)
                 for seed, (dx, dy) in enumerate(OFFSETS)]
    strict = preprocess_cutouts(Table({"cutout": C.stack(*isolated, *shoulders)}),
                                config="strict_blends", progress=False)
    assert strict["preprocess_flag"].tolist() == ["ok"] * 4 + ["blended"] * 4


def test_no_data_on_the_target_in_one_band_is_flagged_however_few_the_zeros():
    # DR9 coadds hold 0 where no exposure of a band covers a pixel (a CCD gap, a masked
    # column): too few zeros for the 5 % limit, but on the galaxy they are a hole in a colour
    hole, column, far, edge = (C.isolated(seed=s) for s in range(4))
    hole[1, 70:82, 70:82] = 0.0  # r only, on the nucleus: 0.6 % of the band
    column[2, :, 74:77] = 0.0  # a dead z column through the galaxy: 2 %
    far[0, 5:17, 5:17] = 0.0  # far from the target (masked anyway): fine
    edge[:, :, 146:] = 0.0  # the footprint's edge, 4 % of the cutout: fine
    out = preprocess_cutouts(Table({"cutout": C.stack(hole, column, far, edge)}),
                             progress=False)
    assert out["preprocess_flag"].tolist() == ["invalid_pixels"] * 2 + ["ok"] * 2
    assert out["pixel_problem"].tolist() == ["zero_pixels"] * 2 + [""] * 2
    assert CheckPixels(zero_radius=None).process(C.stack(hole), {}).flags.tolist() == ["ok"]


def galaxy_with_neighbour(separation, seed=0):
    """A mock disc (r ~ 18.7) and an equal neighbour ``separation`` px to its right: at the
    detection isophote the two are one region from about 15 px to 45 px apart."""
    renderer = CutoutRenderer(counts_per_nanomaggy=_counts_per_nanomaggy())
    canvas = renderer.blank()
    psf = renderer.psf_model([1.35, 1.3, 1.25])
    centre, disk = renderer.centre, np.array([20.0, 30.0, 40.0])
    for dx, dy, q, angle in ((0.0, 0.0, 0.6, 30.0), (separation, 3.0, 0.7, 120.0)):
        renderer.add_galaxy(canvas, psf, x=centre + dx, y=centre + dy, bulge_flux=0.1 * disk,
                            disk_flux=disk, bulge_hlr=0.4, disk_hlr=1.6, bulge_q=0.9,
                            disk_q=q, position_angle=angle)
    return renderer.add_noise(np.random.default_rng(seed), canvas, [0.004, 0.007, 0.026])


def test_a_neighbour_joined_by_faint_wings_is_masked_not_merged_into_the_target():
    separations = (28, 36, 14)
    table = Table({"cutout": np.stack([galaxy_with_neighbour(d, seed=s)
                                       for s, d in enumerate(separations)])})
    out = preprocess_cutouts(table, progress=False)
    # beyond 6" the neighbour is split off and masked; a close pair is still a blend
    assert out["preprocess_flag"].tolist() == ["ok", "ok", "blended"]
    centre = CutoutRenderer(counts_per_nanomaggy=_counts_per_nanomaggy()).centre
    for row, separation in zip(out[:2], separations):
        assert abs(row["target_x"] - centre) < 4 and abs(row["target_y"] - centre) < 2
        neighbour = row["cutout"][:, int(centre + 3), int(centre + separation)]
        assert np.all(neighbour == 0)  # the neighbour's nucleus is masked
    whole = preprocess_cutouts(table[:2], steps=[
        "check_pixels", ("mask_neighbours", {"split_beyond": None}),
        ("size_limit", {"max_radius": 6.0, "region": "flux_fraction"}),
        ("blend_check", {"contrast": 0.03, "max_companion": 0.12}), "fragment_check"],
        progress=False)
    assert "ok" not in whole["preprocess_flag"].tolist()  # merged: too large or a blend


def knotty_disc(seed, n_knots=14, share=0.02):
    """A bright disc (r = 15, r_eff 12 px = 3.1") whose outer disc, 24-36 px out, holds
    ``n_knots`` PSF-sized HII-region knots of ``share`` of its light each, bluer than it."""
    rng = np.random.default_rng(seed)
    image = C.galaxy(15.0, r_eff=12.0, axis_ratio=0.8)
    colour = np.array([1.4, 1.0, 0.7], np.float32)[:, None, None] / C.COLOUR[:, None, None]
    for _ in range(n_knots):
        radius, angle = rng.uniform(24.0, 36.0), rng.uniform(0.0, 2 * np.pi)
        knot = C.galaxy(22.5, x=C.CENTRE + radius * np.cos(angle),
                        y=C.CENTRE + 0.8 * radius * np.sin(angle), r_eff=0.5)
        image = image + knot * (share * image[1].sum() / knot[1].sum()) * colour
    return C.noisy(image, seed)


def test_knots_in_a_large_disc_are_not_split_off_as_neighbours():
    # the knots stand well above their saddles, 6" and more from the nucleus, like a
    # neighbour joined by faint wings; split off, their watershed pieces carve the outer disc
    # away and the galaxy (90 % of its light within 8-9") passes the 6" limit
    table = Table({"cutout": np.stack([knotty_disc(seed) for seed in range(6)])})
    out = preprocess_cutouts(table, progress=False)
    assert out["preprocess_flag"].tolist() == ["too_large"] * 6
    assert np.all(out["enclosing_radius"] > 7.5)
    carved = preprocess_cutouts(table, steps=[
        "check_pixels", ("mask_neighbours", {"split_min_own_share": 0.0}),
        ("size_limit", {"max_radius": 6.0, "region": "flux_fraction"}),
        ("blend_check", {"contrast": 0.03, "max_companion": 0.12}), "fragment_check"],
        progress=False)
    assert np.sum(carved["preprocess_flag"] != "too_large") >= 2


def test_a_target_on_a_brighter_neighbours_slope_is_blended_not_missing():
    # the target (r = 18.5) 9 px from a neighbour 2.5-3 times as bright is only a shoulder
    # on the neighbour's profile: no local maximum within 5 px of the centre, but hundreds of
    # sigma of light there. It is a blend; an empty centre stays no_central_source.
    shoulders = [C.noisy(C.galaxy(18.5, r_eff=3.0) + ratio * C.galaxy(
        18.5, x=C.CENTRE - 7.2, y=C.CENTRE + 5.4, r_eff=3.0, angle=100.0), seed)
        for seed, ratio in ((0, 2.5), (3, 3.0))]
    table = Table({"cutout": C.stack(*shoulders, C.empty_centre(seed=5))})
    out = preprocess_cutouts(table, progress=False)
    assert out["preprocess_flag"].tolist() == ["blended", "blended", "no_central_source"]
