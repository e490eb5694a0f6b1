"""What the grader asks a student's kernel right before each hidden test cell runs: has anything been
tampered with that would make the test pass without judging the work?

``inspect_kernel`` is evaluated as a Jupyter *user expression* (``eval`` in the kernel, after the
previous cell and before the test cell). User expressions bypass IPython's input transformers, so a
student's transformer that turns every later cell into ``pass`` cannot hide from it, and the runner
(``adamclinic.grading.runner``) treats a missing or unreadable answer as tampering too.

It checks, and names in its answer:

* input and AST transformers that rewrite the test cell (the "every test becomes a no-op" attack);
* IPython's traceback display and cell runners replaced on the shell (the ``showtraceback`` patch);
* comparison and assertion helpers replaced by code that is not the library's own (``np.allclose``,
  ``math.isclose``, ``np.testing.assert_*``, builtins such as ``abs``, ``float``, ``isinstance``);
* names the test reads that hold objects of a student-made class with lying comparisons
  (``__lt__`` that always says yes, ``__eq__`` on a non-dataclass, ``__bool__``, ...).

This runs inside the student's process, so code written to defeat this particular check can; what it
catches is listed in grading/README.md, with what it does not.
"""

from __future__ import annotations

import ast
import builtins
import json
import sys
import types

_WATCHED_FUNCTIONS = {
    "numpy": (
        "allclose",
        "isclose",
        "array_equal",
        "array_equiv",
        "isfinite",
        "isnan",
        "all",
        "any",
        "asarray",
        "mean",
        "max",
        "min",
        "abs",
        "sum",
    ),
    "numpy.testing": (
        "assert_allclose",
        "assert_array_equal",
        "assert_equal",
        "assert_almost_equal",
        "assert_array_almost_equal",
        "assert_array_less",
        "assert_approx_equal",
    ),
    "math": ("isclose", "isfinite", "isnan", "fabs"),
    "builtins": (
        "abs",
        "all",
        "any",
        "bool",
        "float",
        "int",
        "isinstance",
        "len",
        "max",
        "min",
        "round",
        "sum",
        "str",
        "repr",
        "sorted",
        "AssertionError",
    ),
}
_SHELL_METHODS = (
    "showtraceback",
    "_showtraceback",
    "showsyntaxerror",
    "run_cell",
    "run_cell_async",
    "run_ast_nodes",
    "run_code",
    "transform_cell",
    "transform_ast",
    "user_expressions",
    "ex",
    "ev",
)
_LYING_DUNDERS = (
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__bool__",
    "__float__",
    "__int__",
    "__index__",
    "__array__",
    "__array_ufunc__",
    "__array_function__",
)


def _library_file(obj) -> str | None:
    code = getattr(obj, "__code__", None) or getattr(getattr(obj, "__func__", None), "__code__", None)
    return code.co_filename if code is not None else None


def _is_student_code(filename: str | None) -> bool:
    # IPython compiles each cell to a file named like /tmp/ipykernel_12/3456.py or <ipython-input-...>.
    return filename is not None and ("ipykernel_" in filename or filename.startswith("<"))


def _is_library_object(obj, package_dir: str | None) -> bool:
    filename = _library_file(obj)
    if filename is not None:  # written in Python: it must live in the library's own folder
        return package_dir is not None and filename.startswith(package_dir)
    # C functions, built-in types, ufuncs and numpy's dispatchers carry no Python code of their own.
    return type(obj).__module__ in ("builtins", "numpy") or isinstance(obj, type) and obj.__module__ == "builtins"


def _replaced_helpers() -> list[str]:
    import os

    found = []
    for module_name, names in _WATCHED_FUNCTIONS.items():
        module = sys.modules.get(module_name)
        if module is None:
            continue
        top = sys.modules.get(module_name.split(".")[0])
        package_dir = os.path.dirname(getattr(top, "__file__", "") or "") or None
        for name in names:
            obj = getattr(module, name, None)
            if obj is not None and not _is_library_object(obj, package_dir):
                found.append(f"{module_name}.{name} was replaced")
    return found


_baseline: dict[str, object] = {}


def record_baseline() -> str:
    """Remember the shell's own methods before any student cell runs (the runner calls this first)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        for name in _SHELL_METHODS:
            _baseline[name] = vars(shell).get(name, getattr(type(shell), name, None))
    return "ready"


def _patched_shell(shell) -> list[str]:
    found = []
    for name in _SHELL_METHODS:
        current = vars(shell).get(name, getattr(type(shell), name, None))
        if name in _baseline and current is not _baseline[name]:
            found.append(f"IPython's {name} was replaced")
        elif current is not None and _is_student_code(_library_file(current)):
            found.append(f"IPython's {name} was replaced by code from a cell")
    if not _baseline:
        found.append("the grader's record of the kernel was erased")
    return found


def _rewritten_test(shell, test_source: str) -> list[str]:
    from IPython.core.inputtransformer2 import TransformerManager

    found = []
    try:
        pristine = TransformerManager().transform_cell(test_source)
        actual = shell.transform_cell(test_source)
    except Exception as error:  # a transformer that raises on the test is tampering too
        return [f"transforming the test cell failed ({type(error).__name__})"]
    if actual != pristine:
        found.append("an input transformer rewrites the test cell before it runs")
    if getattr(shell, "ast_transformers", None):
        found.append("an AST transformer rewrites every cell before it runs")
    return found


def _names_read(test_source: str) -> set[str]:
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return set()
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def _lying_objects(namespace: dict, names: set[str]) -> list[str]:
    found = []
    for name in sorted(names):
        value = namespace.get(name)
        if value is None or isinstance(value, (types.ModuleType, types.FunctionType, type)):
            continue
        cls = type(value)
        if cls.__module__ != "__main__" and not _is_student_code(
            getattr(sys.modules.get(cls.__module__), "__file__", None)
        ):
            continue
        own = {attr for klass in cls.__mro__ if klass.__module__ == "__main__" for attr in vars(klass)}
        lies = [d for d in _LYING_DUNDERS if d in own]
        if ("__eq__" in own or "__ne__" in own) and not hasattr(cls, "__dataclass_fields__"):
            lies.append("__eq__")
        if lies:
            found.append(f"{name} is a {cls.__name__} with its own {', '.join(sorted(set(lies)))}")
    return found


def inspect_kernel(test_source: str) -> str:
    """A JSON list of the tampering found (empty when none), for the test cell about to run."""
    from IPython import get_ipython

    shell = get_ipython()
    found: list[str] = []
    if shell is not None:
        found += _rewritten_test(shell, test_source)
        found += _patched_shell(shell)
        namespace = shell.user_ns
    else:
        namespace = {}
    found += _replaced_helpers()
    for alias, module in (("np", "numpy"), ("math", "math"), ("numpy", "numpy")):
        if alias in namespace and module in sys.modules and namespace[alias] is not sys.modules[module]:
            found.append(f"the name {alias} no longer refers to the {module} module")
    if not isinstance(builtins.__import__, types.BuiltinFunctionType):
        found.append("builtins.__import__ was replaced")
    found += _lying_objects(namespace, _names_read(test_source))
    return json.dumps(found)
