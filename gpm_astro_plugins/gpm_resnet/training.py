"""Training loop of GPM-ResNet (paper §3.2): MSE, Adam, StepLR, best-validation checkpoint.

The configuration may instead ask for AdamW, a one-cycle learning-rate schedule stepped per batch,
and an error head whose log-variance learns a Gaussian likelihood (`error_head_loss`).

The loop works on arrays that are already network input (see `model.InputTransform`); the
estimator (`estimator.py`) turns tables into those arrays. Crash safety: after every epoch the
model, optimizer, scheduler, epoch, history and best state are written atomically to
``checkpoint_dir/checkpoint.pt``; ``resume=True`` continues from there. Every random stream of an
epoch (shuffling, augmentation, DropBlock) is seeded from ``(seed, epoch)``, so a resumed run
draws exactly the numbers the uninterrupted run would have drawn.
"""

import contextlib
import json
import math
import os
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from astropy.table import Table
from tqdm.auto import tqdm

from gpm_astro.exceptions import GPMAstroError, ParameterError, WeightsError
from gpm_astro.io import atomic_file

__all__ = ["resolve_device", "resolve_precision", "augment_batch", "train_network",
           "TrainingResult", "write_history", "plot_history", "error_head_loss", "dihedral_view",
           "CHECKPOINT_NAME", "LOG_VARIANCE_RANGE"]

CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_CSV = "loss_history.csv"
HISTORY_PNG = "loss_curves.png"
#: the error head's log-variance (label units squared) is clamped to this range
LOG_VARIANCE_RANGE = (-12.0, 6.0)


def error_head_loss(output, target, mean_loss_beta=1.0):
    """Loss of a (n, 2) output of means and log-variances: MSE + the variance's Gaussian NLL.

    The mean learns from the squared error alone, exactly as a one-output network; the
    log-variance learns from the Gaussian negative log-likelihood 0.5 (log v + (y - m)^2 / v)
    of the mean's residuals with the gradient stopped at the mean ("faithful" heteroscedastic
    regression, Stirn et al. 2023). A plain likelihood lets the network buy a low loss with a
    large variance on hard galaxies instead of a better mean; measured on the mock sky it made
    the validation loss of the mean diverge.

    With ``mean_loss_beta`` below 1 the squared errors of the mean are weighted by the
    predicted variance to the power ``beta - 1`` (stopped gradient, batch mean of the weights
    1): the beta-NLL of Seitzer et al. (2022) for the mean, between MSE (1) and the full
    likelihood (0).
    """
    mean = output[:, 0]
    log_variance = output[:, 1].clamp(*LOG_VARIANCE_RANGE)
    residual = (target - mean.detach()) ** 2
    nll = 0.5 * (log_variance + residual / log_variance.exp())
    if mean_loss_beta == 1:
        return F.mse_loss(mean, target) + nll.mean()
    weight = torch.exp((mean_loss_beta - 1) * log_variance.detach())
    weight = weight / weight.mean()
    return (weight * (mean - target) ** 2).mean() + nll.mean()


def onecycle_warmup_share(warmup, total_steps):
    """The warm-up share given to `torch.optim.lr_scheduler.OneCycleLR`.

    OneCycleLR divides by the warm-up length in steps minus one, so a warm-up of exactly one
    step (e.g. 0.2 of 5 steps: one epoch of few batches) would fail with a division by zero;
    such a warm-up is stretched to two steps (or to the middle of a 2-step run).
    """
    if abs(warmup * total_steps - 1) < 1e-9:
        return min(2 / total_steps, 0.5 * (1 + warmup))
    return warmup


def _make_optimizer(model, config, steps_per_epoch):
    """Optimizer and scheduler of the configuration; the flag says if it steps per batch."""
    if config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                      weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                     weight_decay=config.weight_decay)
    if config.lr_schedule == "onecycle":
        total_steps = max(1, config.epochs * steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps,
            pct_start=onecycle_warmup_share(config.lr_warmup, total_steps), div_factor=25.0,
            final_div_factor=1e4)
        return optimizer, scheduler, True
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step,
                                                gamma=config.lr_gamma)
    return optimizer, scheduler, False


