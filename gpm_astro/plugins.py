"""The plugin manager: finds estimators, preprocessing steps, data sources and commands.

Plugins are loaded lazily, on the first look-up, from the ``gpm_astro`` entry-point group
(our own built-ins are declared there too). The environment variable ``GPM_ASTRO_PLUGINS``,
a comma-separated list of entry-point names, restricts which plugins load; empty loads none.

The registry is built by calling each hook through pluggy (``pm.hook.<name>``): only
functions marked ``@gpm_astro.hookimpl`` take part. A plugin may register a class by its
import path (``"package.module:ClassName"``); the module is then imported only when that
component is first used, so looking up one estimator does not import every plugin's
dependencies (torch, GalSim, ...).
"""

import importlib
import os
import threading
import types
from dataclasses import dataclass
from importlib import metadata

import pluggy

from . import hookspecs
from .exceptions import DuplicatePluginError, PluginError, UnknownPluginError

__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGINS_ENV_VAR",
    "KINDS",
    "RegisteredComponent",
    "load_plugins",
    "reset_plugins",
    "register_plugin",
    "get_plugin_manager",
    "get_component",
    "get_estimator",
    "get_step",
    "get_source",
    "get_configuration",
    "list_components",
    "list_plugins",
    "add_plugin_commands",
]

ENTRY_POINT_GROUP = "gpm_astro"
PLUGINS_ENV_VAR = "GPM_ASTRO_PLUGINS"

# kind -> hook name
KINDS = {
    "estimator": "gpm_astro_register_estimators",
    "preprocessing_step": "gpm_astro_register_preprocessing_steps",
    "data_source": "gpm_astro_register_data_sources",
    "preprocessing_config": "gpm_astro_register_preprocessing_configs",
    "command": "gpm_astro_register_commands",
}


@dataclass(frozen=True)
class RegisteredComponent:
    """One class (or, for a preprocessing configuration, one list of steps) of a plugin.

    ``target`` is the class, or its import path ``"module:qualname"`` (imported by `cls`).
    """

    kind: str
    name: str
    target: object
    plugin: str
    package: str
    version: str
    steps: tuple = ()

    @property
    def class_path(self):
        """``module.qualname`` of the class, without importing it."""
        if self.target is None:
            return None
        if isinstance(self.target, str):
            return self.target.replace(":", ".")
        return f"{self.target.__module__}.{self.target.__qualname__}"

    @property
    def cls(self):
        """The class (imported on first use when registered by path); None for a
        preprocessing configuration.

        Raises
        ------
        PluginError
            If the path does not import, or names something that is not a class of this kind.
        """
        if not isinstance(self.target, str):
            return self.target
        with _lock:
            cached = _loaded_classes.get(self.target)
            if cached is None:
                cached = _import_class(self.target, self.kind, self.plugin)
                _loaded_classes[self.target] = cached
        return cached


_lock = threading.RLock()
_state = {"pm": None, "registry": None}
_loaded_classes = {}


def _check_class(cls, kind, plugin):
    base = _base_class(kind)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        msg = (f"plugin {plugin!r} registered {cls!r} as a {kind}, but it is not "
               f"a subclass of {base.__module__}.{base.__qualname__}")
        raise PluginError(msg)
    return cls


def _import_class(path, kind, plugin):
    module_name, _, qualname = path.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # a broken plugin must say who it is
        msg = f"plugin {plugin!r}: the {kind} {path!r} cannot be imported: {exc}"
        raise PluginError(msg) from exc
    return _check_class(obj, kind, plugin)


def _base_class(kind):
    from . import base

    return {
        "estimator": base.Estimator,
        "preprocessing_step": base.PreprocessingStep,
        "data_source": base.DataSource,
        "command": base.Command,
    }[kind]


def _packages_distributions():
    """Top-level package -> distributions, read once per registry build (reading it scans
    every installed distribution's file list: about a second)."""
    cached = _state.get("distributions")
    if cached is None:
        cached = _state["distributions"] = metadata.packages_distributions()
    return cached


def _distribution_of(plugin):
    """Return (package, version) of the distribution a plugin object comes from."""
    if isinstance(plugin, types.ModuleType):
        module = plugin.__name__
    else:  # a class or an instance: the module that defines it (not the class name)
        module = getattr(plugin, "__module__", None) or type(plugin).__module__
    top = module.split(".")[0]
    dists = _packages_distributions().get(top, [])
    if dists:
        dist = dists[0]
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return top, "unknown"


