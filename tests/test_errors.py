"""Every error comply raises on purpose derives from one base, `ingest.types.ComplyError`, so an edge (CLI, app, API)
can tell a message meant for the user from a bug."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from ingest.types import ComplyError

PACKAGES = ["ingest", "assistant", "eval", "finetune"]


def comply_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names += [info.name for info in pkgutil.walk_packages(module.__path__, f"{package}.")]
    return sorted(names)


@pytest.mark.parametrize("name", comply_modules())
def test_every_exception_class_derives_from_comply_error(name):
    module = importlib.import_module(name)
    own = [c for _, c in inspect.getmembers(module, inspect.isclass)
           if c.__module__ == name and issubclass(c, BaseException)]
    strays = [c.__name__ for c in own if not issubclass(c, ComplyError)]
    assert not strays, f"{name}: {strays} do not derive from ingest.types.ComplyError"
