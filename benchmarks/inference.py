"""Inference speed of the full (paper) GPM-ResNet at batch 64, and the error of the fast paths.

Measures images per second for

- ``fp32 eager``: plain float32, contiguous tensors, ``torch.inference_mode`` (the baseline);
- ``fp32 channels_last``;
- ``bf16 channels_last``: bf16 autocast + channels-last;
- ``mixed eager``: `mixed_precision_copy` with ``fp32_blocks=1`` (BatchNorm folded; the ILO
  block, the first bottleneck, the second one's input convolutions and the head in fp32,
  everything else in bf16), channels-last;
- ``fp32 compile``: channels-last + ``torch.compile`` (inductor, weights frozen);
- ``bf16 compile``: bf16 autocast + channels-last + ``torch.compile`` (frozen);
- ``mixed-entry compile``: the mixed copy with ``fp32_blocks=0`` (only the ILO block, the first
  bottleneck's input convolutions and the head in fp32), compiled;
- ``mixed compile``: the mixed copy compiled (what ``predict(precision="mixed",
  compile=True)`` runs);
- ``... 4x16`` and ``... 8x8``: the same network fed the batch of 64 as micro-batches of 16
  or 8 (the activations stay in the caches; ``predict_batch_size="auto"`` uses 8 on the CPU),

all in the same run on the same inputs: every variant is warmed up (compiled) first, then they
are timed in turn for ``--repeats`` rounds (interleaved, so a shared machine's load falls on all
alike) and the median time is used. Each rate is printed as a ratio to ``fp32 eager``.

Error measures. Inputs are mock-sky cutouts in raw nanomaggies, as the paper feeds them. The
paper network is untrained here, so its output ``y`` is put on a dex scale by the factor that
makes its spread over the batch equal the mock's Z scatter: ``dZ = 0.2 dex * (y - y_fp32) /
std(y_fp32)``. This is harsh: the untrained output barely varies between galaxies (its mean is
~40 times its spread), so every relative perturbation is magnified. ``--trained DIR`` adds the
real-dex errors (``Z_pred`` through the saved label standardisation, deterministic pass) of a
saved, trained estimator for bf16 autocast and the mixed variants on ``--n-trained`` other mock
galaxies, and those of ``predict`` itself (default forward batch, ``compile=True``) with each
precision, all against one fp32 pass over the whole set.

Run on demand::

    python benchmarks/inference.py --threads 2 --repeats 5 --trained MODEL_DIR
"""

import argparse
import copy
import time

import numpy as np
import torch

Z_SPREAD = 0.2


def _images(n, seed):
    from gpm_astro_plugins.mock.sky import MockSky

    sky = MockSky(n_galaxies=n, seed=seed, blend_rate=0, large_rate=0, empty_rate=0,
                  bad_pixel_rate=0).generate()
    return sky.images


def _variants(model):
    import torch._inductor.config as inductor_config

    from gpm_astro_plugins.gpm_resnet.model import mixed_precision_copy

    inductor_config.freezing = True  # fold BatchNorm into convolutions, constant weights
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    mixed_models = {"mixed": mixed_precision_copy(model, fp32_blocks=1),
                    "mixed-entry": mixed_precision_copy(model, fp32_blocks=0)}
    cl = (lambda x: x.contiguous(memory_format=torch.channels_last))

    def eager_fp32(x):
        with torch.inference_mode():
            return model(x).float()

    def eager_cl(x):
        with torch.inference_mode():
            return model_cl(cl(x)).float()

    def eager_bf16(x):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model_cl(cl(x)).float()

    def eager_mixed(x):
        with torch.inference_mode():
            return mixed_models["mixed"](cl(x)).float()

    def micro_batched(run, step):
        return lambda x: torch.cat([run(x[start:start + step])
                                    for start in range(0, len(x), step)])

    compiled = {}

    def compiled_run(precision, micro_batch=None):
        def run(x):
            key = (precision, micro_batch)
            if key not in compiled:
                # one compiled graph per variant and shape (no dynamic-shape recompilation)
                compiled[key] = torch.compile(mixed_models.get(precision, model_cl),
                                              dynamic=False)
            network = compiled[key]
            step = micro_batch or len(x)
            outputs = []
            with torch.inference_mode():
                for start in range(0, len(x), step):
                    xin = cl(x[start:start + step])
                    if precision == "bf16":
                        with torch.autocast("cpu", dtype=torch.bfloat16):
                            outputs.append(network(xin).float())
                    else:
                        outputs.append(network(xin).float())
            return torch.cat(outputs)
        return run

    return {"fp32 eager": eager_fp32, "fp32 channels_last": eager_cl,
            "bf16 channels_last": eager_bf16, "mixed eager": eager_mixed,
            "fp32 compile": compiled_run("fp32"), "bf16 compile": compiled_run("bf16"),
            "mixed-entry compile": compiled_run("mixed-entry"),
            "mixed compile": compiled_run("mixed"),
            "fp32 compile 4x16": compiled_run("fp32", 16),
            "bf16 compile 4x16": compiled_run("bf16", 16),
            "mixed compile 4x16": compiled_run("mixed", 16),
            "fp32 eager 8x8": micro_batched(eager_fp32, 8),
            "fp32 compile 8x8": compiled_run("fp32", 8),
            "bf16 compile 8x8": compiled_run("bf16", 8),
            "mixed-entry compile 8x8": compiled_run("mixed-entry", 8),
            "mixed compile 8x8": compiled_run("mixed", 8)}


