"""Python functions named in a config: ``"package.module:function"`` or ``"file.py:function"``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def load_function(ref: str, base_dir: Path | None = None) -> Callable[..., Any]:
    """The callable named by ``ref``; a ``.py`` path is relative to ``base_dir``.

    Raises ImportError (with the reason) when the module or function cannot be had.
    """
    module_name, _, function_name = ref.rpartition(":")
    if not module_name or not function_name:
        raise ImportError(f"{ref!r} is not 'module:function' or 'file.py:function'")
    module = _load_module(module_name, base_dir)
    function = getattr(module, function_name, None)
    if function is None:
        raise ImportError(f"module {module_name!r} has no {function_name!r}")
    if not callable(function):
        raise ImportError(f"{function_name!r} in {module_name!r} is not callable")
    return function  # type: ignore[no-any-return]


def _load_module(module_name: str, base_dir: Path | None) -> Any:
    if not module_name.endswith(".py"):
        try:
            return importlib.import_module(module_name)
        except Exception as error:  # what the module raises while importing is the user's to see
            raise ImportError(
                f"cannot import {module_name!r}: {type(error).__name__}: {error}"
            ) from error
    path = Path(module_name)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ImportError(f"no Python file {path}")
    # One module per file, named after its path, so two probes.py in two folders do not clash
    # and a file loaded twice (a parser and a probe) is executed once.
    key = f"panoptes_user_{abs(hash(str(path.resolve())))}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[key]
        raise ImportError(f"cannot import {path}: {type(error).__name__}: {error}") from error
    return module
