"""Drawing mock g, r, z cutouts with GalSim.

Each source is drawn on a stamp only as large as it needs (bulge + disk, or a point source,
convolved with the cutout's Moffat PSF in each band) and added into the 152 x 152 canvas; sky
noise (Gaussian, per band) and source photon noise are added last.
"""

import galsim
import numpy as np

__all__ = ["CutoutRenderer", "NEIGHBOUR_EXCLUSION_PX", "MOFFAT_BETA"]

#: clean targets have no neighbour within this many pixels of their isophote
NEIGHBOUR_EXCLUSION_PX = 25.0
#: Moffat index of the PSF (a typical ground-based value)
MOFFAT_BETA = 3.5

_GSPARAMS = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=3e-3)


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

    def __init__(self, *, npix=152, pixel_scale=0.262,
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
                   bulge_q, disk_q, position_angle):
        """Add a bulge (de Vaucouleurs) + disk (exponential) galaxy at pixel (x, y).

        ``psf`` is what `psf_model` returns; fluxes are per band (nanomaggies), radii in arcsec.
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
            components.append((disk, disk_flux))
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
