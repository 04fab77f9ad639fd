"""Drawing mock g, r, z cutouts with GalSim.

Each source is drawn on a stamp only as large as it needs (bulge + disk, or a point source,
convolved with the cutout's Moffat PSF in each band) and added into the 152 x 152 canvas; sky
noise (Gaussian, per band) and source photon noise are added last.

A clumpy disc (`Clumps`) moves part of its light into HII-region knots (GalSim
`~galsim.RandomKnots`, drawn from the disc's own exponential profile, bluer than the disc) and
into two logarithmic spiral arms (strings of small Gaussian beads, point-symmetric up to a
small jitter); the band fluxes of the galaxy are unchanged.
"""

import galsim
import numpy as np

from gpm_astro.survey_constants import CUTOUT_SIZE, PIXEL_SCALE_ARCSEC, magnitude_to_flux

__all__ = ["CutoutRenderer", "Clumps", "NEIGHBOUR_EXCLUSION_PX", "MOFFAT_BETA",
           "KNOT_COLOUR"]

NPIX = CUTOUT_SIZE
PIXEL_SCALE = PIXEL_SCALE_ARCSEC
#: typical per-pixel sky sigma of Legacy Survey DR9 coadds, nanomaggies (g, r, z)
SKY_SIGMA = np.array([0.004, 0.007, 0.026])
#: sky surface brightness (mag / arcsec^2) used only to set the photon-noise gain
SKY_MAG_PER_ARCSEC2 = np.array([22.0, 21.0, 19.5])

#: clean targets have no neighbour within this many pixels of their isophote
NEIGHBOUR_EXCLUSION_PX = 25.0
#: Moffat index of the PSF (a typical ground-based value)
MOFFAT_BETA = 3.5

_GSPARAMS = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=3e-3)
#: knot flux per band relative to the disc's share (g, r, z): HII regions are blue
KNOT_COLOUR = np.array([1.3, 1.0, 0.75])


#: GalSim seed of the knots of ``Clumps(..., seed=0)``: never drawn by the mock sky (its seeds
#: are below 2**31), and non-zero, since ``galsim.BaseDeviate(0)`` seeds from the clock.
ZERO_SEED_KNOTS = 2 ** 31


class Clumps:
    """The knots and arms of one clumpy disc.

    Parameters
    ----------
    knot_fraction : float
        Share of the disc's r-band flux in knots (g and z scaled by `KNOT_COLOUR`).
    arm_fraction : float
        Share of the disc's flux (every band) in the spiral arms.
    n_knots : int
        Number of knots.
    seed : int
        Seed of the knots' positions and the arms' geometry (0 included: GalSim would read a
        seed of 0 as "seed from the clock", so the knots get `ZERO_SEED_KNOTS` instead).
    """

    __slots__ = ("knot_fraction", "arm_fraction", "n_knots", "seed")

    def __init__(self, knot_fraction, arm_fraction, n_knots, seed):
        self.knot_fraction = float(knot_fraction)
        self.arm_fraction = float(arm_fraction)
        self.n_knots = int(n_knots)
        self.seed = int(seed)

    def band_fluxes(self, disk_flux):
        """(smooth disc, knots, arms) flux per band; they add up to ``disk_flux``."""
        knots = np.minimum(self.knot_fraction * KNOT_COLOUR, 0.9) * disk_flux
        arms = np.minimum(self.arm_fraction, 0.9 - knots / np.maximum(disk_flux, 1e-30)) \
            * disk_flux
        arms = np.maximum(arms, 0.0)
        return disk_flux - knots - arms, knots, arms

    def profiles(self, disk_hlr):
        """Unit-flux, face-on GalSim profiles (knots, arms) of a disc of half-light radius
        ``disk_hlr`` arcsec."""
        rng = np.random.default_rng([self.seed, 7])
        knots = galsim.RandomKnots(max(self.n_knots, 1), half_light_radius=float(disk_hlr),
                                   flux=1.0, rng=galsim.BaseDeviate(self.seed or ZERO_SEED_KNOTS),
                                   gsparams=_GSPARAMS)
        scale = float(disk_hlr) / 1.678  # exponential scale length
        pitch = np.deg2rad(rng.uniform(15.0, 30.0))
        start = rng.uniform(0.0, 2.0 * np.pi)
        radii = np.linspace(0.4, 3.0, 10) * scale
        weights = radii * np.exp(-radii / scale)
        weights /= 2.0 * weights.sum()
        sigma = max(0.15, 0.35 * scale)
        beads = []
        for arm in (0.0, np.pi):  # two arms: point-symmetric up to the jitter
            angles = start + arm + np.log(radii / radii[0]) / np.tan(pitch)
            jitter = rng.normal(0.0, 0.1 * scale, (len(radii), 2))
            for r, angle, weight, (dx, dy) in zip(radii, angles, weights, jitter):
                beads.append(galsim.Gaussian(sigma=sigma, flux=float(weight), gsparams=_GSPARAMS)
                             .shift(float(r * np.cos(angle) + dx), float(r * np.sin(angle) + dy)))
        return knots, galsim.Add(beads, gsparams=_GSPARAMS)


