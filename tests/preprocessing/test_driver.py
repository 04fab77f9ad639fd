"""preprocess_cutouts / iter_preprocess_cutouts: the Table contract, plugins, errors."""

import os
import warnings

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from gpm_astro import hookimpl
from gpm_astro.base import PreprocessingStep, StepResult
from gpm_astro.exceptions import (EmptyResultWarning, ParameterError, PluginError, SchemaError,
                                  UnknownPluginError)
from gpm_astro.preprocessing import (PREPROCESS_FLAGS, iter_preprocess_cutouts,
                                     preprocess_cutouts, resolve_steps)

from . import constructed as C

OUTPUT_COLUMNS = ["preprocess_ok", "preprocess_flag", "target_x", "target_y", "target_a",
                  "target_b", "target_theta", "enclosing_radius", "n_sources"]


@pytest.fixture(scope="module")
def cases():
    names = list(C.CASES)
    images = C.stack(*[C.CASES[name][0](seed=i) for i, name in enumerate(names)])
    table = Table({"objid": np.arange(len(names)), "case": names, "cutout": images},
                  meta={"bands": "grz", "pixel_scale": 0.262})
    # the default's saddle test cannot see a companion that leaves no saddle (the shoulder)
    return table, [("ok" if name == "shoulder" else C.CASES[name][1]) for name in names]


def test_default_flags_every_constructed_case(cases):
    table, expected = cases
    out = preprocess_cutouts(table, progress=False)
    assert out["preprocess_flag"].tolist() == expected
    assert out["preprocess_ok"].tolist() == [flag == "ok" for flag in expected]


def test_strict_blends_also_flags_the_companion_without_a_saddle(cases):
    table, _ = cases
    out = preprocess_cutouts(table, config="strict_blends", progress=False)
    assert out["preprocess_flag"].tolist() == [C.CASES[name][1] for name in table["case"]]


def test_paper_config_runs_and_flags_the_clear_cases(cases):
    table, expected = cases
    out = preprocess_cutouts(table, config="paper", progress=False)
    flags = out["preprocess_flag"].tolist()
    assert set(flags) <= set(PREPROCESS_FLAGS)
    for case in ("isolated", "empty_centre", "nan_block"):
        index = table["case"].tolist().index(case)
        assert flags[index] == expected[index]


def test_output_table_contract(cases):
    table, expected = cases
    before = np.array(table["cutout"], copy=True)
    out = preprocess_cutouts(table, progress=False)
    assert out is not table
    assert np.array_equal(np.asarray(table["cutout"]), before, equal_nan=True)  # not mutated
    assert "preprocess_ok" not in table.colnames
    assert out["objid"].tolist() == table["objid"].tolist()
    for name in OUTPUT_COLUMNS:
        assert name in out.colnames
    assert out["cutout"].dtype == np.float32 and out["cutout"].shape == table["cutout"].shape
    assert str(out["enclosing_radius"].unit) == "arcsec"
    assert str(out["target_theta"].unit) == "deg"
    ok = np.asarray(out["preprocess_ok"])
    # rejected early -> masked; accepted -> a value
    assert not np.any(out["enclosing_radius"].mask[ok])
    nan_row = table["case"].tolist().index("nan_block")
    assert out["target_a"].mask[nan_row] and out["n_sources"].mask[nan_row]
    # cleaned cutouts are zero outside the target
    assert np.all(np.asarray(out["cutout"])[ok][:, :, 0, 0] == 0)
    steps = out.meta["gpm_astro"]["steps"][-1]
    assert steps["step"] == "preprocess_cutouts"
    assert [s["step"] for s in steps["params"]["steps"]] == [
        "check_pixels", "mask_neighbours", "size_limit", "blend_check", "fragment_check"]
    assert steps["params"]["steps"][1]["params"]["enlarge"] == 1.4


def test_chunks_and_batches_and_processes_agree(cases):
    table, _ = cases
    whole = preprocess_cutouts(table, progress=False)
    small_batches = preprocess_cutouts(table, batch_size=2, progress=False)
    chunks = [table[i:i + 4] for i in range(0, len(table), 4)]
    streamed = list(iter_preprocess_cutouts(iter(chunks), batch_size=3, max_pending=1,
                                            progress=False))
    parallel = preprocess_cutouts(table, batch_size=2, n_jobs=2, progress=False)
    assert [len(t) for t in streamed] == [len(c) for c in chunks]
    joined_flags = sum((t["preprocess_flag"].tolist() for t in streamed), [])
    for other_flags in (small_batches["preprocess_flag"].tolist(), joined_flags,
                        parallel["preprocess_flag"].tolist()):
        assert other_flags == whole["preprocess_flag"].tolist()
    assert np.array_equal(np.asarray(parallel["cutout"]), np.asarray(whole["cutout"]),
                          equal_nan=True)
    assert np.allclose(parallel["enclosing_radius"].filled(-1),
                       whole["enclosing_radius"].filled(-1))


