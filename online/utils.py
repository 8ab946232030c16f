"""Config helpers with Qlib's semantics: building objects from ``{"class", "module_path",
"kwargs"}`` dicts and flattening nested task dicts into ``a.b.c`` parameter names."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from tracker.errors import InvalidInputError

#: Module paths of tracker 0.1, where online/ was one flat package: configs and pickled tasks
#: written then keep working.
LEGACY_MODULES = {
    "online.data": "tracker.online.data.loader",
    "online.features": "tracker.online.data.features",
    "online.dataset": "tracker.online.data.dataset",
    "online.model": "tracker.online.model.base",
    "online.trainers": "tracker.online.model.trainer",
    "online.trainer": "tracker.online.model.train",
    "online.ensemble": "tracker.online.model.ens",
    "online.record": "tracker.online.workflow.record_temp",
    "online.config": "tracker.online.workflow.config",
    "online.taskgen": "tracker.online.workflow.task.gen",
    "online.taskmanager": "tracker.online.workflow.task.manage",
    "online.collect": "tracker.online.workflow.task.collect",
    "online.calendar": "tracker.online.workflow.task.utils",
    "online.manager": "tracker.online.workflow.online.manager",
    "online.strategy": "tracker.online.workflow.online.strategy",
    "online.update": "tracker.online.workflow.online.update",
    "online.online_tool": "tracker.online.workflow.online.utils",
    "online.backtest": "tracker.online.backtest",
    "online.analysis": "tracker.online.evaluate",
    "online.utils": "tracker.online.utils",
}


def import_module(name: str) -> ModuleType:
    """``importlib.import_module``, also for the module paths of tracker 0.1."""
    return importlib.import_module(LEGACY_MODULES.get(name, name))


def get_callable_kwargs(
    config: Mapping[str, Any] | str, default_module: str | ModuleType | None = None
) -> tuple[Any, dict[str, Any]]:
    """The class (or callable) and kwargs a config names: a ``{"class", "module_path",
    "kwargs"}`` dict (``module_path`` defaults to ``default_module``; ``class`` may also be
    the class itself; ``func`` instead of ``class`` names a function), or a
    ``"module.Class"`` or ``"Class"`` string."""
    if isinstance(config, Mapping):
        key = "class" if "class" in config else "func"  # Qlib also builds functions
        if key not in config:
            raise InvalidInputError(
                f"config {dict(config)!r} has no 'class'; write {{class: ..., module_path: ..., "
                "kwargs: {...}}"
            )
        name, module = config[key], config.get("module_path", default_module)
        kwargs = config.get("kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise InvalidInputError(f"config for {name!r}: kwargs must be a mapping")
        kwargs = dict(kwargs)
    elif isinstance(config, str):
        name, module, kwargs = config, default_module, {}
    else:
        raise InvalidInputError(f"cannot build an object from a {type(config).__name__} config")
    if not isinstance(name, str):
        return name, kwargs  # already a class or callable
    if "." in name:
        module, _, name = name.rpartition(".")
    if module is None:
        raise InvalidInputError(f"class {name!r}: no module_path given and no default module")
    if isinstance(module, str):
        try:
            module = import_module(module)
        except ImportError as e:
            raise InvalidInputError(f"class {name!r}: cannot import module {module!r} ({e})") from e
    klass = getattr(module, name, None)
    if klass is None:
        raise InvalidInputError(f"module {module.__name__!r} has no class {name!r}")
    return klass, kwargs


def _accepted(klass: Any, names: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``names`` that ``klass(...)`` accepts as keyword arguments."""
    try:
        params = inspect.signature(klass).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: pass nothing optional
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return dict(names)
    allowed = {p.name for p in params if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    return {k: v for k, v in names.items() if k in allowed}


def init_instance_by_config(
    config: Any,
    default_module: str | ModuleType | None = None,
    accept_types: type | tuple[type, ...] = (),
    try_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Build an object from a config, as Qlib's ``init_instance_by_config``.

    ``config`` is a ready object (returned as is: any instance of ``accept_types``, or any
    object that is not a dict or string), a ``{"class", "module_path", "kwargs"}`` dict, a
    ``"module.Class"`` string or a ``"Class"`` string found in ``default_module``. ``kwargs``
    are always passed; ``try_kwargs`` only where the class accepts them, and never over the
    config's own kwargs (Qlib retries without them on a TypeError; checking the signature
    instead keeps a TypeError raised inside the constructor visible). Unknown classes and
    modules, and kwargs the class does not take, raise
    :class:`~tracker.errors.InvalidInputError` naming them.
    """
    if accept_types and isinstance(config, accept_types):
        return config
    if not isinstance(config, (Mapping, str)):
        if accept_types:
            names = accept_types if isinstance(accept_types, tuple) else (accept_types,)
            raise InvalidInputError(
                f"expected a config or a {' or '.join(t.__name__ for t in names)}, got "
                f"{type(config).__name__}"
            )
        return config
    klass, cls_kwargs = get_callable_kwargs(config, default_module)
    extra = {k: v for k, v in (try_kwargs or {}).items() if k not in cls_kwargs}
    merged = {**_accepted(klass, extra), **cls_kwargs, **kwargs}
    try:
        inspect.signature(klass).bind(**merged)
    except TypeError as e:
        raise InvalidInputError(f"{getattr(klass, '__name__', klass)}: bad kwargs: {e}") from None
    except ValueError:
        pass  # no introspectable signature: let the call decide
    return klass(**merged)


def flatten_dict(d: Mapping[str, Any], sep: str = ".", parent_key: str = "") -> dict[str, Any]:
    """Flatten nested mappings into one level, Qlib's way: ``{"a": {"b": 1}, "c": [1, 2]}``
    becomes ``{"a.b": 1, "c": [1, 2]}``. Lists and other values are kept as they are; an
    empty nested mapping contributes no key (as in Qlib); keys are joined with ``sep``."""
    items: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{parent_key}{sep}{key}" if parent_key else str(key)
        if isinstance(value, Mapping):
            items.update(flatten_dict(value, sep=sep, parent_key=name))
        else:
            items[name] = value
    return items
