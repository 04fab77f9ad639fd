"""The plugin system: every hook, every error, entry-point loading and the CLI listing.

Entry points are faked (``metadata.entry_points`` is replaced) so that these tests do not depend
on which built-in plugins import at the moment; `test_builtin_plugins_load_with_their_package`
runs the real ones.
"""

import inspect
import re
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest
from astropy.table import Table

import gpm_astro
from gpm_astro import base, hookimpl, hookspecs, plugins
from gpm_astro.cli import main
from gpm_astro.exceptions import DuplicatePluginError, PluginError, UnknownPluginError

REPO = Path(__file__).resolve().parents[1]
HOOK_NAMES = sorted(name for name, func in vars(hookspecs).items()
                    if name.startswith("gpm_astro_") and callable(func))


# --- small components of each kind --------------------------------------------------------

class ConstantZ(base.Estimator):
    """Predicts the same Z for every row."""

    name = "constant_z"
    requires_fit = False

    def __init__(self, *, value=8.9):
        self.value = value

    def fit(self, table, *, target="oh_p50"):
        return self

    def predict(self, table):
        n = len(table)
        return Table({"Z_pred": [self.value] * n, "Z_pred_err": [0.0] * n,
                      "Z_pred_flag": ["ok"] * n})


class ZeroStep(base.PreprocessingStep):
    name = "zero_step"

    def process(self, images, context):
        import numpy as np

        return base.StepResult(images=np.zeros_like(images),
                               flags=np.array(["ok"] * len(images)))


class ListSource(base.DataSource):
    name = "list_source"
    provides = ("labels",)

    def __init__(self, *, n_rows=3):
        self.n_rows = n_rows

    def query(self, **criteria):
        return Table({"specobjid": list(range(self.n_rows))})


class EstimatorPlugin:
    @hookimpl
    def gpm_astro_register_estimators(self, register):
        register(ConstantZ)
        register(ConstantZ, name="constant_z_alias")


class StepPlugin:
    @hookimpl
    def gpm_astro_register_preprocessing_steps(self, register):
        register(ZeroStep)


class SourcePlugin:
    @hookimpl
    def gpm_astro_register_data_sources(self, register):
        register(ListSource)


@pytest.fixture
def no_entry_points(monkeypatch, fresh_plugins):
    """A plugin manager that loads no entry point: only what a test registers by hand."""
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group=None: [])
    plugins.reset_plugins()
    return plugins


def fake_entry_points(monkeypatch, modules):
    """Advertise in-memory modules as entry points of the gpm_astro group."""
    points = []
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, module.__name__, module)
        points.append(metadata.EntryPoint(name=name, value=module.__name__, group="gpm_astro"))
    monkeypatch.setattr(plugins.metadata, "entry_points",
                        lambda group=None: [p for p in points if p.group == group])
    plugins.reset_plugins()


def plugin_module(module_name, **hooks):
    module = types.ModuleType(module_name)
    for hook_name, func in hooks.items():
        setattr(module, hook_name, hookimpl(func))
    return module


# --- each hook ----------------------------------------------------------------------------

def test_estimator_hook(no_entry_points):
    plugins.register_plugin(EstimatorPlugin(), name="estimators_here")
    cls = plugins.get_estimator("constant_z")
    assert cls is ConstantZ and plugins.get_estimator("constant_z_alias") is ConstantZ
    out = cls(value=9.0).fit(Table({"a": [1, 2]})).predict(Table({"a": [1, 2]}))
    assert list(out["Z_pred"]) == [9.0, 9.0]


def test_preprocessing_step_hook(no_entry_points):
    import numpy as np

    plugins.register_plugin(StepPlugin(), name="steps_here")
    step = plugins.get_step("zero_step")()
    result = step.process(np.ones((2, 3, 4, 4), np.float32), {"pixel_scale": 0.262})
    assert result.images.sum() == 0 and list(result.flags) == ["ok", "ok"]


def test_data_source_hook(no_entry_points):
    plugins.register_plugin(SourcePlugin(), name="sources_here")
    source = plugins.get_source("list_source")(n_rows=5)
    assert len(source.query()) == 5
    assert [len(t) for t in source.iter_query(chunk_size=2)] == [2, 2, 1]


class ConfigPlugin:
    @hookimpl
    def gpm_astro_register_preprocessing_configs(self, register):
        register("zero_only", ["zero_step"])
        register("pixels_then_zero", [("check_pixels", {}), "zero_step"])