class CutoutRenderer:
    """Draws one mock cutout at a time.

    Parameters
    ----------
    npix : int
        Cutout side in pixels.
    pixel_scale : float
        arcsec / pixel.
    counts_per_nanomaggy : array-like of 3 floats
        Effective gain per band: a pixel of flux f (nanomaggies) gets photon-noise variance
        f / gain. Chosen so that the sky's own photon noise equals the sky sigma (see
        ``docs/mock_sky.rst``).
    """

    def __init__(self, *, npix=CUTOUT_SIZE, pixel_scale=PIXEL_SCALE_ARCSEC,
                 counts_per_nanomaggy=(6900.0, 9000.0, 1600.0)):
        self.npix = npix
        self.pixel_scale = pixel_scale
        self.counts_per_nanomaggy = np.asarray(counts_per_nanomaggy, dtype=float)
        # pixel (0-based) where the cutout's centre lies: between the two middle pixels
        self.centre = (npix - 1) / 2.0

    # -- sources -----------------------------------------------------------------------
    def psf_model(self, psf_fwhm):
        """Return the PSF description of one cutout: (Moffat of the best band, blur sigmas).

        The band with the smallest FWHM gets a Moffat (beta = `MOFFAT_BETA`); each other band's
        PSF is that Moffat convolved with a Gaussian whose sigma (pixels) brings the FWHM to
        the band's value (FWHMs add roughly in quadrature). One GalSim draw per component then
        serves all three bands.
        """
        fwhm = np.asarray(psf_fwhm, dtype=float)
        best = float(fwhm.min())
        moffat = galsim.Moffat(beta=MOFFAT_BETA, fwhm=best, gsparams=_GSPARAMS)
        blur = np.sqrt(np.clip(fwhm ** 2 - best ** 2, 0.0, None)) / 2.3548 / self.pixel_scale
        return moffat, blur, float(fwhm.max())

    def add_galaxy(self, canvas, psf, *, x, y, bulge_flux, disk_flux, bulge_hlr, disk_hlr,
                   bulge_q, disk_q, position_angle, clumps=None):
        """Add a bulge (de Vaucouleurs) + disk (exponential) galaxy at pixel (x, y).

        ``psf`` is what `psf_model` returns; fluxes are per band (nanomaggies), radii in arcsec.
        ``clumps`` (a `Clumps`) moves part of the disc's light into knots and spiral arms,
        inclined with the disc.
        """
        moffat, blur, widest = psf
        beta = float(position_angle) * galsim.degrees
        bulge_flux = np.asarray(bulge_flux, dtype=float)
        disk_flux = np.asarray(disk_flux, dtype=float)
        has_bulge = bool(np.any(bulge_flux > 0))
        extent = max(bulge_hlr if has_bulge else 0.0, disk_hlr)
        size = self._stamp_size(extent, widest)
        components = []
        if has_bulge:
            # truncated at 8 half-light radii (flux kept): a much smaller FFT
            bulge = galsim.DeVaucouleurs(half_light_radius=float(bulge_hlr),
                                         trunc=8.0 * float(bulge_hlr), flux_untruncated=False,
                                         gsparams=_GSPARAMS).shear(q=float(bulge_q), beta=beta)
            components.append((bulge, bulge_flux))
        if np.any(disk_flux > 0):
            disk = galsim.Exponential(half_light_radius=float(disk_hlr),
                                      gsparams=_GSPARAMS).shear(q=float(disk_q), beta=beta)
            if clumps is None or clumps.knot_fraction + clumps.arm_fraction <= 0:
                components.append((disk, disk_flux))
            else:
                smooth, knot_flux, arm_flux = clumps.band_fluxes(disk_flux)
                knots, arms = clumps.profiles(disk_hlr)
                components.append((disk, smooth))
                if np.any(knot_flux > 0):
                    components.append((knots.shear(q=float(disk_q), beta=beta), knot_flux))
                if np.any(arm_flux > 0):
                    components.append((arms.shear(q=float(disk_q), beta=beta), arm_flux))
        stamps = [(self._stamp(galsim.Convolve(profile, moffat, gsparams=_GSPARAMS), x, y,
                               size), flux) for profile, flux in components]
        self._add_bands(canvas, stamps, blur, x, y, size)

    def add_star(self, canvas, psf, *, x, y, flux):
        """Add a point source of per-band ``flux`` at pixel (x, y)."""
        moffat, blur, widest = psf
        size = self._stamp_size(0.0, widest)
        stamp = self._stamp(moffat, x, y, size)
        self._add_bands(canvas, [(stamp, np.asarray(flux, dtype=float))], blur, x, y, size)

    def _add_bands(self, canvas, stamps, blur, x, y, size):
        from scipy.ndimage import gaussian_filter

        for band in range(canvas.shape[0]):
            image = sum(stamp * flux[band] for stamp, flux in stamps)
            if blur[band] > 0.05:
                image = gaussian_filter(image, blur[band], mode="constant", truncate=3.5)
            self._add(canvas[band], image, x, y)

    def _stamp_size(self, hlr_arcsec, fwhm):
        radius_arcsec = max(4.0 * hlr_arcsec, 3.0 * fwhm)
        size = int(2 * np.ceil(radius_arcsec / self.pixel_scale)) + 2
        # a source near the centre never needs more than the cutout plus a margin
        return int(min(max(size, 24), self.npix + 16))

    def _stamp(self, profile, x, y, size):
        """Draw a unit-flux ``profile`` so that stamp pixel size // 2 holds pixel round(x, y)."""
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        # the stamp's true centre is at (size - 1) / 2; offset moves the profile to (x, y)
        shift = 0.5 if size % 2 == 0 else 0.0
        image = profile.withFlux(1.0).drawImage(nx=size, ny=size, scale=self.pixel_scale,
                                                offset=(x - ix + shift, y - iy + shift))
        return image.array.astype(np.float64)

    def _add(self, plane, stamp, x, y):
        """Add a stamp drawn by `_stamp` for a source at (x, y) into ``plane``."""
        size = stamp.shape[0]
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        half = size // 2
        x0, y0 = ix - half, iy - half
        xs0, ys0 = max(x0, 0), max(y0, 0)
        xs1, ys1 = min(x0 + size, self.npix), min(y0 + size, self.npix)
        if xs1 <= xs0 or ys1 <= ys0:
            return
        plane[ys0:ys1, xs0:xs1] += stamp[ys0 - y0:ys1 - y0, xs0 - x0:xs1 - x0]

    # -- noise -------------------------------------------------------------------------
    def add_noise(self, rng, canvas, sky_sigma):
        """Gaussian sky noise plus photon noise of the sources (variance f / gain)."""
        sky = np.asarray(sky_sigma, dtype=np.float32)[:, None, None] ** 2
        gain = self.counts_per_nanomaggy.astype(np.float32)[:, None, None]
        sigma = np.sqrt(sky + np.maximum(canvas, 0.0) / gain)
        canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * sigma
        return canvas

    def blank(self):
        return np.zeros((3, self.npix, self.npix), dtype=np.float32)