def _batch_files():
    import glob
    import tempfile

    return (glob.glob("/dev/shm/gpm_astro_batch_*")
            + glob.glob(f"{tempfile.gettempdir()}/gpm_astro_batch_*"))


class Exploding(PreprocessingStep):
    """Fails on any batch holding a cutout whose first pixel is negative."""

    name = "exploding"

    def process(self, images, context):
        if np.any(images[:, 0, 0, 0] < 0):
            raise RuntimeError("boom in a worker")
        return StepResult(images=images, flags=np.full(len(images), "ok"))


class Dying(PreprocessingStep):
    """Ends its worker process on a batch holding a cutout whose first pixel is negative
    (as a worker dies when it re-runs an unguarded script, or runs out of memory)."""

    name = "dying"

    def __init__(self):
        self.parent_pid = os.getpid()  # the caller, which cleans batches too, lives

    def process(self, images, context):
        if np.any(images[:, 0, 0, 0] < 0) and os.getpid() != self.parent_pid:
            os._exit(1)
        return StepResult(images=images, flags=np.full(len(images), "ok"))


def test_a_dead_worker_is_a_clear_error_and_the_next_call_works(cases):
    from gpm_astro.exceptions import GPMAstroError

    table, _ = cases
    cutouts = np.array(table["cutout"])
    cutouts[:, 0, 0, 0] = -1.0
    with pytest.raises(GPMAstroError, match="if __name__ == \"__main__\""):
        preprocess_cutouts(Table({"cutout": cutouts}), steps=[Dying()], n_jobs=2,
                           batch_size=2, progress=False)
    again = preprocess_cutouts(table, n_jobs=2, batch_size=2, progress=False)
    assert len(again) == len(table)


def test_parallel_stream_of_mixed_chunks_matches_one_process(cases):
    table, _ = cases
    small = Table({"cutout": C.stack(C.isolated(seed=3), C.isolated(seed=4))[:, :, 36:116,
                                                                            36:116]})
    chunks = [table[:5], small, table[5:], table[:0], small]
    import cv2

    threads = cv2.getNumThreads()
    before = set(_batch_files())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyResultWarning)  # the empty chunk
        expected = [preprocess_cutouts(c, progress=False) for c in chunks]
    for max_pending, clean_here in ((1, True), (3, True), (2, False)):
        streamed = list(iter_preprocess_cutouts(iter(chunks), batch_size=2, n_jobs=2,
                                                max_pending=max_pending, clean_here=clean_here,
                                                progress=False))
        assert [len(t) for t in streamed] == [len(c) for c in chunks]
        for got, want in zip(streamed, expected):
            assert got["preprocess_flag"].tolist() == want["preprocess_flag"].tolist()
            assert np.array_equal(np.asarray(got["cutout"]), np.asarray(want["cutout"]),
                                  equal_nan=True)
    assert set(_batch_files()) == before  # the shared buffers are deleted
    assert cv2.getNumThreads() == threads  # one OpenCV thread only while workers ran


def test_a_worker_error_surfaces_and_leaves_no_files(cases):
    table, _ = cases
    cutouts = np.array(table["cutout"])
    cutouts[5, 0, 0, 0] = -1.0
    before = set(_batch_files())
    with pytest.raises(RuntimeError, match="boom in a worker"):
        preprocess_cutouts(Table({"cutout": cutouts}), steps=[Exploding()], n_jobs=2,
                           batch_size=2, progress=False)
    stream = iter_preprocess_cutouts(iter([table, table]), n_jobs=2, batch_size=2,
                                     progress=False)
    next(stream)
    stream.close()  # abandoned half-way
    assert set(_batch_files()) == before
    with pytest.raises(ParameterError, match="max_pending must be a positive integer, got 0"):
        next(iter_preprocess_cutouts(iter([table]), n_jobs=2, max_pending=0))
    with pytest.raises(ParameterError, match=r"clean_here=False needs .* got n_jobs=1"):
        next(iter_preprocess_cutouts(iter([table]), clean_here=False))


