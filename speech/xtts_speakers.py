"""The speaker names of an XTTS voices file, read without torch.

models.yaml is checked, and agents' voices listed, in the application builder and the Ingress, which should not
import torch (seconds and hundreds of MB; it comes only with the optional XTTS install). A voices file is a ``torch.save`` zip of a
pickled dict speaker name -> latents: its pickle is read with every class it names replaced by an inert stand-in,
so nothing is imported or run and no tensor is loaded.
"""

from __future__ import annotations

import pickle
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any


def xtts_speaker_names(path: Path) -> list[str] | None:
    """Speaker names of an XTTS voices file (a dict of name -> latents saved by ``torch.save``), read without
    torch: the pickle's top-level keys, with tensors left as inert placeholders. None when unreadable."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _speaker_names_cached(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _speaker_names_cached(path: str, size: int, mtime_ns: int) -> list[str] | None:
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if pickled is None:
                return None
            data = _InertUnpickler(archive.open(pickled)).load()
    except Exception:  # not a torch zip file, or a layout we do not know
        return None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        return None
    return list(data)


class _Inert:
    """Stands in for every class a torch pickle names (tensors, storages): nothing is imported or run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("collections", "OrderedDict"), ("builtins", "dict")):
            return dict
        return _Inert

    def persistent_load(self, pid: Any) -> Any:
        return _Inert()
