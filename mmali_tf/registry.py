"""Registries of models, datasets, network families and fusion methods: declared once, found
without importing TensorFlow.

A module declares what it adds with one line next to the definition:

```python
@register_model("mvae", settings=MVAESettings)  # a MultimodalModel subclass
@register_dataset("digits", settings=DigitsSettings)  # a function config -> PairedDataset
@register_fusion("poe")                      # a function (means, logvars, prior_expert)
register_network_family("mnist_mlp")         # module level: this module is the family
```

Everything that lists names (flag choices and validators, run-directory shape flags, export,
the benchmark, the tests' parametrisations, `ModalitySpec` checks) asks this module. The
registries are filled by *reading* the source of every module of the `mmali_tf` package (and
of every `--plugins` module) with `ast`, not by importing it, so flags are validated before
TensorFlow loads; a declaration's arguments must therefore be literals. The declaring module is
imported the first time its object is needed (`load(kind, name)`), and the decorator then
checks that it matches what was read. Declarations executed in a module that was never read
(a notebook, a module imported by hand) register themselves when they run.

Options of a declaration (literals, except `settings`):
* model: `settings` -- its settings class (a `mmali_tf.config.Settings` subclass, named by
  a name the module defines or imports with `from ... import`); default `ModelSettings`.
* dataset: `settings` -- its settings class (a `DataSettings` subclass); its fields besides
  `DataSettings`' are the dataset flags it reads (the pairing flags come with
  `PairingSettings`); default `DataSettings` (no dataset flags). `shape_flags` -- flags
  that change its data, so a run directory cannot resume with other values.
The flags of every setting are defined from these classes (`mmali_tf.flags`); reading a
package settings class imports neither TensorFlow nor absl.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, Iterable, Mapping, TypeVar

KINDS = ("model", "dataset", "network", "fusion")
#: declaration function -> kind of what it declares.
DECLARATIONS = {"register_model": "model", "register_dataset": "dataset",
                "register_network_family": "network", "register_fusion": "fusion"}
#: options each kind of declaration accepts.
OPTIONS = {"model": ("settings",), "dataset": ("settings", "shape_flags"),
           "network": (), "fusion": ()}
#: settings class of a model or dataset declared without `settings`.
DEFAULT_SETTINGS = {"model": "mmali_tf.models.settings:ModelSettings",
                    "dataset": "mmali_tf.config:DataSettings"}
_LABELS = {"model": "model", "dataset": "dataset", "network": "network family",
           "fusion": "fusion method"}
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

T = TypeVar("T")


class RegistryError(ValueError):
    """A bad declaration or plugin (a user error: the CLIs report it in one line, exit 2)."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One declaration: what it is, where it lives, and its literal options.

    `attr` is the decorated class or function; empty for a module-level declaration (a
    network family is its module).
    """

    kind: str
    name: str
    module: str
    attr: str = ""
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.module}:{self.attr}" if self.attr else self.module

    @property
    def builtin(self) -> bool:
        """Declared inside the mmali_tf package (not by a plugin)."""
        return self.module == "mmali_tf" or self.module.startswith("mmali_tf.")

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def load(self) -> Any:
        """Import the declaring module; the declared class or function (or the module)."""
        if not self.attr:
            return importlib.import_module(self.module)
        return import_object(f"{self.module}:{self.attr}")


# ----------------------------------------------------------------------------- the tables
_tables: dict[str, dict[str, Entry]] | None = None
_plugins: list[str] = []


def _all() -> dict[str, dict[str, Entry]]:
    global _tables
    if _tables is None:
        _tables = {kind: {} for kind in KINDS}
        for entry in scan_directory(_PACKAGE_DIR, "mmali_tf"):
            _add(entry)
    return _tables


def _add(entry: Entry) -> None:
    table = _all()[entry.kind]
    old = table.get(entry.name)
    if old is not None and old.where != entry.where:
        raise RegistryError(f"{_LABELS[entry.kind]} {entry.name!r} is declared twice: in "
                            f"{old.where} and in {entry.where}")
    if old is None:
        table[entry.name] = entry


def entries(kind: str) -> dict[str, Entry]:
    """The live table of `kind` (name -> Entry, in declaration order); tests may patch it."""
    if kind not in KINDS:
        raise ValueError(f"unknown registry kind {kind!r}; expected one of {KINDS}")
    return _all()[kind]


def names(kind: str) -> tuple[str, ...]:
    """Registered names of `kind`, in declaration order (package modules sorted by path)."""
    return tuple(entries(kind))


def get(kind: str, name: str) -> Entry:
    """The entry of `name`, or ValueError naming the registered choices."""
    table = entries(kind)
    if name not in table:
        raise ValueError(f"unknown {_LABELS[kind]} {name!r}; expected one of "
                         f"{', '.join(table)}")
    return table[name]


def load(kind: str, name: str) -> Any:
    """The declared object of `name` (imports its module on first use)."""
    return get(kind, name).load()


def plugins() -> tuple[str, ...]:
    """Plugin modules loaded so far."""
    return tuple(_plugins)


def load_plugins(modules: Iterable[str]) -> list[Entry]:
    """Read the declarations of plugin modules (or packages) without importing them.

    Raises RegistryError for a module that is not importable from sys.path or declares
    nothing. Loading the same module twice is a no-op.
    """
    added = []
    for name in modules:
        name = str(name).strip()
        if not name or name in _plugins:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError) as error:
            raise RegistryError(f"--plugins={name}: cannot import it ({error})") from None
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            raise RegistryError(f"--plugins={name}: no Python module of that name on sys.path "
                                f"(add its directory to PYTHONPATH)")
        if spec.submodule_search_locations:
            found = scan_directory(os.path.dirname(spec.origin), name)
        else:
            with open(spec.origin, encoding="utf-8") as f:
                found = scan_source(f.read(), name, spec.origin)
        if not found:
            raise RegistryError(f"--plugins={name}: {spec.origin} declares no model, dataset, "
                                "network family or fusion method (mmali_tf.registry)")
        for entry in found:
            _add(entry)
        _plugins.append(name)
        added += found
    return added


# ----------------------------------------------------------------------------- reading source
def _callee(node: ast.AST) -> str:
    func = node.func if isinstance(node, ast.Call) else None
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _imported_names(tree: ast.Module, module: str) -> dict[str, str]:
    """name -> "module:attr" of the top-level `from ... import` statements of a module."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                out[alias.asname or alias.name] = f"{base}:{alias.name}"
    return out