def _new_manager():
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    return pm


def _selected_entry_points():
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    allowed = os.environ.get(PLUGINS_ENV_VAR)
    if allowed is None:
        return list(eps)
    names = {n.strip() for n in allowed.split(",") if n.strip()}
    return [ep for ep in eps if ep.name in names]


def get_plugin_manager():
    """Return the plugin manager, loading the entry-point plugins on first call."""
    load_plugins()
    return _state["pm"]


def load_plugins():
    """Load the plugins advertised under the ``gpm_astro`` entry-point group (once)."""
    with _lock:
        if _state["pm"] is not None:
            return _state["pm"]
        pm = _new_manager()
        for ep in _selected_entry_points():
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must say who it is
                msg = f"plugin {ep.name!r} ({ep.value}) failed to import: {exc}"
                raise PluginError(msg) from exc
            if pm.is_registered(plugin):
                continue
            pm.register(plugin, name=ep.name)
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"a plugin implements an unknown hook: {exc}") from exc
        _state["pm"] = pm
        _state["registry"] = None
        return pm


def reset_plugins():
    """Forget every loaded plugin; the next look-up loads them again."""
    with _lock:
        _state["pm"] = None
        _state["registry"] = None
        _state["distributions"] = None


def register_plugin(plugin, name=None):
    """Register a plugin object or module by hand (e.g. in a script or a test).

    Parameters
    ----------
    plugin : module or object
        Has functions marked with `gpm_astro.hookimpl`.
    name : str, optional
        The plugin's name; defaults to the module name.

    Returns
    -------
    str
        The name the plugin was registered under. ``get_plugin_manager().unregister(name=...)``
        removes it.
    """
    with _lock:
        pm = get_plugin_manager()
        try:
            registered = pm.register(plugin, name=name)
            pm.check_pending()
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginError(f"cannot register plugin {name or plugin!r}: {exc}") from exc
        _state["registry"] = None
        return registered


def _hook_implementations(pm, hook_name):
    """The marked implementations of a hook, with each one's plugin name, through pluggy."""
    return getattr(pm.hook, hook_name).get_hookimpls()


def _build_registry(pm):
    registry = {kind: {} for kind in KINDS}
    for kind, hook_name in KINDS.items():
        for impl in _hook_implementations(pm, hook_name):
            plugin_name = impl.plugin_name
            package, version = _distribution_of(impl.plugin)
            if kind == "preprocessing_config":
                impl.function(register=_configuration_register(registry[kind], plugin_name,
                                                               package, version))
                continue
            impl.function(register=_component_register(registry[kind], kind, plugin_name,
                                                       package, version))
    return registry


def _component_register(components, kind, plugin, package, version):
    """The ``register(cls, name=None)`` a plugin's component hook receives."""

    def register(cls, name=None):
        if isinstance(cls, str):
            if ":" not in cls or not name:
                msg = (f"plugin {plugin!r} registered {cls!r} as a {kind}: a class given by "
                       f"path must be 'module:ClassName' and come with a name")
                raise PluginError(msg)
        else:
            _check_class(cls, kind, plugin)
        name = name or getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            label = cls if isinstance(cls, str) else cls.__qualname__
            msg = f"plugin {plugin!r} registered {label} with no name"
            raise PluginError(msg)
        existing = components.get(name)
        if existing is not None:
            msg = (f"{kind} name {name!r} is registered twice: by plugin "
                   f"{existing.plugin!r} ({_short(existing.target)}) and by plugin "
                   f"{plugin!r} ({_short(cls)})")
            raise DuplicatePluginError(msg)
        components[name] = RegisteredComponent(kind, name, cls, plugin, package, version)

    return register


def _short(target):
    return target.rpartition(":")[2] if isinstance(target, str) else target.__qualname__


