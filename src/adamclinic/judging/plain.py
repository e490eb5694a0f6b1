"""Answers as plain data: what crosses between a student's kernel and the judge, and nothing else.

The judge (``adamclinic.judging.judge``) never runs student code. What it needs from a submission
crosses as a JSON tree built by ``encode`` and read back by ``decode``:

* numbers (NaN and infinities tagged), strings, booleans, ``None``, lists, tuples and dicts;
* NumPy arrays of numbers or booleans, as ``.npy`` bytes read with ``allow_pickle=False``; pandas
  DataFrames and Series, column by column (numbers as arrays, anything else as plain values);
* the course's own dataclasses (``TrainConfig`` and its subclasses, ``Dataset``, ``History``...), by
  class name and fields: only classes defined in ``adamclinic`` modules are rebuilt;
* the course's own module-level functions (``small_relu_net``) by name, so ``is`` still holds;
* any other ``TrainConfig.build_model`` as the architecture it builds (Keras JSON, rebuilt with Keras's
  own deserializer, which refuses code), keeping the builder's plain attributes (``settings``);
* Keras models as ``.keras`` files loaded with ``safe_mode=True``, and other Keras objects
  (schedules, losses, initializers, optimizers) by their Keras config;
* anything else a test needs from the kernel (a student's function) stays in the kernel as a
  *handle*: the judge calls it with plain arguments and gets a plain result back.

Every Keras config is checked before Keras sees it: each ``module`` it names must be Keras's or the course's own,
and nothing may be a ``__lambda__``. A tree that is not well formed, too big, or names anything else is
refused with ``PlainDataError``, whose message says what to hand in instead.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

MAX_DEPTH = 40
MAX_ITEMS = 200_000
ARRAY_KINDS = "biufc"


class PlainDataError(ValueError):
    """A value that cannot cross as plain data, or a tree that is not one the course writes."""


# ---------------------------------------------------------------------------------------- encode


def encode(value: Any, handles: Callable[[Any], str] | None = None) -> Any:
    """``value`` as a JSON-ready tree. ``handles(obj) -> id`` keeps what is not plain data where it
    is (the student's kernel) and returns its id; without it such a value raises ``PlainDataError``."""
    return _Encoder(handles).encode(value, 0)


class _Encoder:
    def __init__(self, handles):
        self.handles = handles
        self.items = 0

    def encode(self, value: Any, depth: int) -> Any:
        self.items += 1
        if depth > MAX_DEPTH or self.items > MAX_ITEMS:
            raise PlainDataError("the value is nested too deeply or holds too many items to hand in")
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, (float, np.floating)):
            number = float(value)
            return number if math.isfinite(number) else {"$float": repr(number)}
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.ndarray):
            return self.array(value)
        if isinstance(value, list):
            return {"$list": [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return {"$tuple": [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, dict):
            return {"$dict": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]}
        if dataclasses.is_dataclass(value) and not isinstance(value, type) and _is_course_class(type(value)):
            return self.dataclass(value, depth)
        if type(value).__module__.startswith("pandas"):
            frame = self.pandas(value, depth)
            if frame is not None:
                return frame
        keras_tree = self.keras(value)
        if keras_tree is not None:
            return keras_tree
        reference = course_function_name(value)
        if reference is not None:
            return {"$function": reference}
        if self.handles is not None:
            return {"$handle": self.handles(value), "kind": type(value).__name__}
        raise PlainDataError(f"a {type(value).__name__} is not plain data")

    def array(self, value: np.ndarray) -> dict:
        if value.dtype.kind not in ARRAY_KINDS:
            raise PlainDataError(f"an array of {value.dtype} is not an array of numbers")
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
        return {"$array": base64.b64encode(buffer.getvalue()).decode("ascii")}

    def column(self, values: Any, depth: int) -> Any:
        array = np.asarray(values)
        if array.dtype.kind in ARRAY_KINDS:
            return self.array(array)
        return self.encode(list(array.tolist()), depth + 1)

    def pandas(self, value: Any, depth: int) -> dict | None:
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            return {
                "$frame": [self.encode(name, depth + 1) for name in value.columns],
                "columns": [self.column(value[name].to_numpy(), depth) for name in value.columns],
                "index": self.column(value.index.to_numpy(), depth),
            }
        if isinstance(value, pd.Series):
            return {
                "$series": self.encode(value.name, depth + 1),
                "values": self.column(value.to_numpy(), depth),
                "index": self.column(value.index.to_numpy(), depth),
            }
        return None

    def dataclass(self, value: Any, depth: int) -> dict:
        cls = type(value)
        fields = {}
        for field in dataclasses.fields(value):
            if not field.init:
                continue
            item = getattr(value, field.name)
            if field.name == "build_model" and callable(item):
                fields[field.name] = self.builder(item)
            else:
                fields[field.name] = self.encode(item, depth + 1)
        return {"$dataclass": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}

    def builder(self, build: Callable) -> dict:
        """A model builder as the architecture it builds, with its plain attributes (``settings``)."""
        reference = course_function_name(build)
        if reference is not None:
            return {"$function": reference}
        model = build()
        attributes = {}
        for name, attribute in getattr(build, "__dict__", {}).items():
            if name.startswith("_"):
                continue
            try:
                attributes[name] = _Encoder(None).encode(attribute, 0)
            except PlainDataError:
                continue
        return {
            "$builder": model.to_json(),
            "name": str(getattr(build, "__name__", "build_model")),
            "attributes": attributes,
        }

    def keras(self, value: Any) -> dict | None:
        module = type(value).__module__
        if not module.startswith("keras"):
            return None
        import keras

        if isinstance(value, keras.Model):
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "model.keras")
                value.save(path)
                with open(path, "rb") as handle:
                    return {"$model": base64.b64encode(handle.read()).decode("ascii")}
        try:
            return {"$keras": keras.saving.serialize_keras_object(value)}
        except Exception:
            return None


def course_function_name(value: Any) -> str | None:
    """``module:qualname`` of a module-level function of the course package, else None."""
    module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", "")
    if not isinstance(module, str) or not (module == "adamclinic" or module.startswith("adamclinic.")):
        return None
    if _is_machinery(module):  # the grader's own machinery is never an answer
        return None
    if "<" in qualname or "." in qualname:
        return None
    try:
        return f"{module}:{qualname}" if getattr(importlib.import_module(module), qualname, None) is value else None
    except ImportError:
        return None


def _is_machinery(module: str) -> bool:
    return module.split(".")[:2] in (["adamclinic", "grading"], ["adamclinic", "judging"])


def _is_course_class(cls: type) -> bool:
    return cls.__module__ == "adamclinic" or cls.__module__.startswith("adamclinic.")


# ---------------------------------------------------------------------------------------- decode


def decode(
    tree: Any, remote: Callable[[str, str], Any] | None = None, intern: Callable[[Any], Any] | None = None
) -> Any:
    """The value ``tree`` describes. ``remote(handle, kind)`` stands in for a value that stayed in the
    kernel; without it a handle raises ``PlainDataError``. ``intern(obj)`` may swap a rebuilt course
    object for an equal one the caller already holds (the judge's own copy of a data set)."""
    return _Decoder(remote, intern).decode(tree, 0)


# One builder per architecture (and attributes) in this process, so the engine reuses its compiled
# training step across runs and across notebooks: the builder holds nothing but the architecture.
_BUILDERS: dict[str, Callable] = {}
MAX_BUILDERS = 256


class _Decoder:
    def __init__(self, remote, intern=None):
        self.remote = remote
        self.intern = intern or (lambda value: value)
        self.items = 0

    def decode(self, tree: Any, depth: int) -> Any:
        self.items += 1
        if depth > MAX_DEPTH or self.items > MAX_ITEMS:
            raise PlainDataError("the answer is nested too deeply or holds too many items")
        if tree is None or isinstance(tree, (bool, int, float, str)):
            return tree
        if not isinstance(tree, dict) or len(tree) == 0:
            raise PlainDataError(f"not a plain-data tree: a bare {type(tree).__name__}")
        tag = next(iter(tree))
        body = tree[tag]
        if tag == "$float":
            if body not in ("nan", "inf", "-inf"):
                raise PlainDataError("a tagged float must be nan, inf or -inf")
            return float(body)
        if tag in ("$list", "$tuple"):
            items = [self.decode(v, depth + 1) for v in _list(body)]
            return items if tag == "$list" else tuple(items)
        if tag == "$dict":
            out = {}
            for pair in _list(body):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise PlainDataError("a dict entry must be a [key, value] pair")
                key = self.decode(pair[0], depth + 1)
                if not isinstance(key, (str, int, float, bool, tuple)) and key is not None:
                    raise PlainDataError("dict keys must be numbers, strings or tuples")
                out[key] = self.decode(pair[1], depth + 1)
            return out
        if tag == "$array":
            return _array(body)
        if tag == "$dataclass":
            return self.dataclass(body, tree.get("fields"), depth)
        if tag in ("$frame", "$series"):
            return self.pandas(tag, body, tree, depth)
        if tag == "$builder":
            return self.builder(body, tree.get("name"), tree.get("attributes"), depth)
        if tag == "$function":
            return _course_function(body)
        if tag == "$model":
            return _model(body)
        if tag == "$keras":
            return _keras_object(body)
        if tag == "$handle":
            if self.remote is None or not isinstance(body, str):
                raise PlainDataError(f"a {tree.get('kind', 'value')} cannot be handed over as plain data")
            return self.remote(body, str(tree.get("kind", "object")))
        raise PlainDataError(f"unknown tag {tag!r}")

    def pandas(self, tag: str, body: Any, tree: dict, depth: int) -> Any:
        import pandas as pd

        index = self.decode(tree.get("index"), depth + 1)
        if tag == "$series":
            return pd.Series(self.decode(tree.get("values"), depth + 1), index=index, name=self.decode(body, depth + 1))
        names = [self.decode(name, depth + 1) for name in _list(body)]
        columns = [self.decode(column, depth + 1) for column in _list(tree.get("columns"))]
        if len(names) != len(columns):
            raise PlainDataError("a DataFrame needs one column of values per name")
        return pd.DataFrame(dict(zip(names, columns)), index=index, columns=names)

    def dataclass(self, name: Any, fields: Any, depth: int) -> Any:
        cls = _course_class(name)
        if not isinstance(fields, dict):
            raise PlainDataError("a dataclass needs its fields")
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = set(fields) - known
        if unknown:
            raise PlainDataError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
        values = {k: self.decode(v, depth + 1) for k, v in fields.items()}
        try:
            return self.intern(cls(**values))
        except Exception as error:
            raise PlainDataError(f"{cls.__name__} refused its fields: {error}") from None

    def builder(self, architecture: Any, name: Any, attributes: Any, depth: int) -> Callable:
        if not isinstance(architecture, str):
            raise PlainDataError("a model builder must be given as its architecture's JSON")
        config = json.loads(architecture)
        check_keras_config(config)
        key = json.dumps([architecture, name, attributes], sort_keys=True)
        if key in _BUILDERS:
            return _BUILDERS[key]

        import keras

        custom = course_keras_classes(config)

        def build():
            return keras.models.model_from_json(architecture, custom_objects=custom)

        build.__name__ = build.__qualname__ = str(name or "build_model")[:80]
        for key, value in (attributes or {}).items():
            if isinstance(key, str) and key.isidentifier() and not key.startswith("_"):
                setattr(build, key, self.decode(value, depth + 1))
        if len(_BUILDERS) >= MAX_BUILDERS:
            _BUILDERS.clear()
        _BUILDERS[key] = build
        return build


def _list(body: Any) -> list:
    if not isinstance(body, list):
        raise PlainDataError("expected a list")
    return body


def _array(body: Any) -> np.ndarray:
    if not isinstance(body, str):
        raise PlainDataError("an array must be .npy bytes")
    try:
        array = np.load(io.BytesIO(base64.b64decode(body, validate=True)), allow_pickle=False)
    except Exception as error:
        raise PlainDataError(f"not an array of numbers: {error}") from None
    if array.dtype.kind not in ARRAY_KINDS:
        raise PlainDataError(f"an array of {array.dtype} is not an array of numbers")
    return array


def _course_name(
    name: Any, shape: str, outside: str = "only the course's own functions can be named"
) -> tuple[str, str]:
    """``module:name`` split in two, the module inside the course package; else a message that says so."""
    if not isinstance(name, str) or ":" not in name:
        raise PlainDataError(shape)
    module_name, rest = name.split(":", 1)
    if not (module_name == "adamclinic" or module_name.startswith("adamclinic.")):
        raise PlainDataError(f"{name}: {outside}")
    return module_name, rest


def _course_function(name: Any) -> Callable:
    module_name, attribute = _course_name(name, "a course function must be named module:name")
    if not attribute.isidentifier():
        raise PlainDataError(f"{name}: only the course's own functions can be named")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        raise PlainDataError(f"{name}: no such function in the course") from None
    if not callable(function) or isinstance(function, type) or course_function_name(function) != name:
        raise PlainDataError(f"{name}: not one of the course's functions")
    return function


def _course_class(name: Any) -> type:
    module_name, qualname = _course_name(
        name, "a dataclass must be named module:qualname", "only the course's own classes can be handed in"
    )
    try:
        cls: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError):
        raise PlainDataError(f"{name}: no such class in the course") from None
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and _is_course_class(cls)):
        raise PlainDataError(f"{name}: not one of the course's dataclasses")
    return cls