def test_preprocessing_config_hook(fresh_plugins):
    import numpy as np

    from gpm_astro.preprocessing import configurations, preprocess_cutouts

    plugins.register_plugin(StepPlugin(), name="steps_here")
    plugins.register_plugin(ConfigPlugin(), name="configs_here")
    assert plugins.get_configuration("pixels_then_zero") == [("check_pixels", {}),
                                                             ("zero_step", {})]
    assert plugins.get_component("preprocessing_config", "zero_only") == [("zero_step", {})]
    known = configurations()
    assert {"default", "paper", "strict_blends", "zero_only"} <= set(known)
    cutouts = np.random.default_rng(1).normal(0.0, 0.01, (2, 3, 32, 32)).astype(np.float32)
    cutouts[1, 0, 0, 0] = np.nan
    out = preprocess_cutouts(Table({"cutout": cutouts}), config="pixels_then_zero",
                             progress=False)
    assert out["preprocess_flag"].tolist() == ["ok", "invalid_pixels"]
    assert np.all(np.asarray(out["cutout"][0]) == 0)
    listed = plugins.list_plugins()
    row = listed[(listed["kind"] == "preprocessing_config")
                 & (listed["name"] == "pixels_then_zero")][0]
    assert row["plugin"] == "configs_here" and row["class"] == "check_pixels -> zero_step"
    with pytest.raises(UnknownPluginError, match="'nope'.*known:.*zero_only"):
        plugins.get_configuration("nope")


@pytest.mark.parametrize("name, steps, error, message", [
    ("", ["zero_step"], PluginError, "named ''"),
    ("bad_items", [42], PluginError, "'bad_items' must be a list"),
    ("bad_list", "zero_step", PluginError, "'bad_list' must be a list"),
    ("empty", [], PluginError, "'empty' has no steps"),
    ("default", ["zero_step"], DuplicatePluginError, "'default' is registered twice"),
])
def test_bad_preprocessing_config_is_named(fresh_plugins, name, steps, error, message):
    class Bad:
        @hookimpl
        def gpm_astro_register_preprocessing_configs(self, register):
            register(name, steps)

    plugins.register_plugin(Bad(), name="bad_configs")
    with pytest.raises(error, match=message):
        plugins.list_components()


def test_every_hookspec_is_tested_documented_and_implemented_in_tests():
    """Fails when a new hook is added without a docstring, a test, or a section in the docs."""
    assert HOOK_NAMES, "no hook specifications found"
    assert set(HOOK_NAMES) == set(plugins.KINDS.values())
    docs = (REPO / "docs" / "plugins.rst").read_text()
    test_sources = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))
    for name in HOOK_NAMES:
        spec = getattr(hookspecs, name)
        assert inspect.getdoc(spec), f"hook {name} has no docstring"
        assert "Parameters" in inspect.getdoc(spec), f"hook {name} documents no parameters"
        assert name in docs, f"hook {name} is not documented in docs/plugins.rst"
        assert re.search(rf"def {name}\(", test_sources), f"no test implements hook {name}"


# --- errors -------------------------------------------------------------------------------

def test_duplicate_name_names_both_plugins(no_entry_points):
    class Other(ConstantZ):
        pass

    class Clash:
        @hookimpl
        def gpm_astro_register_estimators(self, register):
            register(Other, name="constant_z")

    plugins.register_plugin(EstimatorPlugin(), name="first_plugin")
    plugins.register_plugin(Clash(), name="second_plugin")
    with pytest.raises(DuplicatePluginError) as info:
        plugins.get_estimator("constant_z")
    message = str(info.value)
    assert "'constant_z'" in message
    assert "first_plugin" in message and "second_plugin" in message


def test_wrong_base_class_is_an_error(no_entry_points):
    class NotAnEstimator:
        name = "impostor"

    class Wrong:
        @hookimpl
        def gpm_astro_register_estimators(self, register):
            register(NotAnEstimator)

    class StepAsSource:
        @hookimpl
        def gpm_astro_register_data_sources(self, register):
            register(ZeroStep)

    plugins.register_plugin(Wrong(), name="wrong_plugin")
    with pytest.raises(PluginError, match="'wrong_plugin'.*not a subclass of "
                                          "gpm_astro.base.Estimator"):
        plugins.list_plugins()
    plugins.reset_plugins()
    plugins.register_plugin(StepAsSource(), name="step_as_source")
    with pytest.raises(PluginError, match="DataSource"):
        plugins.get_source("zero_step")


def test_nameless_component_is_an_error(no_entry_points):
    class Nameless(ConstantZ):
        name = None

    class Plugin:
        @hookimpl
        def gpm_astro_register_estimators(self, register):
            register(Nameless)

    plugins.register_plugin(Plugin(), name="nameless_plugin")
    with pytest.raises(PluginError, match="with no name"):
        plugins.list_components()


def test_unknown_name_lists_known_ones(no_entry_points):
    plugins.register_plugin(EstimatorPlugin(), name="estimators_here")
    with pytest.raises(UnknownPluginError) as info:
        plugins.get_estimator("resnet_gpm")
    assert "'resnet_gpm'" in str(info.value)
    assert "constant_z, constant_z_alias" in str(info.value)
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownPluginError, match="none"):
        plugins.get_source("anything")
    with pytest.raises(UnknownPluginError, match="unknown component kind 'model'"):
        plugins.get_component("model", "x")