def test_worker_side_buffer_mappings_are_kept_and_bounded(cases, tmp_path):
    import gpm_astro.preprocessing as driver

    table, _ = cases
    steps = resolve_steps(config="default")
    images = np.asarray(table["cutout"][:2])
    expected = driver.run_steps(images, steps)
    driver._WORKER_MAPPINGS.clear()
    paths = []
    for k in range(3):
        path = str(tmp_path / f"slot{k}.f4")
        np.asarray(np.memmap(path, np.float32, "w+", shape=(4,) + images.shape[1:]))[:2] = images
        paths.append(path)
        flags, _ = driver._run_slot(path, (4,) + images.shape[1:], 2, steps, 0.262, "grz", 2)
        assert flags.tolist() == expected[1].tolist()
        cleaned = np.memmap(path, np.float32, "r", shape=(4,) + images.shape[1:])[:2]
        assert np.array_equal(cleaned, expected[0], equal_nan=True)  # cleaned in place
    # at most n_slots mappings, the oldest dropped first; a kept one is reused
    assert [key[0] for key in driver._WORKER_MAPPINGS] == paths[1:]
    kept = driver._WORKER_MAPPINGS[(paths[2], (4,) + images.shape[1:])]
    driver._run_slot(paths[2], (4,) + images.shape[1:], 2, steps, 0.262, "grz", 2)
    assert driver._WORKER_MAPPINGS[(paths[2], (4,) + images.shape[1:])] is kept
    driver._WORKER_MAPPINGS.clear()


def test_allocator_thresholds_are_set_on_glibc():
    import platform

    from gpm_astro.preprocessing import _keep_freed_memory

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is a glibc call")
    assert _keep_freed_memory() is True


def test_masked_rows_and_float64_input():
    images = C.stack(C.isolated(seed=1), C.isolated(seed=2)).astype(np.float64)
    column = MaskedColumn(images, mask=np.zeros(images.shape, bool))
    column.mask[1] = True
    out = preprocess_cutouts(Table({"cutout": column}), progress=False)
    assert out["preprocess_flag"].tolist() == ["ok", "invalid_pixels"]
    assert out["cutout"].dtype == np.float32


def test_empty_table_keeps_schema_and_warns():
    table = Table({"cutout": np.zeros((0, 3, 152, 152), np.float32)})
    with pytest.warns(EmptyResultWarning):
        out = preprocess_cutouts(table, progress=False)
    assert len(out) == 0
    for name in OUTPUT_COLUMNS:
        assert name in out.colnames


@pytest.mark.parametrize("cutout, message", [
    (np.zeros((2, 152, 152, 3), np.float32), r"\(2, 152, 152, 3\)"),
    (np.zeros((2, 4, 152, 152), np.float32), r"\(2, 4, 152, 152\)"),
    (np.zeros((2, 152, 152), np.float32), r"\(2, 152, 152\)"),
    (np.zeros((2, 3, 8, 8), np.float32), r"\(2, 3, 8, 8\)"),
    (np.zeros((2, 3, 152, 152), np.int16), "int16"),
    (np.zeros((2, 3, 152, 152), bool), "bool"),
])
def test_malformed_cutout_column_is_a_schema_error(cutout, message):
    with pytest.raises(SchemaError, match=message):
        preprocess_cutouts(Table({"cutout": cutout}), progress=False)


def test_missing_column_and_wrong_bands_are_schema_errors():
    with pytest.raises(SchemaError, match="cutout"):
        preprocess_cutouts(Table({"image": np.zeros((1, 3, 20, 20))}), progress=False)
    table = Table({"cutout": np.zeros((1, 3, 20, 20), "f4")}, meta={"bands": "gri"})
    with pytest.raises(SchemaError, match="'gri'"):
        preprocess_cutouts(table, progress=False)
    with pytest.raises(TypeError, match="ndarray"):
        preprocess_cutouts(np.zeros((1, 3, 20, 20)), progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"config": "fastest"}, "'fastest'"),
    ({"n_jobs": 0}, "0"),
    ({"batch_size": 0}, "0"),
    ({"pixel_scale": -0.2}, "-0.2"),
    ({"steps": "mask_neighbours"}, "'mask_neighbours'"),
    ({"steps": [42]}, "42"),
    ({"steps": ["size_limit", "mask_neighbours"]}, "size_limit"),
])
def test_bad_options_are_parameter_errors(kwargs, message):
    table = Table({"cutout": C.stack(C.isolated())})
    with pytest.raises(ParameterError, match=message):
        preprocess_cutouts(table, progress=False, **kwargs)


