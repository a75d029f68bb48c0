"""Import compressai's entropy coder without compressai's package initialiser.

``import compressai`` imports every submodule, among them ``compressai.datasets`` and
``compressai.registry``, which pull in torch_geometric and torch._dynamo: 2.4 s and ~280 MB on
every CLI call that codes, for code privcodec never runs.  Before anything imports compressai,
``install()`` registers a package object with the same search path and the few functions the
package itself defines (the entropy-coder choice), so ``import compressai.entropy_models`` loads
just that module and what it imports.  Other submodules still load on first use (PEP 562).
If compressai is already imported, nothing changes.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types


def install() -> None:
    if "compressai" in sys.modules:
        return
    spec = importlib.util.find_spec("compressai")
    if spec is None or not spec.submodule_search_locations:
        return   # not installed: the import that needs it reports that
    pkg = types.ModuleType("compressai")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    pkg.__file__ = spec.origin
    pkg.__package__ = "compressai"
    state = {"coder": "ans"}

    def get_entropy_coder():
        return state["coder"]

    def set_entropy_coder(name):
        if name != "ans":
            raise ValueError(f'Invalid entropy coder "{name}", choose from (ans).')
        state["coder"] = name

    def available_entropy_coders():
        return ["ans"]

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return importlib.import_module(f"compressai.{name}")

    pkg.get_entropy_coder, pkg.set_entropy_coder = get_entropy_coder, set_entropy_coder
    pkg.available_entropy_coders, pkg.__getattr__ = available_entropy_coders, __getattr__
    sys.modules["compressai"] = pkg