def test_misspelt_hookimpl_is_caught(no_entry_points, monkeypatch):
    class Misspelt:
        @hookimpl
        def gpm_astro_register_estimator(self, register):  # missing final "s"
            register(ConstantZ)

    with pytest.raises(PluginError, match="gpm_astro_register_estimator"):
        plugins.register_plugin(Misspelt(), name="misspelt")
    # the same mistake in an entry-point plugin is caught when plugins load
    fake_entry_points(monkeypatch, {"typo": plugin_module(
        "typo_plugin_module", gpm_astro_register_data_source=lambda register: None)})
    with pytest.raises(PluginError, match="unknown hook.*gpm_astro_register_data_source"):
        plugins.load_plugins()


def test_entry_point_that_fails_to_import_names_itself(monkeypatch, fresh_plugins):
    points = [metadata.EntryPoint(name="broken", value="no_such_module_xyz.plugin",
                                  group="gpm_astro")]
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group=None: points)
    plugins.reset_plugins()
    with pytest.raises(PluginError, match="'broken'.*no_such_module_xyz"):
        plugins.list_plugins()


# --- loading, the environment variable, listing -------------------------------------------

def three_entry_points(monkeypatch):
    fake_entry_points(monkeypatch, {
        "alpha": plugin_module("alpha_plugin_module",
                               gpm_astro_register_estimators=lambda register:
                               register(ConstantZ)),
        "beta": plugin_module("beta_plugin_module",
                              gpm_astro_register_preprocessing_steps=lambda register:
                              register(ZeroStep)),
        "gamma": plugin_module("gamma_plugin_module",
                               gpm_astro_register_data_sources=lambda register:
                               register(ListSource)),
    })


def test_plugins_load_lazily(monkeypatch, fresh_plugins):
    three_entry_points(monkeypatch)
    assert plugins._state["pm"] is None  # nothing loads until the first look-up
    assert plugins.get_estimator("constant_z") is ConstantZ
    assert plugins._state["pm"] is not None
    done = subprocess.run([sys.executable, "-c",
                           "import sys, gpm_astro, gpm_astro.plugins as p; "
                           "print(p._state['pm'] is None, 'gpm_astro_plugins.mock.plugin' "
                           "in sys.modules)"], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "False"]


@pytest.mark.parametrize("allowed, kinds", [
    (None, ["estimator", "preprocessing_step", "data_source"]),
    ("alpha", ["estimator"]),
    ("beta, gamma", ["preprocessing_step", "data_source"]),
    ("", []),
])
def test_environment_variable_restricts_loading(monkeypatch, fresh_plugins, allowed, kinds):
    three_entry_points(monkeypatch)
    if allowed is None:
        monkeypatch.delenv(plugins.PLUGINS_ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(plugins.PLUGINS_ENV_VAR, allowed)
    listed = plugins.list_plugins()
    assert sorted(listed["kind"]) == sorted(kinds)


def test_list_plugins_columns(monkeypatch, fresh_plugins):
    three_entry_points(monkeypatch)
    listed = plugins.list_plugins()
    assert listed.colnames == ["kind", "name", "plugin", "package", "version", "class"]
    row = listed[list(listed["name"]).index("constant_z")]
    assert (row["kind"], row["plugin"]) == ("estimator", "alpha")
    assert row["class"] == f"{__name__}.ConstantZ"
    assert list(listed["kind"]) == ["estimator", "preprocessing_step", "data_source"]
    monkeypatch.setenv(plugins.PLUGINS_ENV_VAR, "")
    plugins.reset_plugins()
    empty = plugins.list_plugins()
    assert len(empty) == 0 and empty.colnames == listed.colnames


def test_class_plugin_reports_its_module_package(no_entry_points):
    class ClassPlugin:  # registered as a class, not an instance
        @staticmethod
        @hookimpl
        def gpm_astro_register_data_sources(register):
            register(ListSource)

    plugins.register_plugin(ClassPlugin, name="class_plugin")
    row = plugins.list_plugins()[0]
    assert row["plugin"] == "class_plugin"
    assert row["package"] == __name__.split(".")[0]  # the defining module, not "ClassPlugin"


def test_plugins_cli_lists_components(monkeypatch, fresh_plugins, capsys):
    three_entry_points(monkeypatch)
    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["kind", "name", "plugin", "package", "version"]
    assert any(line.split()[:3] == ["estimator", "constant_z", "alpha"] for line in lines)
    assert any(line.split()[:3] == ["data_source", "list_source", "gamma"] for line in lines)


def test_builtin_plugins_load_with_their_package():
    """The real entry points: every built-in loads, lists package gpm-astro and its version."""
    done = subprocess.run([sys.executable, "-m", "gpm_astro", "plugins"], capture_output=True,
                          text=True, check=False, env=_env_without_restriction())
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[2:] if line.strip()]
    builtin_entry_points = {ep.name for ep in metadata.entry_points(group="gpm_astro")
                            if ep.value.startswith("gpm_astro_plugins.")}
    assert builtin_entry_points >= {"mock", "preprocessing", "gpm_resnet", "legacysurvey"}
    for row in rows:
        if row[2] in builtin_entry_points:
            assert row[3:] == ["gpm-astro", gpm_astro.__version__], row
    assert {row[2] for row in rows} & builtin_entry_points


def _env_without_restriction():
    import os

    env = dict(os.environ)
    env.pop(plugins.PLUGINS_ENV_VAR, None)
    return env