def test_unknown_step_lists_known_ones():
    with pytest.raises(UnknownPluginError, match="blend_check"):
        resolve_steps(["no_such_step"])


def test_steps_can_be_dropped_reordered_and_reparametrised(cases):
    table, _ = cases
    only_mask = preprocess_cutouts(table, steps=["check_pixels", "mask_neighbours"],
                                   progress=False)
    flags = dict(zip(table["case"], only_mask["preprocess_flag"]))
    assert flags["pair"] == "ok" and flags["too_large"] == "ok"  # no size/blend steps ran
    assert only_mask["enclosing_radius"].mask.all()
    strict = preprocess_cutouts(table, steps=[
        "check_pixels", "mask_neighbours", ("size_limit", {"region": "segment",
                                                           "max_radius": 0.5})],
        progress=False)
    assert "ok" not in strict["preprocess_flag"].tolist()


class BrightnessCut(PreprocessingStep):
    """A user's step: reject targets whose masked r flux is below ``min_flux``."""

    name = "brightness_cut"
    provides = ("masked_r_flux",)

    def __init__(self, *, min_flux=1.0):
        self.min_flux = min_flux

    def process(self, images, context):
        flux = images[:, 1].sum(axis=(1, 2))
        flags = np.where(flux >= self.min_flux, "ok", "too_faint")
        return StepResult(images=images, flags=flags, columns={"masked_r_flux": flux})


class _UserPlugin:
    @staticmethod
    @hookimpl
    def gpm_astro_register_preprocessing_steps(register):
        register(BrightnessCut)


def test_custom_step_registered_from_outside(fresh_plugins):
    fresh_plugins.register_plugin(_UserPlugin, name="user_plugin")
    bright = C.isolated(seed=1, r_mag=18.0)
    faint = C.isolated(seed=2, r_mag=21.5)
    table = Table({"cutout": C.stack(bright, faint)})
    steps = resolve_steps(config="default")[:2] + [("brightness_cut", {"min_flux": 3.0})]
    steps = steps[:2] + resolve_steps([steps[2]])
    out = preprocess_cutouts(table, steps=steps, progress=False)
    assert out["preprocess_flag"].tolist() == ["ok", "too_faint"]
    assert out["masked_r_flux"][0] > 3.0 > out["masked_r_flux"][1]
    recorded = out.meta["gpm_astro"]["steps"][-1]["params"]["steps"][-1]
    assert recorded == {"step": "brightness_cut",
                        "class": f"{__name__}.BrightnessCut", "params": {"min_flux": 3.0}}


def test_a_step_breaking_the_contract_is_named():
    class Broken(PreprocessingStep):
        name = "broken"

        def process(self, images, context):
            return StepResult(images=images[:1], flags=np.array(["ok"]))

    table = Table({"cutout": C.stack(C.isolated(seed=1), C.isolated(seed=2))})
    with pytest.raises(PluginError, match="'broken'"):
        preprocess_cutouts(table, steps=[Broken()], progress=False)


class PixelBlind(PreprocessingStep):
    """Reads only per-row products, never the pixels."""

    name = "pixel_blind"
    reads_images = False

    def __init__(self, *, replace=False):
        self.replace = replace

    def process(self, images, context):
        seen.append(images)
        out = np.zeros(images.shape, np.float32) if self.replace else images
        return StepResult(images=out, flags=np.full(len(images), "ok"))


seen = []


def test_a_step_that_reads_no_pixels_gets_no_copy_and_must_not_change_them(cases):
    table, expected = cases
    seen.clear()
    out = preprocess_cutouts(table, steps=["check_pixels", "mask_neighbours", PixelBlind()],
                             progress=False)
    whole = preprocess_cutouts(table, steps=["check_pixels", "mask_neighbours"],
                               progress=False)
    assert np.array_equal(out["cutout"], whole["cutout"], equal_nan=True)
    stand_in = seen[-1]
    assert stand_in.shape[1:] == (3, 152, 152) and not stand_in.flags.writeable
    assert stand_in.strides[0] == 0  # a broadcast zero, no pixels copied
    with pytest.raises(PluginError, match="'pixel_blind'.*unchanged"):
        preprocess_cutouts(table, steps=[PixelBlind(replace=True)], progress=False)


def test_no_warnings_on_clean_input(cases):
    table, _ = cases
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        preprocess_cutouts(table, progress=False)
