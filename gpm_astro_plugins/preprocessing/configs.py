"""The named step configurations: ``paper``, ``default`` and ``strict_blends``.

A configuration is a list of ``(step name, parameters)``; `gpm_astro.preprocessing` turns it
into step instances through the plugin registry, so a user's own step can stand in any list.
"""

__all__ = ["CONFIGURATIONS"]

CONFIGURATIONS = {
    # The paper's recipe (METHOD.md section 3) with the paper's constants. Where the published
    # scripts differ, the paper is followed; each published quirk is a parameter (see the
    # steps' docstrings and docs/preprocessing.rst). The threshold loop is capped.
    "paper": [
        ("check_pixels", {}),
        ("mask_neighbours_paper", {}),
        ("size_limit", {"max_radius": 6.0, "region": "largest_component"}),
        ("blend_check_photutils", {}),
        ("fragment_check_paper", {}),
    ],
    # Noise-aware: thresholds from each cutout's measured sky noise, segmentation and
    # deblending on fluxes. Constants chosen on the mock sky's truth (docs/preprocessing.rst).
    # Deblended pieces must hold 3 % of the flux (HII-region knots hold less), and a companion
    # without a saddle is found as one large piece of the rotation residual (clumpy discs
    # pass it): chosen on clumpy mock discs, seed 7 ("Clumpy discs" in the docs).
    "default": [
        ("check_pixels", {}),
        ("mask_neighbours", {}),
        ("size_limit", {"max_radius": 6.0, "region": "flux_fraction"}),
        ("blend_check", {"contrast": 0.03, "max_companion": 0.12}),
        ("fragment_check", {}),
    ],
    # The default plus a rotational-asymmetry test that catches companions leaving no saddle.
    # Tuned on the (point-symmetric) mock galaxies; lopsided real spirals may fail it.
    "strict_blends": [
        ("check_pixels", {}),
        ("mask_neighbours", {}),
        ("size_limit", {"max_radius": 6.0, "region": "flux_fraction"}),
        ("blend_check", {"max_asymmetry": 0.06}),
        ("fragment_check", {}),
    ],
}
