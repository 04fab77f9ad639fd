"""Named regression tests of issue 15 (tampered weights, broken cards and checkpoints) and
issue 16 item 4 (images that cannot be a galaxy) on a tiny trained GPM-ResNet."""

import json
import shutil

import numpy as np
import pytest

from gpm_astro import predict_metallicity
from gpm_astro.cli import main
from gpm_astro.exceptions import UnverifiedWeightsWarning, WeightsError
from gpm_astro.io import write_table
from gpm_astro.testing import make_estimator_table
from gpm_astro.weights import model_digest, sha256_of

from .conftest import SIZE


def _load(path, **kwargs):
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

    return GPMResNetEstimator.load(path, device="cpu", progress=False, **kwargs)


def _rewrite_card(source, target, edit, *, keep_digest=True):
    """Copy a bare weights file, editing its embedded card (and re-digesting if asked not to
    keep the old digest)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
    tensors = load_file(str(source))
    card = json.loads(metadata["model_card"])
    edit(card)
    if not keep_digest:
        card.pop("content_sha256", None)
        if keep_digest is None:
            card["content_sha256"] = model_digest(card, tensors)
    metadata["model_card"] = json.dumps(card)
    save_file(tensors, str(target), metadata=metadata)
    return target


def _shift_mean(card):
    card["target_standardization"]["mean"] += 1.0


# ------------------------------------------------------------------ tampered weights

def test_verified_model_records_how(saved_model):
    assert _load(saved_model).weights_check_ == "content"
    bare = saved_model / "model.safetensors"
    assert _load(bare).weights_check_ == "content"
    assert _load(bare, sha256=sha256_of(bare)).weights_check_ == "sha256"
    table = make_estimator_table(2, seed=4, cutout_size=SIZE)
    out = predict_metallicity(table, estimator="gpm_resnet", weights=str(saved_model),
                              progress=False)
    assert out.meta["gpm_astro"]["steps"][-1]["params"]["weights_check"] == "content"


def test_bare_safetensors_flipped_byte_refused(saved_model, tmp_path):
    data = bytearray((saved_model / "model.safetensors").read_bytes())
    data[-7] ^= 0x10  # inside the last tensor's bytes
    (tmp_path / "flipped.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="content checksum.*refusing tampered"):
        _load(tmp_path / "flipped.safetensors")


def test_bare_safetensors_edited_embedded_card_refused(saved_model, tmp_path):
    edited = _rewrite_card(saved_model / "model.safetensors", tmp_path / "edited.safetensors",
                           _shift_mean)
    with pytest.raises(WeightsError, match="content checksum"):
        _load(edited)


def test_model_folder_edited_model_card_refused(saved_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(saved_model, folder)
    card = json.loads((folder / "model_card.json").read_text())
    card["target_standardization"]["mean"] += 0.5
    (folder / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=r"differs from the model card inside.*"
                                           r"target_standardization"):
        _load(folder)


def test_model_without_checksum_says_so(saved_model, tmp_path):
    old = _rewrite_card(saved_model / "model.safetensors", tmp_path / "old.safetensors",
                        lambda card: None, keep_digest=False)
    with pytest.warns(UnverifiedWeightsWarning, match="has no checksum"):
        estimator = _load(old)
    assert estimator.weights_check_ == "none"


# ------------------------------------------------------------------ broken cards and checkpoints

def test_broken_model_card_json_decode_error(saved_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(saved_model, folder)
    (folder / "model_card.json").write_text('{"format": "gpm_astro.gpm_resnet/1", ')
    with pytest.raises(WeightsError, match="not valid JSON"):
        _load(folder)


def test_broken_model_card_key_error(saved_model, tmp_path):
    lacking = _rewrite_card(saved_model / "model.safetensors", tmp_path / "lacking.safetensors",
                            lambda card: card.pop("uncertainty"), keep_digest=None)
    with pytest.raises(WeightsError, match="lacks or garbles an entry.*uncertainty"):
        _load(lacking)


def test_bad_checkpoint_with_resume_is_a_one_line_cli_error(tmp_path, capsys):
    table = make_estimator_table(12, seed=3, cutout_size=SIZE)
    write_table(table, tmp_path / "train.h5")
    (tmp_path / "ckpt" / "member0").mkdir(parents=True)
    (tmp_path / "ckpt" / "member0" / "checkpoint.pt").write_bytes(b"\x80\x04not a pickle")
    code = main(["train", str(tmp_path / "train.h5"), "--out", str(tmp_path / "model"),
                 "--epochs", "1", "--mc-passes", "1", "--checkpoint-dir",
                 str(tmp_path / "ckpt"), "--resume", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("gpm-astro: error: checkpoint") and err.count("\n") == 1
    assert "cannot be resumed from" in err and "without --resume" in err


# ------------------------------------------------------------------ nonsense in, flag out

NONSENSE = {
    "all_zero": (lambda c: np.zeros_like(c), "blank_cutout"),
    "constant": (lambda c: np.full_like(c, 0.3), "constant_cutout"),
    # the Legacy Survey cutout service's answer where the survey has no z-band data
    "no_z_band": (lambda c: np.concatenate([c[:2], np.zeros_like(c[2:])]), "blank_band"),
    "huge_1e30": (lambda c: c * np.float32(1e30), "absurd_flux"),
    "negative": (lambda c: -np.abs(c), "no_positive_flux"),
    "nan": (lambda c: np.where(np.arange(c.size).reshape(c.shape) == 5, np.nan, c),
            "invalid_pixels"),
}


@pytest.mark.parametrize("case", sorted(NONSENSE))
def test_gpm_resnet_flags_nonsense_cutouts(saved_model, case):
    make, flag = NONSENSE[case]
    table = make_estimator_table(3, seed=4, cutout_size=SIZE)
    table["cutout"][1] = make(np.asarray(table["cutout"][1]))
    estimator = _load(saved_model)
    for out in (predict_metallicity(table, estimator=estimator, progress=False),
                estimator.predict(table)):
        assert out["Z_pred_flag"].tolist() == ["ok", flag, "ok"]
        assert out["Z_pred"].mask.tolist() == [False, True, False]


@pytest.mark.parametrize("dtype", [np.int16, bool, np.complex64])
def test_gpm_resnet_flags_non_float_cutouts(saved_model, dtype):
    table = make_estimator_table(2, seed=4, cutout_size=SIZE)
    table["cutout"] = (np.asarray(table["cutout"]) * 100).astype(dtype)
    estimator = _load(saved_model)
    for out in (predict_metallicity(table, estimator=estimator, progress=False),
                estimator.predict(table)):
        assert out["Z_pred_flag"].tolist() == ["non_float_cutout"] * 2
        assert out["Z_pred"].mask.all()


# ------------------------------------------------------------------ cards from other writers

def _other_writer(card_edit=None, tensor_edit=None, *, source, target, metadata_format=None):
    """A bare weights file as another writer (another version) would make it: its card and
    tensors edited and the content checksum recomputed, so that only the content is wrong."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
    tensors = load_file(str(source))
    card = json.loads(metadata["model_card"])
    if card_edit is not None:
        card_edit(card)
    if tensor_edit is not None:
        tensor_edit(tensors)
    card["content_sha256"] = model_digest(card, tensors)
    metadata["model_card"] = json.dumps(card)
    if metadata_format is not None:
        metadata["format"] = metadata_format
    save_file(tensors, str(target), metadata=metadata)
    return target