def _interleaved_rates(runs, x, rounds):
    """Warm up (and compile) every variant, then time them in turn, ``rounds`` times.

    Interleaving spreads the load of a shared machine evenly over the variants; the rate is
    from the median time.
    """
    outputs, warmup = {}, {}
    for name, run in runs.items():
        started = time.perf_counter()
        outputs[name] = run(x)
        warmup[name] = time.perf_counter() - started
        print(f"  warmed up {name} in {warmup[name]:.0f} s", flush=True)
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            outputs[name] = run(x)
            times[name].append(time.perf_counter() - started)
    rates = {name: len(x) / float(np.median(t)) for name, t in times.items()}
    return rates, outputs, warmup


def _trained_network_errors(directory, n_images, seed):
    """max and rms |dZ| (dex) of the fast paths against fp32 on a trained, saved network."""
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator
    from gpm_astro_plugins.gpm_resnet.model import InputTransform, mixed_precision_copy

    estimator = GPMResNetEstimator.load(directory, progress=False)
    images = _images(n_images, seed)
    x = InputTransform(estimator.config_, "grz")(np.asarray(images["cutout"], np.float32))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    network = estimator.models_[0].eval()
    to_dex = (lambda y: y.float().squeeze(1).double().numpy() * estimator.target_std_
              + estimator.target_mean_)
    with torch.inference_mode():
        reference = to_dex(network(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = to_dex(copy.deepcopy(network).to(memory_format=torch.channels_last)(x_cl))
        outputs = {"bf16 autocast": bf16}
        variants = {"fp32 ILO + head only": dict(fp32_blocks=0, fp32_entry=False),
                    "mixed-entry (+ entry convs)": dict(fp32_blocks=0),
                    "mixed (+ first bottleneck)": dict(fp32_blocks=1)}
        for name, options in variants.items():
            outputs[name] = to_dex(mixed_precision_copy(network, **options)(x_cl))
    # what a user runs: predict() with the default forward batch ("auto": 8 on the CPU)
    table = images[["cutout"]]
    estimator.set_params(mc_passes=1)
    for name, options in {"predict fp32 (forward batch 8)": dict(precision="fp32"),
                          "predict fp32 + compile": dict(precision="fp32", compile=True),
                          "predict mixed + compile": dict(precision="mixed", compile=True),
                          "predict bf16 + compile": dict(precision="bf16", compile=True)}.items():
        outputs[name] = np.asarray(estimator.predict(table, **options)["Z_pred"])
    print(f"trained {directory} ({estimator.config_.name}), {len(x)} mock galaxies, "
          f"Z_pred spread {reference.std():.3f} dex:")
    for name, value in outputs.items():
        difference = np.abs(value - reference)
        print(f"  {name:<38} max|dZ| {difference.max():.5f}  rms "
              f"{np.sqrt(np.mean(difference ** 2)):.5f} dex")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run")
    parser.add_argument("--trained", default=None, help="directory of a saved estimator")
    parser.add_argument("--n-trained", type=int, default=256,
                        help="mock galaxies for the trained-network errors")
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
          f"input {tuple(x.shape[1:])}, paper GPM-ResNet (untrained, He init)", flush=True)
    runs = {name: run for name, run in _variants(model).items()
            if not args.only or name in args.only or name == "fp32 eager"}
    rates, outputs, warmup = _interleaved_rates(runs, x, args.repeats)
    reference = outputs["fp32 eager"].squeeze(1).double().numpy()
    scale = Z_SPREAD / reference.std()
    rows = []
    for name in runs:
        dz = np.abs(outputs[name].squeeze(1).double().numpy() - reference) * scale
        rows.append((name, rates[name], dz.max(), warmup[name]))
        print(f"{name:<20} {rates[name]:8.1f} img/s  x{rates[name] / rates['fp32 eager']:5.2f}"
              f"  max|dZ| {dz.max():.5f}  rms {np.sqrt(np.mean(dz ** 2)):.5f} dex (scaled)"
              f"  (warm-up/compile {warmup[name]:.0f} s)", flush=True)
    if args.trained:
        _trained_network_errors(args.trained, args.n_trained, args.seed + 2)
    return rows


if __name__ == "__main__":
    main()