def _counts_per_nanomaggy():
    sky_per_pixel = magnitude_to_flux(SKY_MAG_PER_ARCSEC2) * PIXEL_SCALE ** 2
    return sky_per_pixel / SKY_SIGMA ** 2


def _render_one(renderer, seed, row):
    """Draw the cutout of one truth row."""
    rng = np.random.default_rng([seed, 1, int(row["galaxy_id"])])
    canvas = renderer.blank()
    case = str(row["truth_case"])
    if case == "bad_pixels" and str(row["bad_pixel_kind"]) == "all_zero":
        return canvas  # outside the footprint: the service returns zeros
    psfs = renderer.psf_model(np.asarray(row["psf_fwhm"]))
    centre = renderer.centre
    hlr_px = float(row["hlr_arcsec"]) / PIXEL_SCALE
    x0, y0 = centre + rng.normal(0.0, 0.1, 2)
    target_radius = 2.5 * hlr_px  # isophotal extent, roughly
    if case != "empty_centre":
        renderer.add_galaxy(
            canvas, psfs, x=x0, y=y0, bulge_flux=np.asarray(row["bulge_flux"]),
            disk_flux=np.asarray(row["disk_flux"]), bulge_hlr=float(row["bulge_hlr_arcsec"]),
            disk_hlr=float(row["disk_hlr_arcsec"]), bulge_q=float(row["bulge_q"]),
            disk_q=float(row["disk_q"]), position_angle=float(row["position_angle"]),
            clumps=_row_clumps(row, seed))
    else:
        target_radius = 5.0
    if case == "blended":
        _add_blend_partner(rng, renderer, canvas, psfs, row, x0, y0, hlr_px)
    _add_field(rng, renderer, canvas, psfs, x0, y0, target_radius)
    renderer.add_noise(rng, canvas, np.asarray(row["sky_sigma"]))
    if case == "bad_pixels":
        _add_nan_blocks(rng, canvas, x0, y0)
    return canvas


