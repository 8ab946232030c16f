"""Workflow configs (Qlib's ``qrun`` YAML): ``${ENV}`` substitution, YAML anchors, a base
config merged underneath (``BASE_CONFIG_PATH``), and checks that fail before any training.

Hostile files are refused with one line: a ``BASE_CONFIG_PATH`` cycle names its files, and
YAML whose aliases expand to more than :data:`MAX_ALIAS_NODES` nodes beyond the document's
own (an "alias bomb": 2 KB that would expand to billions of values) or an alias inside its
own anchor is refused before anything is built from it.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tracker.errors import InvalidInputError, InvalidTypeError
from tracker.online.utils import import_module

_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
_PLACEHOLDER = re.compile(r"<[\w.]+>")  # filled in by the trainer: <MODEL>, <dataset.kwargs…>

#: Nodes that aliases may add to a YAML document beyond its own; Qlib's configs add hundreds.
MAX_ALIAS_NODES = 100_000
#: The top-level keys ``tracker run`` / ``tracker batch`` read (``qlib_init`` is accepted and
#: ignored, so that Qlib's configs run as they are). Others warn, unless they hold an anchor.
TOP_LEVEL_KEYS = ("task", "experiment_name", "dataset_name", "qlib_init")
#: Keyword arguments that are dates wherever they appear (Qlib's names).
DATE_KWARGS = ("start_time", "end_time", "fit_start_time", "fit_end_time")


def substitute_env(text: str, source: str = "config") -> str:
    """Replace ``${NAME}`` (or ``${NAME:-default}``) by the environment variable."""

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise InvalidInputError(
            f"{source}: ${{{name}}} is not set; export {name}=… or write ${{{name}:-default}}"
        )

    return _ENV.sub(value, text)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, merging nested dicts (Qlib's ``update_config``)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(
    path: str | os.PathLike[str], warn: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The config at ``path`` merged over its ``BASE_CONFIG_PATH`` chain. ``warn`` is told of
    each top-level key that nothing reads (a typo such as ``tsak``), unless it holds a YAML
    anchor (a block defined once and aliased below, as Qlib's configs do)."""
    config, anchored = _load(Path(path), ())
    if warn is not None:
        for key in config:
            if key not in TOP_LEVEL_KEYS and key not in anchored:
                close = difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                known = ", ".join(TOP_LEVEL_KEYS)
                warn(f"{path}: top-level key {key!r} is ignored{hint} (known keys: {known})")
    return config


def _load(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], set[str]]:
    """The merged config and its top-level keys that hold an anchor; ``chain`` is the files
    that named this one as their base."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = [*chain[chain.index(resolved) :], resolved]
        raise InvalidInputError(
            f"BASE_CONFIG_PATH cycle: {' -> '.join(map(str, cycle))}; remove one of these links"
        )
    if not path.is_file():
        raise InvalidInputError(f"config {str(path)!r} does not exist")
    config, anchored = _parse(substitute_env(path.read_text(), str(path)), path)
    if not isinstance(config, dict):
        raise InvalidInputError(f"{path}: expected a mapping at the top level")
    base = config.pop("BASE_CONFIG_PATH", None)
    if base:
        if not isinstance(base, str):
            raise InvalidInputError(f"{path}: BASE_CONFIG_PATH must be a path, got {base!r}")
        base_path = Path(base)
        if not base_path.is_absolute() and not base_path.exists():
            base_path = path.parent / base_path  # relative to the config, as qrun does
        base_config, base_anchored = _load(base_path, (*chain, resolved))
        config = deep_merge(base_config, config)
        anchored |= base_anchored
    return config, anchored


def _parse(text: str, path: Path) -> tuple[Any, set[str]]:
    """Compose the YAML, refuse a bomb, then build it; also the top-level keys whose value
    holds an anchor."""
    import yaml

    loader = _anchor_loader()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, set()
        _check_expansion(node, path)
        anchored = {
            str(key.value)
            for key, value in (node.value if isinstance(node, yaml.MappingNode) else [])
            if id(value) in loader.anchored
        }
        return loader.construct_document(node), anchored
    except yaml.YAMLError as e:
        raise InvalidInputError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from e
    except RecursionError:
        raise InvalidInputError(f"{path}: nested too deeply to be a config") from None
    finally:
        loader.dispose()


def _anchor_loader() -> type:
    """PyYAML's safe loader, remembering which nodes carry an anchor."""
    import yaml

    class Loader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.anchored: set[int] = set()

        def compose_node(self, parent: Any, index: Any) -> Any:
            anchor = None if self.check_event(yaml.AliasEvent) else self.peek_event().anchor
            node = super().compose_node(parent, index)
            if anchor is not None:
                self.anchored.add(id(node))
            return node

    return Loader


def _check_expansion(root: Any, path: Path) -> None:
    """Count the nodes the document expands to, each distinct node once (so a bomb costs no
    more to count than to read), and refuse it past the limit or when an alias is its own
    ancestor (an infinite document)."""
    import yaml

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise InvalidInputError(
                f"{path}: a YAML alias refers to the block that contains it, so the config "
                "would be infinite; write that part out"
            )
        open_nodes.add(key)
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        else:
            children = []
        sizes[key] = 1 + sum(size(child) for child in children)
        open_nodes.discard(key)
        return sizes[key]

    expanded = size(root)
    if expanded - len(sizes) > MAX_ALIAS_NODES:
        raise InvalidInputError(
            f"{path}: its YAML aliases expand to {expanded:,} values, more than "
            f"{MAX_ALIAS_NODES:,} beyond the file's own {len(sizes):,} (an alias bomb?); "
            "alias less deeply or write the values out"
        )