def _settings_reference(node: ast.AST, module: str, imported: Mapping[str, str],
                        where: str) -> str:
    """`settings=Name`: "module:Name" of the class, found through the module's imports."""
    if not isinstance(node, ast.Name):
        raise RegistryError(f"{where}: settings= takes the name of a settings class the module "
                            "defines or imports with `from ... import`")
    return imported.get(node.id, f"{module}:{node.id}")


def _entry_from_call(call: ast.Call, module: str, attr: str, path: str,
                     imported: Mapping[str, str]) -> Entry:
    callee = _callee(call)
    kind = DECLARATIONS[callee]
    where = f"{path}:{call.lineno}"
    try:
        args = [ast.literal_eval(a) for a in call.args]
        options = {k.arg: (_settings_reference(k.value, module, imported, where)
                           if k.arg == "settings" else ast.literal_eval(k.value))
                   for k in call.keywords}
    except ValueError:
        raise RegistryError(f"{where}: {callee}(...) needs literal arguments (declarations are "
                            "read without importing the module)") from None
    if len(args) != 1 or not isinstance(args[0], str) or not args[0]:
        raise RegistryError(f"{where}: {callee} takes one name string, got {args}")
    if kind == "network" and attr:
        raise RegistryError(f"{where}: register_network_family is a module-level call, not a "
                            "decorator")
    if kind != "network" and not attr:
        raise RegistryError(f"{where}: {callee} decorates a class or function")
    check_options(kind, options, where)
    return Entry(kind, args[0], module, attr, options)


def scan_source(source: str, module: str, path: str = "<source>") -> list[Entry]:
    """Declarations at the top level of one module's source, in source order."""
    if not any(name in source for name in DECLARATIONS):
        return []
    tree = ast.parse(source, filename=path)
    imported = _imported_names(tree, module)
    found = []
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            found += [_entry_from_call(d, module, node.name, path, imported)
                      for d in node.decorator_list if _callee(d) in DECLARATIONS]
        elif isinstance(node, ast.Expr) and _callee(node.value) in DECLARATIONS:
            found.append(_entry_from_call(node.value, module, "", path, imported))
    return found


