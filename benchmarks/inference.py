"""Inference speed of the full (paper) GPM-ResNet at batch 64, and the error of the fast paths.

Measures images per second for

- ``fp32 eager``: plain float32, contiguous tensors, ``torch.inference_mode`` (the baseline);
- ``fp32 channels_last``;
- ``bf16 channels_last``: bf16 autocast + channels-last;
- ``fp32 compile``: channels-last + ``torch.compile`` (inductor, weights frozen);
- ``bf16 compile``: bf16 autocast + channels-last + ``torch.compile`` (frozen),

all in the same run on the same inputs, and prints each rate as a ratio to the baseline with
``max |dZ|`` against fp32 eager. Inputs are mock-sky cutouts in raw nanomaggies, as the paper
feeds them. The paper network is untrained here, so its outputs are mapped to dex with the
scaling a trained network with standardised labels would use: ``Z = 8.9 + 0.2 * (y - mean(y)) /
std(y)`` over the batch (0.2 dex is the spread of Z in the mock). ``--trained DIR`` adds the
same comparison for a saved, trained estimator (real dex, through ``predict``).

Run on demand::

    python benchmarks/inference.py --threads 2
"""

import argparse
import time

import numpy as np
import torch

Z_SPREAD = 0.2


def _images(n, seed):
    from gpm_astro_plugins.mock.sky import MockSky

    sky = MockSky(n_galaxies=n, seed=seed, blend_rate=0, large_rate=0, empty_rate=0,
                  bad_pixel_rate=0).generate()
    return sky.images


def _rate(run, x, repeats):
    run(x)  # warm-up (and compilation)
    started = time.perf_counter()
    for _ in range(repeats):
        out = run(x)
    seconds = (time.perf_counter() - started) / repeats
    return len(x) / seconds, out


def _variants(model):
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # fold BatchNorm into convolutions, constant weights
    model_cl = model.to(memory_format=torch.channels_last)

    def eager_fp32(x):
        with torch.inference_mode():
            return model(x).float()

    def eager_cl(x):
        with torch.inference_mode():
            return model_cl(x.contiguous(memory_format=torch.channels_last)).float()

    def eager_bf16(x):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model_cl(x.contiguous(memory_format=torch.channels_last)).float()

    compiled = {}

    def compiled_run(precision):
        def run(x):
            if precision not in compiled:
                compiled[precision] = torch.compile(model_cl)
            with torch.inference_mode():
                xin = x.contiguous(memory_format=torch.channels_last)
                if precision == "bf16":
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        return compiled[precision](xin).float()
                return compiled[precision](xin).float()
        return run

    return {"fp32 eager": eager_fp32, "fp32 channels_last": eager_cl,
            "bf16 channels_last": eager_bf16, "fp32 compile": compiled_run("fp32"),
            "bf16 compile": compiled_run("bf16")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run")
    parser.add_argument("--trained", default=None, help="directory of a saved estimator")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from gpm_astro_plugins.gpm_resnet.model import build_model

    images = _images(args.batch, args.seed)
    x = torch.as_tensor(np.asarray(images["cutout"], dtype=np.float32))
    torch.manual_seed(0)
    model = build_model("paper").eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {len(x)}, "
          f"input {tuple(x.shape[1:])}, paper GPM-ResNet (untrained, He init)")
    rows = []
    reference = None
    scale = None
    for name, run in _variants(model).items():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        rate, out = _rate(run, x, args.repeats)
        total = time.perf_counter() - started
        out = out.squeeze(1).double().numpy()
        if reference is None:
            reference = out
            scale = Z_SPREAD / out.std()
        dz = np.max(np.abs(out - reference)) * scale
        rows.append((name, rate, dz, total))
        print(f"{name:<20} {rate:8.1f} img/s  x{rate / rows[0][1]:5.2f}  max|dZ| {dz:.5f} dex"
              f"  (wall incl. warm-up/compile {total:.0f} s)", flush=True)
    if args.trained:
        from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

        estimator = GPMResNetEstimator.load(args.trained, progress=False)
        table = images
        timings = {}
        outputs = {}
        for precision, compile_model in (("fp32", False), ("bf16", False), ("bf16", True)):
            estimator.predict(table, precision=precision, compile=compile_model)
            started = time.perf_counter()
            out = estimator.predict(table, precision=precision, compile=compile_model)
            timings[(precision, compile_model)] = time.perf_counter() - started
            outputs[(precision, compile_model)] = np.asarray(out["Z_pred"])
        base = outputs[("fp32", False)]
        for key, value in outputs.items():
            print(f"trained {args.trained}: predict precision={key[0]} compile={key[1]}: "
                  f"{len(table) / timings[key]:.1f} img/s (with MC passes), "
                  f"max|dZ| {np.max(np.abs(value - base)):.5f} dex")
    return rows


if __name__ == "__main__":
    main()
