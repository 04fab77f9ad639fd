"""Train the shipped demo model ``gpm_resnet_lite_mock`` and register it, reproducibly.

Usage::

    python docs/scripts/make_shipped_model.py [--work DIR]

Runs the demo's own pipeline (`gpm_astro.demo.demo_config`: the same mock sky, selection,
sample and GPM-ResNet settings as ``gpm-astro demo``, all seeded) up to the GPM-ResNet
``estimate`` stage in DIR (default ``demo_output``: after ``make demo`` nothing is trained
again, the pipeline skips the stages already done). It then writes the trained network, with
the caveat "mock sky: not for real galaxies" in its model card, to
``gpm_astro/weights/gpm_resnet_lite_mock.safetensors`` (the card travels inside the file's
metadata) and its sha256, its test-set numbers and the caveat to
``gpm_astro/weights_registry.json``.

Every prediction made with these weights carries the caveat in a ``Z_pred_caveat`` column and
in ``meta['caveat']``: the mock sky's galaxies are not real galaxies, and a network trained on
them says nothing about real Legacy Survey images.
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from gpm_astro.demo import demo_config
from gpm_astro.io import read_table
from gpm_astro.metrics import summarize
from gpm_astro.pipeline import run_pipeline
from gpm_astro.plugins import get_estimator
from gpm_astro.weights import BUILTIN_REGISTRY, sha256_of

NAME = "gpm_resnet_lite_mock"
LABEL = "gpm_resnet"
CAVEAT = "mock sky: not for real galaxies"
#: The file ships inside the package: keep it small.
MAX_BYTES = 5_000_000
WEIGHTS_DIR = BUILTIN_REGISTRY.parent / "weights"


def train(work):
    """Run the demo's pipeline up to its GPM-ResNet stage in ``work``; return the config."""
    config = demo_config()
    config["estimators"] = {LABEL: config["estimators"][LABEL]}
    config["application"]["estimator"] = LABEL
    run_pipeline(config, output_dir=work, until="estimate")
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="demo_output",
                        help="pipeline output folder (default: %(default)s; a finished demo "
                             "there is reused)")
    args = parser.parse_args(argv)
    work = Path(args.work)
    config = train(work)
    estimator = get_estimator("gpm_resnet").load(work / "estimate/models" / LABEL)
    estimator.caveat = CAVEAT
    test = read_table(work / f"estimate/{LABEL}_test.ecsv")
    stats = summarize(test["Z_pred"], test["oh_p50"], test["Z_pred_err"])
    with tempfile.TemporaryDirectory() as tmp:
        saved = estimator.save(tmp)
        WEIGHTS_DIR.mkdir(exist_ok=True)
        target = WEIGHTS_DIR / f"{NAME}.safetensors"
        shutil.copyfile(saved, target)
    size = target.stat().st_size
    if size > MAX_BYTES:
        sys.exit(f"{target} is {size / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB a "
                 f"file shipped in the package may take")
    params = config["estimators"][LABEL]["params"]
    n_sky = config["source"]["params"]["n_galaxies"]
    description = (f"{CAVEAT}. GPM-ResNet ({params['config']} configuration, "
                   f"{estimator.training_summary_.get('n_train', '?')} training galaxies, "
                   f"{params['epochs']} epochs) trained by `gpm-astro demo` on its mock sky "
                   f"of {n_sky:,} galaxies; on the mock's test split sigma "
                   f"{stats['sigma']:.3f} dex, NMAD {stats['nmad']:.3f} dex, coverage "
                   f"{stats['coverage']:.2f} (n = {stats['n']}). Made by "
                   f"docs/scripts/make_shipped_model.py")
    registry = json.loads(BUILTIN_REGISTRY.read_text()) if BUILTIN_REGISTRY.exists() else {}
    registry[NAME] = {"url": f"weights/{target.name}", "sha256": sha256_of(target),
                      "estimator": "gpm_resnet", "description": description}
    BUILTIN_REGISTRY.write_text(json.dumps(registry, indent=2) + "\n")
    print(f"wrote {target} ({size / 1e6:.2f} MB) and registered {NAME!r} in "
          f"{BUILTIN_REGISTRY}:\n  {description}")


if __name__ == "__main__":
    main()