def _configuration_register(configurations, plugin, package, version):
    """The ``register(name, steps)`` a plugin's configuration hook receives."""

    def register(name, steps):
        if not isinstance(name, str) or not name:
            msg = f"plugin {plugin!r} registered a preprocessing configuration named {name!r}"
            raise PluginError(msg)
        items = []
        for item in steps if isinstance(steps, (list, tuple)) else [None]:
            if isinstance(item, str) and item:
                items.append((item, {}))
            elif (isinstance(item, (list, tuple)) and len(item) == 2
                  and isinstance(item[0], str) and isinstance(item[1], dict)):
                items.append((item[0], dict(item[1])))
            else:
                msg = (f"plugin {plugin!r}: configuration {name!r} must be a list of step "
                       f"names or (step name, parameters) pairs, got {steps!r}")
                raise PluginError(msg)
        if not items:
            msg = f"plugin {plugin!r}: configuration {name!r} has no steps"
            raise PluginError(msg)
        existing = configurations.get(name)
        if existing is not None:
            msg = (f"preprocessing_config name {name!r} is registered twice: by plugin "
                   f"{existing.plugin!r} and by plugin {plugin!r}")
            raise DuplicatePluginError(msg)
        configurations[name] = RegisteredComponent(
            "preprocessing_config", name, None, plugin, package, version, tuple(items))

    return register


def _registry():
    with _lock:
        pm = get_plugin_manager()
        if _state["registry"] is None:
            _state["registry"] = _build_registry(pm)
        return _state["registry"]


def get_component(kind, name):
    """Return the class registered as ``name`` for ``kind`` (for ``preprocessing_config``: its
    list of steps, as `get_configuration` returns it).

    Raises
    ------
    UnknownPluginError
        If no such component exists; the message lists the known names.
    """
    if kind not in KINDS:
        msg = f"unknown component kind {kind!r}; the kinds are {sorted(KINDS)}"
        raise UnknownPluginError(msg)
    components = _registry()[kind]
    if name not in components:
        known = ", ".join(sorted(components)) or "none"
        msg = f"no {kind.replace('_', ' ')} named {name!r}; known: {known}"
        raise UnknownPluginError(msg)
    if kind == "preprocessing_config":
        return [(step, dict(params)) for step, params in components[name].steps]
    return components[name].cls


def get_estimator(name):
    """Return the estimator class registered as ``name``."""
    return get_component("estimator", name)


def get_step(name):
    """Return the preprocessing-step class registered as ``name``."""
    return get_component("preprocessing_step", name)


def get_source(name):
    """Return the data-source class registered as ``name``."""
    return get_component("data_source", name)


def get_configuration(name):
    """Return the preprocessing configuration ``name``: a list of (step name, parameters).

    Raises
    ------
    UnknownPluginError
        If no plugin registered it; the message lists the known names.
    """
    return get_component("preprocessing_config", name)


def list_components(kind=None):
    """Return the registered components, optionally of one kind, sorted by kind and name."""
    registry = _registry()
    kinds = [kind] if kind else list(KINDS)
    return [registry[k][n] for k in kinds for n in sorted(registry[k])]


def list_plugins():
    """Return an astropy Table of what is loaded: kind, name, plugin, package, version."""
    from astropy.table import Table

    rows = [(c.kind, c.name, c.plugin, c.package, c.version,
             c.class_path if c.target is not None
             else " -> ".join(step for step, _ in c.steps)) for c in list_components()]
    names = ("kind", "name", "plugin", "package", "version", "class")
    if not rows:
        return Table(names=names, dtype=[str] * len(names))
    return Table(rows=rows, names=names)


def add_plugin_commands(subparsers, *, taken=()):
    """Add the ``gpm-astro`` subcommands that plugins registered (hook
    ``gpm_astro_register_commands``).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        What ``parser.add_subparsers()`` returned.
    taken : iterable of str, optional
        Subcommand names the core already uses; a plugin command of the same name is an error.

    Returns
    -------
    list of str
        The subcommands added.

    Raises
    ------
    PluginError
        If a plugin's command takes the name of a core command.
    """
    added = []
    taken = set(taken)
    for component in list_components("command"):
        if component.name in taken:
            msg = (f"plugin {component.plugin!r} registered the command {component.name!r}, "
                   f"which gpm-astro already has")
            raise PluginError(msg)
        command = component.cls()
        parser = subparsers.add_parser(component.name, help=command.help,
                                       description=command.description or command.help)
        command.add_arguments(parser)
        parser.set_defaults(func=command.run)
        added.append(component.name)
    return added