def scan_directory(directory: str, package: str) -> list[Entry]:
    """Declarations of every module under `directory` (package `package`), by sorted path."""
    paths = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__pycache__"))]
        paths += [os.path.join(root, f) for f in files if f.endswith(".py")]
    found = []
    for path in sorted(paths):
        rel = os.path.relpath(path, directory)[:-3].replace(os.sep, ".")
        parts = [p for p in rel.split(".") if p != "__init__"]
        module = ".".join([package] + parts)
        with open(path, encoding="utf-8") as f:
            found += scan_source(f.read(), module, path)
    return found


def check_options(kind: str, options: Mapping[str, Any], where: str) -> None:
    """RegistryError for an option `kind` does not take or an option of the wrong form."""
    unknown = sorted(set(options) - set(OPTIONS[kind]))
    if unknown:
        raise RegistryError(f"{where}: {kind} declarations take no option {unknown[0]!r} "
                            f"(options: {', '.join(OPTIONS[kind]) or 'none'})")
    settings = options.get("settings")
    if settings is not None and not (isinstance(settings, str) and ":" in settings):
        raise RegistryError(f"{where}: settings= must name a settings class")
    shape_flags = options.get("shape_flags", ())
    if not (isinstance(shape_flags, tuple) and all(isinstance(f, str) for f in shape_flags)):
        raise RegistryError(f"{where}: shape_flags= must be a tuple of flag names")


def import_object(reference: str) -> Any:
    """The object of a "module:qualname" reference (imports the module)."""
    module, _, attr = reference.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


# ----------------------------------------------------------------------------- declarations
def _bind(kind: str, name: str, module: str, attr: str, options: Mapping[str, Any]) -> None:
    """Runtime side of a declaration: check it against what was read, or register it."""
    where = f"{module}:{attr}" if attr else module
    options = {k: (f"{v.__module__}:{v.__qualname__}" if k == "settings" and isinstance(v, type)
                   else v) for k, v in options.items()}
    check_options(kind, options, where)
    table = entries(kind)
    old = table.get(name)
    if old is not None and old.where == where and dict(old.options) != dict(options):
        raise RegistryError(f"{where}: the options of {kind} {name!r} changed after the "
                            "module was read")
    _add(Entry(kind, name, module, attr, dict(options)))


def register_model(name: str, **options: Any) -> Callable[[T], T]:
    """Class decorator: declare a MultimodalModel subclass as model `name` (`--model=name`).

    Sets the class's `registry_name` (unless it defines one) and `settings_class` (when
    `settings` is given) and registers it with Keras serialization (package "mmali"), so
    `model.keras` files reload.
    """
    def decorate(cls: T) -> T:
        _bind("model", name, cls.__module__, cls.__qualname__, options)
        if "registry_name" not in vars(cls):
            cls.registry_name = name
        if "settings" in options:
            cls.settings_class = options["settings"]
        import keras

        keras.saving.register_keras_serializable(package="mmali")(cls)
        return cls
    return decorate


def register_dataset(name: str, **options: Any) -> Callable[[T], T]:
    """Function decorator: declare `load(config) -> PairedDataset` as dataset `name`."""
    def decorate(fn: T) -> T:
        _bind("dataset", name, fn.__module__, fn.__qualname__, options)
        return fn
    return decorate


def register_fusion(name: str) -> Callable[[T], T]:
    """Function decorator: declare `fuse(means, logvars, prior_expert) -> (mean, logvar)`."""
    def decorate(fn: T) -> T:
        _bind("fusion", name, fn.__module__, fn.__qualname__, {})
        return fn
    return decorate


def register_network_family(name: str) -> None:
    """Module-level call: the calling module is network family `name` (`spec.network`)."""
    _bind("network", name, sys._getframe(1).f_globals["__name__"], "", {})


# ----------------------------------------------------------------------------- derived views
def settings_class(kind: str, name: str) -> type:
    """The settings class of model or dataset `name` (imports its module on first use)."""
    return import_object(get(kind, name).option("settings", DEFAULT_SETTINGS[kind]))


def settings_classes() -> list[tuple[Entry, type]]:
    """(entry, settings class) of every registered model, then every dataset."""
    return [(entry, settings_class(kind, entry.name)) for kind in ("model", "dataset")
            for entry in entries(kind).values()]


def dataset_reads(name: str) -> tuple[str, ...]:
    """Dataset flags dataset `name` reads: the fields of its settings besides
    `DataSettings`' (pairing flags first when it pairs by class)."""
    return tuple(f.name for f in settings_class("dataset", name).dataset_fields())