def _row_clumps(row, seed):
    """The `Clumps` of a truth row (None for a smooth disc or a truth table without them)."""
    names = row.colnames if hasattr(row, "colnames") else ()
    if "knot_fraction" not in names:
        return None
    knot, arm = float(row["knot_fraction"]), float(row["arm_fraction"])
    if knot <= 0 and arm <= 0:
        return None
    # a stream of its own: the rest of the cutout (noise, field, partner) is unchanged
    return Clumps(knot, arm, int(row["n_knots"]),
                  int(np.random.default_rng([seed, 2, int(row["galaxy_id"])]).integers(2 ** 31)))


def _add_blend_partner(rng, renderer, canvas, psfs, row, x0, y0, hlr_px):
    """A comparable galaxy 6-15 px from the target, overlapping it."""
    separation = rng.uniform(6.0, 15.0)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    total = np.asarray(row["bulge_flux"]) + np.asarray(row["disk_flux"])
    ratio = rng.uniform(0.3, 1.0)
    colour_shift = 10 ** (-0.4 * rng.normal(0.0, 0.15, 3))
    renderer.add_galaxy(
        canvas, psfs, x=x0 + separation * np.cos(angle), y=y0 + separation * np.sin(angle),
        bulge_flux=np.zeros(3), disk_flux=total * ratio * colour_shift, bulge_hlr=0.1,
        disk_hlr=max(0.3, hlr_px * PIXEL_SCALE * rng.uniform(0.5, 1.0)),
        bulge_q=1.0, disk_q=rng.uniform(0.4, 1.0), position_angle=rng.uniform(0.0, 180.0))


def _add_field(rng, renderer, canvas, psfs, x0, y0, target_radius):
    """Field galaxies and stars, none within NEIGHBOUR_EXCLUSION_PX of the target's isophote."""
    npix = renderer.npix
    n_galaxies = rng.poisson(1.5)
    n_stars = rng.poisson(0.6)
    for kind in ["galaxy"] * n_galaxies + ["star"] * n_stars:
        for _ in range(20):
            x, y = rng.uniform(-5.0, npix + 5.0, 2)
            if np.hypot(x - x0, y - y0) > target_radius + NEIGHBOUR_EXCLUSION_PX + 6.0:
                break
        else:
            continue
        mag_r = rng.uniform(18.5, 23.0) if kind == "galaxy" else rng.uniform(16.5, 22.0)
        gr = rng.normal(0.9, 0.3) if kind == "galaxy" else rng.normal(0.8, 0.4)
        rz = rng.normal(0.5, 0.2) if kind == "galaxy" else rng.normal(0.4, 0.3)
        flux = magnitude_to_flux(np.array([mag_r + gr, mag_r, mag_r - rz]))
        if kind == "star":
            renderer.add_star(canvas, psfs, x=x, y=y, flux=flux)
        else:  # one exponential component: field galaxies are small and faint
            renderer.add_galaxy(canvas, psfs, x=x, y=y, bulge_flux=np.zeros(3),
                                disk_flux=flux, bulge_hlr=0.1, disk_hlr=rng.uniform(0.3, 1.2),
                                bulge_q=1.0, disk_q=rng.uniform(0.3, 1.0),
                                position_angle=rng.uniform(0.0, 180.0))


def _add_nan_blocks(rng, canvas, x0, y0):
    """1-3 NaN rectangles (masked CCD regions), the first over the target, in some bands."""
    npix = canvas.shape[-1]
    for k in range(rng.integers(1, 4)):
        width, height = rng.integers(8, 41, 2)
        if k == 0:
            cx, cy = x0 + rng.uniform(-3, 3), y0 + rng.uniform(-3, 3)
        else:
            cx, cy = rng.uniform(0, npix, 2)
        xa, ya = int(max(cx - width / 2, 0)), int(max(cy - height / 2, 0))
        bands = np.arange(3) if rng.uniform() < 0.5 else rng.choice(3, size=1)
        canvas[bands, ya:ya + height, xa:xa + width] = np.nan