@pytest.mark.parametrize("found, why", [("gpm_astro.gpm_resnet/2", "newer gpm_astro"),
                                        ("gpm_astro.gpm_resnet/0", "older gpm_astro"),
                                        ("something.else/1", "reads 'gpm_astro.gpm_resnet/1'")])
def test_card_of_another_format_version_is_refused(saved_model, tmp_path, found, why):
    def edit(card):
        card["format"] = found

    bare = _other_writer(edit, source=saved_model / "model.safetensors",
                         target=tmp_path / "model.safetensors", metadata_format=found)
    with pytest.raises(WeightsError, match=f"model.safetensors.*of format '{found}'.*{why}"):
        _load(bare)
    # a folder whose card and weights both say so: refused too, not read as format 1
    card = json.loads((saved_model / "model_card.json").read_text())
    edit(card)
    card["weights_sha256"] = sha256_of(bare)
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=f"of format '{found}'"):
        _load(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["target_standardization"].update(std=0.0),
     r"target_standardization\.std must be a positive number, got 0\.0"),
    (lambda c: c["target_standardization"].update(mean=None),
     r"target_standardization\.mean must be a finite number, got None"),
    (lambda c: c["target_standardization"].update(mean="8.9"),
     r"target_standardization\.mean must be a finite number"),
    (lambda c: c["uncertainty"].update(n_ensemble=0), r"n_ensemble must be a count >= 1"),
    (lambda c: c["uncertainty"].update(err_constant=None, err_scale=None),
     r"err_constant must be a >= 0 number, got None"),
    (lambda c: c.update(seeing_correction={"reference": 1.3, "intercept": 0.0, "slope": "x",
                                           "range": [1.0, 1.6]}),
     r"seeing_correction\.slope must be a finite number"),
    (lambda c: c.update(seeing_correction={"reference": 1.3, "intercept": 0.0}),
     r"lacks or garbles an entry.*'slope'"),
    (lambda c: c["uncertainty"].update(err_shape={"centre": 8.8, "scale": 0.2}),
     r"lacks or garbles an entry.*err_reference"),
    (lambda c: c["architecture"].update(future_field=1),
     r"does not describe a usable model: unknown GPMResNetConfig field.*future_field"),
])
def test_card_values_no_save_writes_are_refused_when_loading(saved_model, tmp_path, edit,
                                                            message):
    bare = _other_writer(edit, source=saved_model / "model.safetensors",
                         target=tmp_path / "odd.safetensors")
    with pytest.raises(WeightsError, match=message) as info:
        _load(bare)
    assert "odd.safetensors" in str(info.value)


