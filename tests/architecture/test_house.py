"""The house rules: pluggy decides what is a hook, the core names no plugin, plugins load lazily,
a plugin can add a command and feed the pipeline exactly as a built-in does."""

import ast
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from gpm_astro import base, hookimpl, plugins
from gpm_astro.cli import main
from gpm_astro.exceptions import ParameterError, PluginError
from gpm_astro.io import read_table

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def only_by_hand(monkeypatch, fresh_plugins):
    """No entry point loads: only the plugins a test registers by hand."""
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group=None: [])
    plugins.reset_plugins()
    return plugins


class _ConstantZ(base.Estimator):
    name = "house_constant"
    requires_fit = False

    def fit(self, table, *, target="oh_p50", validation=None):
        return self

    def predict(self, table):  # pragma: no cover - never called here
        raise NotImplementedError


def test_an_unmarked_hook_function_is_ignored(only_by_hand):
    class Marked:
        @hookimpl
        def gpm_astro_register_estimators(self, register):
            register(_ConstantZ, name="foo_marked")

    class Unmarked:  # the right name, but no @hookimpl: pluggy sees no implementation
        def gpm_astro_register_estimators(self, register):
            register(_ConstantZ, name="foo_unmarked")

    only_by_hand.register_plugin(Marked(), name="marked")
    only_by_hand.register_plugin(Unmarked(), name="unmarked")
    names = [c.name for c in only_by_hand.list_components("estimator")]
    assert names == ["foo_marked"]
    with pytest.raises(KeyError, match="foo_unmarked"):
        only_by_hand.get_estimator("foo_unmarked")


def test_a_class_registered_by_path_loads_on_first_use(only_by_hand, monkeypatch):
    module = type(sys)("house_lazy_estimator")
    module.LazyZ = type("LazyZ", (_ConstantZ,), {"__module__": "house_lazy_estimator"})
    module.NotAnEstimator = object

    class ByPath:
        @hookimpl
        def gpm_astro_register_estimators(self, register):
            register("house_lazy_estimator:LazyZ", name="lazy_z")
            register("house_lazy_estimator:NotAnEstimator", name="not_one")

    only_by_hand.register_plugin(ByPath(), name="by_path")
    listing = only_by_hand.list_plugins()
    assert "house_lazy_estimator.LazyZ" in list(listing["class"])  # listed, not imported
    monkeypatch.setitem(sys.modules, "house_lazy_estimator", module)
    assert only_by_hand.get_estimator("lazy_z") is module.LazyZ
    with pytest.raises(PluginError, match="by_path.*not a subclass"):
        only_by_hand.get_estimator("not_one")


def _imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_the_core_imports_no_plugin():
    offenders = [f"{path.relative_to(REPO)}: {name}"
                 for path in sorted((REPO / "gpm_astro").rglob("*.py"))
                 for name in _imported_modules(path)
                 if name.split(".")[0] == "gpm_astro_plugins"]
    assert offenders == []