def _keras_module_allowed(module: str) -> bool:
    """Keras's own classes, and the course's Keras classes (a regularizer, a layer), nothing else."""
    if module == "keras" or module.startswith("keras."):
        return True
    return module.startswith("adamclinic.") and not _is_machinery(module)


def course_keras_classes(config: Any) -> dict[str, type]:
    """The course's own Keras classes a checked config names (``CoupledL2Dense``), for Keras to rebuild them."""
    found: dict[str, type] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            module, name = node.get("module"), node.get("class_name")
            if isinstance(module, str) and module.startswith("adamclinic.") and isinstance(name, str):
                try:
                    cls = getattr(importlib.import_module(module), name)
                except (ImportError, AttributeError):
                    raise PlainDataError(f"{module}.{name}: no such class in the course") from None
                if not (isinstance(cls, type) and cls.__module__ == module):
                    raise PlainDataError(f"{module}.{name}: not one of the course's classes")
                found[name] = cls
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def check_keras_config(config: Any, depth: int = 0) -> None:
    """Refuse a Keras config that names a module outside Keras or holds a lambda."""
    if depth > 200:
        raise PlainDataError("the Keras config is nested too deeply")
    if isinstance(config, dict):
        module = config.get("module")
        if module is not None and not (isinstance(module, str) and _keras_module_allowed(module)):
            raise PlainDataError(
                f"the Keras config names the module {module!r}: only Keras's and the course's own layers can be handed in"
            )
        if config.get("class_name") in ("__lambda__", "Lambda"):
            raise PlainDataError("the Keras config holds a lambda or a Lambda layer: use Keras's built-in layers")
        for value in config.values():
            check_keras_config(value, depth + 1)
    elif isinstance(config, list):
        for value in config:
            check_keras_config(value, depth + 1)


def _keras_object(config: Any) -> Any:
    import keras

    check_keras_config(config)
    try:
        return keras.saving.deserialize_keras_object(
            config, custom_objects=course_keras_classes(config), safe_mode=True
        )
    except Exception as error:
        raise PlainDataError(f"Keras could not rebuild the object: {error}") from None


def _model(body: Any):
    import keras

    if not isinstance(body, str):
        raise PlainDataError("a model must be a .keras file")
    data = base64.b64decode(body, validate=True)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            config = json.loads(archive.read("config.json"))
            check_keras_config(config)
    except PlainDataError:
        raise
    except Exception as error:
        raise PlainDataError(f"not a .keras file: {error}") from None
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        with open(path, "wb") as handle:
            handle.write(data)
        try:
            return keras.saving.load_model(path, custom_objects=course_keras_classes(config), safe_mode=True)
        except Exception as error:
            raise PlainDataError(f"Keras could not load the model: {error}") from None