def test_tensors_that_do_not_fit_the_card_are_refused(saved_model, tmp_path):
    def nan_weight(tensors):
        import torch

        key = next(k for k in sorted(tensors) if k.startswith("member0.") and
                   tensors[k].ndim == 4)
        tensors[key] = torch.full_like(tensors[key], float("nan"))

    def small_domain(tensors):
        tensors["domain.feature_mean"] = tensors["domain.feature_mean"][:4].clone()

    def two_members(card):
        card["uncertainty"]["n_ensemble"] = 2

    source = saved_model / "model.safetensors"
    with pytest.raises(WeightsError, match=r"odd\.safetensors.*member0\..* holds NaN"):
        _load(_other_writer(None, nan_weight, source=source,
                            target=tmp_path / "odd.safetensors"))
    with pytest.raises(WeightsError, match=r"domain\.feature_mean has shape \(4,\).*"
                                           r"expected \(8,\)"):
        _load(_other_writer(None, small_domain, source=source,
                            target=tmp_path / "d.safetensors"))
    with pytest.raises(WeightsError, match=r"holds no tensors of ensemble member 1 \(the card "
                                           r"says n_ensemble 2\)"):
        _load(_other_writer(two_members, source=source, target=tmp_path / "m.safetensors"))

    def wider(card):
        card["architecture"]["head_hidden"] = 9

    with pytest.raises(WeightsError, match=r"member 0 do not fit the card's architecture: "
                                           r"size mismatch for pg"):
        _load(_other_writer(wider, source=source, target=tmp_path / "w.safetensors"))


def test_cuda_requested_without_cuda_is_refused_at_load(saved_model, monkeypatch):
    import torch

    from gpm_astro.exceptions import ParameterError
    from gpm_astro_plugins.gpm_resnet import GPMResNetEstimator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParameterError, match="device 'cuda' requested but CUDA is not"):
        GPMResNetEstimator.load(saved_model, device="cuda")
    with pytest.raises(ParameterError, match="device must be 'auto', 'cpu' or 'cuda"):
        GPMResNetEstimator.load(saved_model, device="gpu0")
    assert GPMResNetEstimator.load(saved_model, device="auto").models_[0].ilo[0].weight.is_cpu


def test_saving_into_a_file_or_below_one_is_a_weights_error(saved_model, tmp_path):
    estimator = _load(saved_model)
    blocker = tmp_path / "model"
    blocker.write_text("not a folder")
    with pytest.raises(WeightsError, match=r"cannot save the model into '.*model': it is a "
                                           r"file, not a folder"):
        estimator.save(blocker)
    with pytest.raises(WeightsError, match=r"cannot save the model into '.*model/sub'"):
        estimator.save(blocker / "sub")
    # over an existing model: replaced, and it loads as the new one
    folder = tmp_path / "again"
    shutil.copytree(saved_model, folder)
    estimator.target_mean_ += 1.0
    estimator.save(folder)
    assert _load(folder).target_mean_ == estimator.target_mean_


def test_an_unreadable_loss_history_does_not_stop_the_model_loading(saved_model, tmp_path):
    from gpm_astro.exceptions import GPMAstroWarning

    folder = tmp_path / "model"
    shutil.copytree(saved_model, folder)
    (folder / "loss_history.csv").write_text('member,epoch\n1,2,3\n"')
    with pytest.warns(GPMAstroWarning, match=r"cannot read the loss history '.*loss_history"
                                             r"\.csv'.*loads without it"):
        estimator = _load(folder)
    assert len(estimator.history_) == 0 and estimator.weights_check_ == "content"