def test_looking_up_the_colour_polynomial_does_not_import_torch():
    code = ("import sys; from gpm_astro.plugins import get_estimator; "
            "cls = get_estimator('colour_polynomial'); cls(order=2); "
            "print('torch' in sys.modules, 'galsim' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.split() == ["False", "False"]


class _Hello(base.Command):
    help = "say hello"

    def add_arguments(self, parser):
        parser.add_argument("--who", default="world")

    def run(self, args):
        print(f"hello {args.who}")
        return 0


def test_a_plugin_adds_a_command(only_by_hand, capsys):
    class Greeter:
        @hookimpl
        def gpm_astro_register_commands(self, register):
            register(_Hello, name="hello")

    only_by_hand.register_plugin(Greeter(), name="greeter")
    assert main(["hello", "--who", "galaxies"]) == 0
    assert capsys.readouterr().out == "hello galaxies\n"


def test_a_plugin_command_may_not_take_a_core_name(only_by_hand):
    class Squatter:
        @hookimpl
        def gpm_astro_register_commands(self, register):
            register(_Hello, name="predict")

    only_by_hand.register_plugin(Squatter(), name="squatter")
    with pytest.raises(PluginError, match="squatter.*'predict'"):
        main(["predict", "--help"])


def test_the_mock_command_comes_from_the_mock_plugin():
    component = plugins.get_component("command", "mock")
    assert component.__module__.startswith("gpm_astro_plugins.mock")
    entry = next(ep for ep in metadata.entry_points(group="gpm_astro") if ep.name == "mock")
    assert entry.value == "gpm_astro_plugins.mock.plugin"


class _InMemorySky(base.PipelineSource):
    """A third-party source: the fake sky of the pipeline tests, held in memory."""

    name = "in_memory_sky"
    provides = ("labels", "catalog", "cutouts")

    def __init__(self, *, n_images=12):
        self.n_images = n_images

    def check_params(self):
        if self.n_images < 1:
            raise ParameterError(f"n_images must be positive, got {self.n_images!r}")

    def query(self, **criteria):  # pragma: no cover - the pipeline never calls it
        raise NotImplementedError

    def _sky(self):
        from pipeline_fakes import make_fake_sky

        return make_fake_sky(n_images=self.n_images, n_labelled=self.n_images // 2)

    def pipeline_tables(self):
        labels, images, truth = self._sky()
        images.remove_column("cutout")
        return base.PipelineTables(labels, images, truth)

    def pipeline_cutouts(self, images, truth=None):
        _, full, _ = self._sky()
        return np.asarray(full["cutout"])[np.asarray(images["image_row"])]


class _DyingSky(_InMemorySky):
    """Its worker processes die while drawing cutouts (as an unguarded script's do)."""

    def __init__(self, *, n_images=12, n_jobs=2):
        super().__init__(n_images=n_images)
        self.n_jobs, self.parent_pid = n_jobs, __import__("os").getpid()

    def pipeline_cutouts(self, images, truth=None):
        import os

        if os.getpid() != self.parent_pid:
            os._exit(1)
        return super().pipeline_cutouts(images, truth)


def test_a_dead_worker_of_the_sky_stage_is_a_clear_error(fresh_plugins, tmp_path):
    from gpm_astro.exceptions import GPMAstroError
    from gpm_astro.pipeline import run_pipeline

    class Provider:
        @hookimpl
        def gpm_astro_register_data_sources(self, register):
            register(_DyingSky, name="dying_sky")

    fresh_plugins.register_plugin(Provider(), name="provider")
    config = {"source": {"name": "dying_sky", "params": {"n_images": 12, "n_jobs": 2}},
              "application": {"estimator": None}}
    with pytest.raises(GPMAstroError, match="drawing the sky's cutouts.*__main__"):
        run_pipeline(config, output_dir=tmp_path, progress=False, until="sky")


def test_any_registered_pipeline_source_feeds_the_sky_stage(fresh_plugins, tmp_path):
    from gpm_astro.pipeline import load_config, read_cutouts, run_pipeline

    class Provider:
        @hookimpl
        def gpm_astro_register_data_sources(self, register):
            register(_InMemorySky, name="in_memory_sky")

    fresh_plugins.register_plugin(Provider(), name="provider")
    config = {"source": {"name": "in_memory_sky", "params": {"n_images": 0}},
              "estimators": {"c": {"estimator": "house_constant"}},
              "application": {"estimator": None}}
    with pytest.raises(ParameterError, match="n_images must be positive"):
        load_config(config)
    config["source"]["params"]["n_images"] = 12

    class Estimators:
        @hookimpl
        def gpm_astro_register_estimators(self, register):
            register(_ConstantZ, name="house_constant")

    fresh_plugins.register_plugin(Estimators(), name="estimators")
    run_pipeline(config, output_dir=tmp_path, progress=False, until="sky")
    images = read_table(tmp_path / "sky" / "images.fits")
    assert list(images["image_row"]) == list(range(12))
    _, full, _ = _InMemorySky(n_images=12)._sky()
    np.testing.assert_array_equal(read_cutouts(tmp_path / "sky" / "cutouts.h5", [3, 7]),
                                  np.asarray(full["cutout"])[[3, 7]])


def test_the_pipeline_describes_estimators_by_their_own_describe():
    get = plugins.get_estimator
    assert get("colour_polynomial")(order=3).describe() == "colour polynomial, order 3"
    assert get("mass_metallicity")().describe() == \
        "mass-metallicity relation, mass from lgm_tot_p50"
    assert _ConstantZ().describe() == "house_constant"


def test_the_stages_compose_on_files_by_hand(tmp_path, capsys):
    """mock -> select -> crossmatch -> preprocess -> train -> predict -> evaluate, each command
    reading what the one before it wrote (the archive files of ``gpm-astro mock`` included)."""

    def run(*argv):
        assert main([str(a) for a in argv]) == 0, capsys.readouterr().err

    sky = tmp_path / "sky"
    run("mock", "--n", 60, "--seed", 2, "--out", sky, "--no-progress")
    (archive,) = sorted(sky.glob("images_npix152_*.h5"))
    run("select", sky / "labels.fits", tmp_path / "selected.fits")
    run("crossmatch", tmp_path / "selected.fits", archive, tmp_path / "matched.fits",
        "--one-to-one")
    run("preprocess", tmp_path / "matched.fits", tmp_path / "clean.fits", "--quiet")
    run("train", tmp_path / "clean.fits", "--estimator", "colour_polynomial",
        "--out", tmp_path / "model")
    run("predict", tmp_path / "clean.fits", tmp_path / "pred.fits",
        "--estimator", "colour_polynomial", "--weights", tmp_path / "model", "--no-progress")
    run("evaluate", tmp_path / "pred.fits", "--out", tmp_path / "evaluation")
    capsys.readouterr()
    predictions = read_table(tmp_path / "pred.fits")
    selected = read_table(tmp_path / "selected.fits")
    assert len(predictions) == len(selected) > 10  # every label row, in order
    assert list(predictions["specobjid"]) == list(selected["specobjid"])
    n_predicted = int((predictions["Z_pred_flag"] == "ok").sum())
    metrics = read_table(tmp_path / "evaluation" / "metrics.ecsv")
    assert metrics["n"][0] == n_predicted > 10
    assert 0 < metrics["sigma"][0] < 0.5


def test_intermediate_tables_of_a_run_keep_their_cutouts(tmp_path):
    from pipeline_fakes import write_fake_sky

    from gpm_astro.pipeline import read_cutouts, run_pipeline

    (tmp_path / "sky").mkdir()
    source = write_fake_sky(tmp_path / "sky")
    config = {"source": source, "estimators": {"c": {"estimator": "colour_polynomial"}},
              "preprocess": {"config": "paper"}, "sample": {"n_galaxies": 20},
              "application": {"estimator": None}}
    out = tmp_path / "run"
    run_pipeline(config, output_dir=out, progress=False, until="sample")
    for name, store in (("sky/images.fits", "sky/cutouts.h5"),
                        ("preprocess/labelled.fits", "preprocess/labelled_cutouts.h5"),
                        ("sample/sample.fits", "preprocess/labelled_cutouts.h5")):
        table = read_table(out / name, attach_cutouts=True)
        rows = table[table.meta["cutout_rows"]]
        np.testing.assert_array_equal(table["cutout"], read_cutouts(out / store, rows))
    assert "cutout" not in read_table(out / "sample/sample.fits").colnames
    assert main(["preprocess", str(out / "sky/images.fits"), str(tmp_path / "again.fits"),
                 "--config", "paper", "--quiet"]) == 0


def test_run_takes_a_registered_source_by_name(tmp_path, capsys):
    from pipeline_fakes import write_fake_sky

    (tmp_path / "sky").mkdir()
    files = write_fake_sky(tmp_path / "sky", n_images=8, n_labelled=4)
    assert main(["run", "--source", "nope", "--out", str(tmp_path / "x")]) == 1
    assert "'nope'" in capsys.readouterr().err
    out = tmp_path / "run"
    config = tmp_path / "run.json"
    config.write_text('{"estimators": {"c": {"estimator": "colour_polynomial"}}, '
                      '"application": {"estimator": null}}')
    assert main(["run", str(config), "--source", "files",
                 "--source-param", f"labels={files['labels']}",
                 "--source-param", f"images={files['images']}", "--out", str(out),
                 "--until", "sky", "--quiet"]) == 0
    assert len(read_table(out / "sky" / "images.fits")) == 8


def test_fetch_lists_the_registered_sources_and_queries_any_of_them(tmp_path, capsys):
    from pipeline_fakes import write_fake_sky

    assert main(["fetch"]) == 2
    listing = capsys.readouterr().out
    for name in ("mock", "files", "sdss_mpajhu", "legacysurvey_cutouts", "datalab_tap"):
        assert f"  {name} " in listing
    (tmp_path / "sky").mkdir()
    files = write_fake_sky(tmp_path / "sky", n_images=6, n_labelled=4)
    out = tmp_path / "labels.fits"
    assert main(["fetch", "source", "files", str(out), "--param", f"labels={files['labels']}",
                 "--param", f"images={files['images']}", "--query", "table=labels"]) == 0
    assert len(read_table(out)) == len(read_table(files["labels"]))
