"""The plugin manager: third-party entry points first, then the built-ins, all through the same hooks.

``SELECTIVITY_EVAL_LOAD_PLUGINS`` restricts autoloading of third-party plugins to the listed
distributions (comma-separated; empty for none). The built-in plugins always load.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy

from selectivity_eval._version import __version__
from selectivity_eval.core.registry import hookspecs
from selectivity_eval.core.am.method import AMMethod
from selectivity_eval.core.errors import PluginConflictError, SelectivityEvalError, UserInputError
from selectivity_eval.core.measures.base import Measure
from selectivity_eval.core.registry.plugin_base import Plugin
from selectivity_eval.core.sources.base import DatasetSource, ModelSource

ENTRY_POINT_GROUP = "selectivity_eval"
LOAD_PLUGINS_ENV = "SELECTIVITY_EVAL_LOAD_PLUGINS"
DISTRIBUTION = "selectivity-eval"

BUILTIN_MODULES = (
    "selectivity_eval.plugins.measures.localist",
    "selectivity_eval.plugins.measures.precision",
    "selectivity_eval.plugins.measures.ccmas",
    "selectivity_eval.plugins.measures.topclass",
    "selectivity_eval.plugins.measures.detection",
    "selectivity_eval.plugins.datasets.digits",
    "selectivity_eval.plugins.datasets.imagefolder",
    "selectivity_eval.plugins.datasets.imagenet_val",
    "selectivity_eval.plugins.models.digits_cnn",
    "selectivity_eval.plugins.models.rnn_localist",
    "selectivity_eval.plugins.models.torchvision_models",
    "selectivity_eval.plugins.models.timm_models",
    "selectivity_eval.plugins.am.gradient_ascent",
)

KINDS: dict[str, tuple[str, type[Plugin]]] = {
    "model": ("register_models", ModelSource),
    "dataset": ("register_datasets", DatasetSource),
    "measure": ("register_measures", Measure),
    "am": ("register_am_methods", AMMethod),
}


@dataclass(frozen=True)
class Origin:
    """Where a plugin comes from, as ``selectivity-eval plugins`` shows it."""

    plugin: str
    distribution: str
    version: str
    entry_point: str = ""

    def describe(self) -> str:
        """``'name' (entry point 'name = module', distribution 'dist' 1.0)``, for messages."""
        where = f"entry point {self.entry_point!r}, " if self.entry_point else ""
        version = f" {self.version}" if self.version else ""
        return f"{self.plugin!r} ({where}distribution {self.distribution!r}{version})"


@dataclass(frozen=True)
class Registration:
    kind: str
    name: str
    cls: type[Plugin]
    origin: Origin


class Registry:
    """Every registered model source, data set source, measure and AM method, by kind and name."""

    def __init__(self, registrations: list[Registration]):
        self._by_kind: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        for entry in registrations:
            self._by_kind[entry.kind][entry.name] = entry

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def entry(self, kind: str, name: str) -> Registration:
        try:
            return self._by_kind[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise UserInputError(
                f"Unknown {kind} plugin {name!r}. Registered {kind} plugins: {known}. "
                "Run `selectivity-eval plugins` to list every plugin and where it comes from."
                + _why_plugins_may_be_missing()
            ) from None

    def get(self, kind: str, name: str) -> type[Plugin]:
        return self.entry(kind, name).cls

    def __iter__(self) -> Iterator[Registration]:
        for kind in KINDS:
            yield from (self._by_kind[kind][name] for name in self.names(kind))


_manager: pluggy.PluginManager | None = None
_origins: dict[str, Origin] = {}
_disabled: dict[str, str] = {}  # a disabled plugin (as Origin.describe says it) -> why, for "unknown plugin" errors


def get_plugin_manager() -> pluggy.PluginManager:
    """The one plugin manager, created and loaded on first use."""
    global _manager
    if _manager is None:
        manager = pluggy.PluginManager("selectivity_eval")
        manager.add_hookspecs(hookspecs)
        _load_entry_points(manager)
        for module_name in BUILTIN_MODULES:
            module = importlib.import_module(module_name)
            manager.register(module, name=module_name)
            _origins[module_name] = Origin(module_name, DISTRIBUTION, __version__)
        _manager = manager
    return _manager


def reload_plugins() -> None:
    """Forget the loaded plugins; the next use loads entry points and built-ins afresh."""
    global _manager
    _manager = None
    _origins.clear()
    _disabled.clear()


def _allowed_distributions() -> set[str] | None:
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {_normalise(name) for name in value.split(",") if name.strip()}


def _normalise(distribution: str) -> str:
    return distribution.strip().lower().replace("_", "-").replace(".", "-")


def installed_entry_points() -> dict[str, list[str]]:
    """Distribution name -> its entry-point names in the ``selectivity_eval`` group."""
    installed: dict[str, list[str]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        dist_name = entry_point.dist.name if entry_point.dist is not None else "unknown"
        installed.setdefault(dist_name, []).append(entry_point.name)
    return installed


def describe_installed() -> str:
    installed = installed_entry_points()
    if not installed:
        return "no distribution with selectivity_eval entry points is installed"
    return "installed: " + "; ".join(
        f"distribution {dist!r} (entry points {', '.join(map(repr, names))})"
        for dist, names in sorted(installed.items())
    )


def _why_plugins_may_be_missing() -> str:
    notes = []
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is not None:
        notes.append(
            f" {LOAD_PLUGINS_ENV} is set to {value!r}, so only those distributions' plugins were loaded "
            f"({describe_installed()})."
        )
    notes.extend(f" Plugin {message}" for message in _disabled.values())
    return "".join(notes)


def _warn_unmatched(allowed: set[str]) -> None:
    """Names in the autoload variable that match no installed distribution: most likely a mistake."""
    installed = {_normalise(dist) for dist in installed_entry_points()}
    unmatched = sorted(allowed - installed)
    if unmatched:
        warnings.warn(
            f"{LOAD_PLUGINS_ENV} names {', '.join(map(repr, unmatched))}, which matches no installed "
            f"distribution with selectivity_eval plugins (it takes distribution names, not entry-point "
            f"names); {describe_installed()}.",
            stacklevel=3,
        )


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    allowed = _allowed_distributions()
    if allowed:
        _warn_unmatched(allowed)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        dist_name = dist.name if dist is not None else "unknown"
        if allowed is not None and _normalise(dist_name) not in allowed:
            continue
        version = dist.version if dist else ""
        origin = Origin(entry_point.name, dist_name, version, f"{entry_point.name} = {entry_point.value}")
        try:
            plugin = entry_point.load()
        except Exception as error:  # a broken third-party plugin must not stop the others
            _disable(origin, f"it failed to import: {type(error).__name__}: {error}")
            continue
        if manager.is_registered(plugin) or manager.has_plugin(entry_point.name):
            continue
        manager.register(plugin, name=entry_point.name)
        _origins[entry_point.name] = origin


def _disable(origin: Origin, why: str) -> None:
    """Leave a broken plugin out, with a warning naming it; the other plugins still load."""
    message = f"{origin.describe()}: {why}. It is disabled; specs and calls that do not use it are unaffected."
    if _disabled.get(origin.describe()) != message:
        warnings.warn(f"Plugin {message}", stacklevel=3)
    _disabled[origin.describe()] = message


def register_plugin(plugin: Any, name: str | None = None, distribution: str = "(runtime)", version: str = "") -> str:
    """Register a plugin object (a module or any object with hook implementations) at run time."""
    manager = get_plugin_manager()
    if manager.is_registered(plugin) or (name is not None and manager.has_plugin(name)):
        raise SelectivityEvalError(
            f"Plugin {name or plugin!r} is already registered (perhaps autoloaded from its entry point; "
            f"set {LOAD_PLUGINS_ENV}='' to test it in isolation)."
        )
    registered = manager.register(plugin, name=name)
    if registered is None:
        raise SelectivityEvalError(f"Plugin {name or plugin!r} is already registered or blocked.")
    _origins[registered] = Origin(registered, distribution, version)
    return registered


def unregister_plugin(name: str) -> None:
    get_plugin_manager().unregister(name=name)
    _origins.pop(name, None)


@contextmanager
def plugin_registered(plugin: Any, name: str | None = None, **origin: str) -> Iterator[str]:
    """Register ``plugin`` for the duration of a ``with`` block, e.g. in a test."""
    registered = register_plugin(plugin, name=name, **origin)
    try:
        yield registered
    finally:
        unregister_plugin(registered)


def get_registry() -> Registry:
    """Call every plugin's ``register_*`` hooks, one plugin at a time, so clashes name both plugins.

    A plugin whose hook raises, or registers something that is not a plugin class, is disabled
    with a warning: none of its registrations is kept, and the other plugins are unaffected. Two
    plugins registering one name is still an error (``PluginConflictError``): which one a spec
    means cannot be guessed.
    """
    manager = get_plugin_manager()
    registrations: dict[tuple[str, str], Registration] = {}
    for plugin_name in _plugin_names(manager):
        origin = _origins.get(plugin_name, Origin(plugin_name, "(runtime)", ""))
        own: dict[tuple[str, str], Registration] = {}
        try:
            for kind, (hook_name, base) in KINDS.items():
                for impl in getattr(manager.hook, hook_name).get_hookimpls():
                    if impl.plugin_name == plugin_name:
                        register = _registrar(kind, base, origin, registrations, own)
                        impl.function(**{arg: register for arg in impl.argnames})
        except PluginConflictError:
            raise
        except Exception as error:
            _disable(origin, f"its register hook raised {type(error).__name__}: {error}")
            continue
        registrations.update(own)
    return Registry(list(registrations.values()))


def _plugin_names(manager: pluggy.PluginManager) -> list[str]:
    """Plugins with a ``register_*`` hook, in the order the hooks call them (last registered first)."""
    names: list[str] = []
    for hook_name, _ in KINDS.values():
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            if impl.plugin_name not in names:
                names.append(impl.plugin_name)
    return names


def _registrar(
    kind: str,
    base: type[Plugin],
    origin: Origin,
    seen: dict[tuple[str, str], Registration],
    own: dict[tuple[str, str], Registration],
):
    def register(cls: type[Plugin]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise SelectivityEvalError(
                f"Plugin {origin.plugin!r} registered {cls!r} as a {kind}, "
                f"but it is not a subclass of {base.__module__}.{base.__name__}."
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise SelectivityEvalError(f"Plugin {origin.plugin!r} registered {cls.__name__} without a `name`.")
        previous = seen.get((kind, name)) or own.get((kind, name))
        if previous is not None:
            raise PluginConflictError(
                f"Two plugins register the {kind} name {name!r}: {previous.origin.plugin!r} "
                f"(distribution {previous.origin.distribution}) and {origin.plugin!r} "
                f"(distribution {origin.distribution}). Uninstall one, or restrict loading with "
                f"{LOAD_PLUGINS_ENV}."
            )
        own[(kind, name)] = Registration(kind, name, cls, origin)

    return register