def resolve_device(device="auto"):
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        msg = f"device must be 'auto', 'cpu' or 'cuda[:n]', got {device!r}"
        raise ParameterError(msg) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device {device!r} requested but CUDA is not available")
    return resolved


def resolve_precision(precision, device):
    """Return ``"fp32"`` or ``"bf16"``.

    ``"auto"`` picks bf16 autocast where the hardware gains from it: CUDA devices with bf16
    support. On the CPU ``"auto"`` stays fp32 (ask for bf16 explicitly; see the benchmark).
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ParameterError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def _autocast(device, precision):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def augment_batch(x, generator):
    """Apply a random element of the dihedral group (flips and 90-degree rotations) per image.

    Parameters
    ----------
    x : torch.Tensor
        (n, c, s, s) square images.
    generator : torch.Generator
        Source of randomness (CPU).

    Returns
    -------
    torch.Tensor
        New tensor, same shape.
    """
    codes = torch.randint(0, 8, (x.shape[0],), generator=generator)
    out = torch.empty_like(x)
    for code in range(8):
        index = (codes == code).nonzero(as_tuple=True)[0].to(x.device)
        if index.numel() == 0:
            continue
        part = x.index_select(0, index)
        if code >= 4:
            part = part.flip(-1)
        out[index] = torch.rot90(part, code % 4, dims=(-2, -1))
    return out


def dihedral_view(x, view):
    """Element ``view`` (0-7) of the dihedral group applied to (n, c, s, s) images: rotation by
    ``view % 4`` quarter turns, after a left-right flip when ``view >= 4``; 0 is the identity."""
    if view >= 4:
        x = x.flip(-1)
    return torch.rot90(x, view % 4, dims=(-2, -1)) if view % 4 else x


class TrainingResult:
    """What `train_network` returns: the history table and the best epoch."""

    def __init__(self, history, best_epoch, best_val_loss, resumed_from):
        self.history = history
        self.best_epoch = best_epoch
        self.best_val_loss = best_val_loss
        self.resumed_from = resumed_from


def _epoch_seed(seed, epoch):
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


def _predict_arrays(model, x, batch_size, device, precision):
    model.eval()
    outputs = []
    with torch.inference_mode(), _autocast(device, precision):
        for start in range(0, len(x), batch_size):
            batch = torch.as_tensor(x[start:start + batch_size]).to(device)
            outputs.append(model(batch).float()[:, 0].cpu())
    return torch.cat(outputs).numpy() if outputs else np.empty(0, np.float32)


def _atomic_torch_save(obj, path):
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


#: Entries every checkpoint written by `train_network` holds.
CHECKPOINT_KEYS = ("config", "n_train", "model", "optimizer", "scheduler", "history", "epoch",
                   "best_state", "best_val_loss", "best_epoch")


def _bad_checkpoint(path, reason):
    first_line = (str(reason).strip().splitlines() or [""])[0]
    msg = (f"checkpoint {path!r} cannot be resumed from ({type(reason).__name__}: "
           f"{first_line}); delete it to start over, or train without --resume")
    return WeightsError(msg)


def _read_checkpoint(path, device):
    """The state dict of a checkpoint, or `WeightsError` (never torch's unpickling errors)."""
    try:
        # weights_only: tensors and plain containers only, nothing is executed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's pickle-protocol remarks
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise _bad_checkpoint(path, exc) from exc
    if not isinstance(state, dict) or any(key not in state for key in CHECKPOINT_KEYS):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise _bad_checkpoint(path, ValueError(f"not a gpm_astro checkpoint, holds {found}"))
    return state


def _state_copy(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _training_batches(train_x, batches, num_workers):
    """Yield ``(index, x)`` per batch: from memory, or from a torch ``Dataset`` (e.g. HDF5 rows
    on disk) through a ``DataLoader`` whose ``num_workers`` processes read ahead. The batches
    hold the same rows in both cases, so the training is the same."""
    if not isinstance(train_x, torch.utils.data.Dataset):
        for index in batches:
            yield index, train_x[index]
        return
    # its own generator: seeding the reading workers must not draw from the global stream
    # that DropBlock draws from
    loader = torch.utils.data.DataLoader(train_x, sampler=batches, batch_size=None,
                                         num_workers=num_workers,
                                         generator=torch.Generator().manual_seed(0))
    yield from zip(batches, loader)


def train_network(model, train_x, train_y, val_x, val_y, *, config, seed=0, device="auto",
                  precision="auto", deterministic=False, checkpoint_dir=None, resume=False,
                  progress=True, callback=None, num_workers=0):
    """Train ``model`` in place and leave it holding the best-validation weights.

    Parameters
    ----------
    model : GPMResNet
        Freshly built (or to be overwritten by the checkpoint when resuming).
    train_x, val_x : numpy.ndarray or torch.utils.data.Dataset
        (n, c, s, s) float32 network input, in memory or read from disk batch by batch (a
        dataset indexed by an increasing array of rows or a slice, such as
        `gpm_astro_plugins.gpm_resnet.disk_inputs.ArchiveInputs`).
    train_y, val_y : numpy.ndarray
        (n,) float32 labels in the scale the network learns (standardised or raw).
    config : GPMResNetConfig
        Supplies epochs, batch_size, lr, lr_step, lr_gamma, weight_decay, augment, drop_ramp.
    seed : int
        Seeds every random stream, per epoch.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``.
    precision : str
        ``"auto"``, ``"fp32"`` or ``"bf16"`` (autocast); see `resolve_precision`.
    deterministic : bool
        Use only deterministic kernels (``torch.use_deterministic_algorithms``) while training.
    checkpoint_dir : str or None
        Where ``checkpoint.pt`` and the loss history (CSV) are written after every epoch.
    resume : bool
        Continue from ``checkpoint_dir/checkpoint.pt`` if it exists.
    progress : bool
        Show a tqdm bar over epochs.
    callback : callable or None
        ``callback(epoch, row)`` after each epoch (after the checkpoint is written); used by
        tests to interrupt a run.
    num_workers : int
        Processes reading training batches ahead when ``train_x`` is a dataset on disk.

    Returns
    -------
    TrainingResult

    Raises
    ------
    ParameterError
        On empty data, mismatched lengths, or a checkpoint made with another configuration.
    """
    if len(train_x) == 0 or len(val_x) == 0:
        msg = f"need training and validation rows, got {len(train_x)} and {len(val_x)}"
        raise ParameterError(msg)
    if len(train_x) != len(train_y) or len(val_x) != len(val_y):
        msg = (f"images and labels differ in length: {len(train_x)} vs {len(train_y)}, "
               f"{len(val_x)} vs {len(val_y)}")
        raise ParameterError(msg)
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    channels_last = device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    # batches of one sample are skipped (BatchNorm), so they do not count as steps
    steps_per_epoch = len(train_x) // config.batch_size + (len(train_x) % config.batch_size > 1)
    optimizer, scheduler, per_batch = _make_optimizer(model, config, steps_per_epoch)
    config_json = json.dumps(config.to_dict(), sort_keys=True)
    history, start_epoch = [], 0
    best_state, best_val, best_epoch = None, math.inf, -1
    checkpoint_path = None
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        checkpoint_path = os.path.join(checkpoint_dir, CHECKPOINT_NAME)
    resumed_from = None
    if resume and checkpoint_path and os.path.exists(checkpoint_path):
        state = _read_checkpoint(checkpoint_path, device)
        if state["config"] != config_json or state["n_train"] != len(train_x):
            msg = (f"checkpoint {checkpoint_path!r} was made with another configuration or "
                   f"training set (n_train {state['n_train']} vs {len(train_x)})")
            raise ParameterError(msg)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history = json.loads(state["history"])
            start_epoch = resumed_from = int(state["epoch"])
            best_state, best_val = state["best_state"], float(state["best_val_loss"])
            best_epoch = int(state["best_epoch"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise _bad_checkpoint(checkpoint_path, exc) from exc

    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    n_train = len(train_x)
    epochs = config.epochs
    bar = tqdm(range(start_epoch, epochs), desc="GPM-ResNet training", unit="epoch",
               disable=not progress, initial=start_epoch, total=epochs)
    try:
        for epoch in bar:
            started = time.perf_counter()
            epoch_seed = _epoch_seed(seed, epoch)
            torch.manual_seed(epoch_seed)
            generator = torch.Generator().manual_seed(epoch_seed)
            order = np.random.default_rng(epoch_seed).permutation(n_train)
            fraction = (epoch + 1) / epochs if config.drop_ramp else 1.0
            model.set_drop_progress(fraction)
            model.train()
            total, count = 0.0, 0
            batches = [np.sort(order[start:start + config.batch_size])
                       for start in range(0, n_train, config.batch_size)]
            batches = [b for b in batches if len(b) >= 2]  # BatchNorm needs two samples
            for index, x in _training_batches(train_x, batches, num_workers):
                x = torch.as_tensor(x)
                if config.augment:
                    x = augment_batch(x, generator)
                x = x.to(device)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = torch.as_tensor(train_y[index]).to(device)
                optimizer.zero_grad(set_to_none=True)
                with _autocast(device, precision):
                    output = model(x).float()
                if config.error_head:
                    loss = error_head_loss(output, y, config.mean_loss_beta)
                else:
                    loss = F.mse_loss(output[:, 0], y)
                loss.backward()
                optimizer.step()
                if per_batch:
                    scheduler.step()
                # the curves compare the MSE of the mean, whatever the loss trained
                total += F.mse_loss(output[:, 0].detach(), y).item() * len(index)
                count += len(index)
            train_loss = total / max(count, 1)
            val_pred = _predict_arrays(model, val_x, config.batch_size, device, precision)
            val_loss = float(np.mean((val_pred - val_y) ** 2))
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                   "drop_fraction": fraction, "train_loss": train_loss, "val_loss": val_loss,
                   "seconds": time.perf_counter() - started}
            history.append(row)
            if val_loss < best_val:
                best_val, best_epoch, best_state = val_loss, epoch + 1, _state_copy(model)
            if not per_batch:
                scheduler.step()
            if checkpoint_path:
                _atomic_torch_save({
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch + 1,
                    "history": json.dumps(history), "best_state": best_state,
                    "best_val_loss": best_val, "best_epoch": best_epoch, "seed": int(seed),
                    "config": config_json, "n_train": n_train}, checkpoint_path)
                write_history(history, os.path.join(checkpoint_dir, HISTORY_CSV))
            bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}")
            if callback is not None:
                callback(epoch + 1, row)
    finally:
        bar.close()
        if deterministic:
            torch.use_deterministic_algorithms(previous_deterministic)
    if best_state is None:
        msg = (f"training gave no finite validation loss (last {history[-1]['val_loss']!r}); "
               f"try a lower learning rate than {config.lr!r}")
        raise GPMAstroError(msg)
    model.load_state_dict(best_state)
    model.set_drop_progress(1.0)
    model.eval()
    model.to(memory_format=torch.contiguous_format)
    return TrainingResult(history_table(history), best_epoch, best_val, resumed_from)


def history_table(history):
    """The per-epoch history as an astropy Table."""
    names = ("epoch", "lr", "drop_fraction", "train_loss", "val_loss", "seconds")
    if not history:
        return Table(names=names, dtype=[int] + [float] * 5)
    return Table(rows=[[row[n] for n in names] for row in history], names=names)


def write_history(history, path):
    """Write the history (list of rows or Table) as CSV, atomically."""
    table = history if isinstance(history, Table) else history_table(history)
    with atomic_file(path, suffix=".csv") as tmp:
        table.write(tmp, format="ascii.csv", overwrite=True)


def plot_history(history, path, *, title="GPM-ResNet training"):
    """Plot train and validation loss per epoch (log scale) into a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from gpm_astro.evaluation import plain_log_ticks

    table = history if isinstance(history, Table) else history_table(history)
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=100)
    ax.plot(table["epoch"], table["train_loss"], label="train", marker=".")
    ax.plot(table["epoch"], table["val_loss"], label="validation", marker=".")
    if len(table):
        best = int(np.argmin(table["val_loss"]))
        ax.axvline(table["epoch"][best], color="grey", ls=":", label="best epoch")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE loss")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

