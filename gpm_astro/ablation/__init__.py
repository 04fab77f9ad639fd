"""The paper's ablation studies (§4.2-4.6) as one call: `run_ablations`.

- architectures: ResNet-34/50/101, MobileNetV2, EfficientNet-B0 and DenseNet-121 against
  GPM-ResNet on the same split (Table 1);
- size: the test errors in 1-arcsec bins of the galaxies' enclosing-circle radius (Fig. 11a);
- resolution: GPM-ResNet retrained on images resized to 16 ... 152 pixels (Fig. 11b);
- bands: GPM-ResNet retrained on one, two or three bands (Fig. 11c);
- mzr: the mass-metallicity relation recovered from Z_pred against Tremonti et al. (Fig. 13).

Command line: ``gpm-astro ablate [--quick] --out DIR``.
"""

from .data import band_composite
from .runner import run_ablations
from .settings import FULL_SETTINGS, QUICK_SETTINGS, STUDY_NAMES, load_settings
from .studies import STUDIES

__all__ = ["run_ablations", "load_settings", "band_composite", "STUDIES", "STUDY_NAMES",
           "FULL_SETTINGS", "QUICK_SETTINGS"]