# ------------------------------------------------------------------------------------ checks


def validate_task(task: Any, needs: tuple[str, ...] = ("train", "test")) -> None:
    """Fail fast, naming the key: unknown classes, kwargs a class does not take or of the
    wrong type, segments that are not date pairs, missing segments, missing data files."""
    if not isinstance(task, Mapping):
        raise InvalidInputError("config: 'task' must be a mapping with model, dataset, record")
    for key in ("model", "dataset"):
        if key not in task:
            raise InvalidInputError(f"config: task.{key} is missing")
    _check_config(task["model"], "task.model")
    dataset_class = _check_config(task["dataset"], "task.dataset", "tracker.online.data.dataset")
    records = task.get("record") or []
    for i, record in enumerate(records if isinstance(records, list) else [records]):
        _check_config(record, f"task.record[{i}]", "tracker.online.workflow.record_temp")
    dataset_kwargs = (
        task["dataset"].get("kwargs") or {} if isinstance(task["dataset"], Mapping) else {}
    )
    handler = dataset_kwargs.get("handler")
    if isinstance(handler, Mapping):
        _check_config(handler, "task.dataset.kwargs.handler", "tracker.online.data.features")
        data = (handler.get("kwargs") or {}).get("data")
        if isinstance(data, str) and not Path(data).exists():
            raise InvalidInputError(
                f"task.dataset.kwargs.handler.kwargs.data: {data!r} does not exist"
            )
    segments = dataset_kwargs.get("segments")
    if segments is not None:
        _check_segments(segments, dataset_class, needs)


def _check_segments(segments: Any, dataset_class: Any, needs: tuple[str, ...]) -> None:
    from tracker.online.data.dataset import Dataset, parse_segments

    if isinstance(dataset_class, type) and issubclass(dataset_class, Dataset):
        try:
            parse_segments(segments)
        except InvalidInputError as e:
            raise InvalidInputError(f"task.dataset.kwargs.segments: {e}") from None
    for name in needs:
        if not isinstance(segments, Mapping) or name not in segments:
            have = ", ".join(segments) if isinstance(segments, Mapping) else repr(segments)
            raise InvalidInputError(
                f"task.dataset.kwargs.segments.{name} is missing (have: {have})"
            )


def _check_config(config: Any, where: str, default_module: str | None = None) -> Any:
    """The class a ``{"class", "module_path", "kwargs"}`` config names, its kwargs checked;
    None for anything else (a ready object or a "module.Class" string: checked when built)."""
    if not isinstance(config, Mapping):
        return None
    name = config.get("class")
    if not name:
        raise InvalidInputError(f"{where}: missing 'class'")
    module = config.get("module_path", default_module)
    if module is None and "." in str(name):
        module, _, name = str(name).rpartition(".")
    try:
        found = getattr(import_module(str(module)), str(name), None)
    except ImportError as e:
        raise InvalidInputError(f"{where}: cannot import module {module!r}: {e}") from e
    if found is None:
        raise InvalidInputError(f"{where}: module {module!r} has no class {name!r}")
    kwargs = config.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise InvalidInputError(f"{where}.kwargs must be a mapping, got {kwargs!r}")
    _check_kwargs(found, kwargs, f"{where}.kwargs")
    return found


def _check_kwargs(klass: Any, kwargs: Mapping[str, Any], where: str) -> None:
    """Names the class does not take, values of the wrong simple type (int, float, bool,
    str, as annotated), and dates that do not parse."""
    from tracker.online.data.dataset import parse_date

    try:
        params = inspect.signature(klass).parameters
    except (TypeError, ValueError):  # no introspectable signature: the call will tell
        return
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        taken = [n for n, p in params.items() if p.kind is not inspect.Parameter.POSITIONAL_ONLY]
        for key in kwargs:
            if key not in taken:
                raise InvalidInputError(
                    f"{where}.{key}: {klass.__name__} takes no argument {key!r} "
                    f"(it takes {', '.join(taken) or 'none'})"
                )
    hints = _type_hints(klass)
    for key, value in kwargs.items():
        if isinstance(value, str) and _PLACEHOLDER.fullmatch(value):
            continue
        if key in DATE_KWARGS:
            parse_date(value, f"{where}.{key}")
        expected = hints.get(key)
        if expected is not None and not _fits(value, expected):
            raise InvalidTypeError(f"{where}.{key}: {_wrong(value, expected)}")


def _type_hints(klass: Any) -> dict[str, Any]:
    target = klass.__init__ if isinstance(klass, type) else klass
    try:
        return typing.get_type_hints(target)
    except Exception:  # an annotation that does not evaluate: nothing to check against
        return {}


_SIMPLE = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _options(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint``; hints other than simple types (and their unions with
    None) are not checked."""
    options = _options(hint)
    if any(o not in _SIMPLE and o is not type(None) for o in options):
        return True
    return any(_is(value, o) for o in options)


def _is(value: Any, kind: Any) -> bool:
    if kind is type(None):
        return value is None
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _wrong(value: Any, hint: Any) -> str:
    wanted = " or ".join(_SIMPLE.get(o, "null") for o in _options(hint))
    text = f"{value!r} is not {wanted}"
    if isinstance(value, str) and float in _options(hint):
        try:
            float(value)
        except ValueError:
            return text
        # PyYAML reads 1e-3 (no dot) as a string.
        return f"{text}: YAML reads {value} as text; write it with a dot, e.g. 1.0e-3"
    return text
