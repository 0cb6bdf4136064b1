"""Read a GGUF file's identity, trained context and chat template from its header.

A small bounded reader rather than the ``gguf`` package of the llama.cpp project: that package pulls
in numpy (and maps the whole file) to give access to tensors, while tooti needs three scalar keys of
the key/value header. Every length read from the file is bounded (key, string, array, key count), so
a malformed or hostile file fails with :class:`GGUFError` instead of exhausting memory. Large arrays
(the tokenizer's vocabulary) are skipped, not kept.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["GGUFError", "GGUFModelInfo", "read_model_info"]

_MAGIC = b"GGUF"
_MAX_KEY = 65_536
_MAX_STRING = 16 * 1024 * 1024
_MAX_KVS = 100_000
_MAX_ARRAY = 50_000_000
_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """The file is not a GGUF file tooti can read."""


@dataclass(frozen=True, slots=True)
class GGUFModelInfo:
    """What the GGUF header says about the model."""

    name: str
    """``general.name`` (empty when absent)."""
    architecture: str
    """``general.architecture``, e.g. ``gemma3`` or ``llama``."""
    context_length: int | None
    """``<architecture>.context_length``: the context the model was trained for."""
    chat_template: str
    """``tokenizer.chat_template`` (Jinja; empty when absent)."""
    kv_bytes_per_token: int | None = None
    """Bytes of f16 KV cache one token of context takes (layers x KV heads x (key + value) dims x 2),
    or ``None`` when the header lacks the shapes."""

    def model_id(self) -> str:
        """A ``/v1/models`` id: the name lower-cased, spaces as dashes (``Gemma 3 270m`` -> ``gemma-3-270m``)."""
        return "-".join(self.name.lower().split())


def _unpack(f: BinaryIO, fmt: str) -> int | float | bool:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise GGUFError("truncated GGUF header")
    value: int | float | bool = struct.unpack(fmt, data)[0]
    return value


def _length(f: BinaryIO, limit: int, what: str) -> int:
    n = int(_unpack(f, "<Q"))
    if n > limit:
        raise GGUFError(f"GGUF {what} length {n} exceeds {limit}")
    return n


def _string(f: BinaryIO, limit: int = _MAX_STRING) -> str:
    n = _length(f, limit, "string")
    data = f.read(n)
    if len(data) != n:
        raise GGUFError("truncated GGUF string")
    return data.decode("utf-8", errors="replace")


def _value(f: BinaryIO, vtype: int) -> object:
    if vtype in _SCALARS:
        return _unpack(f, _SCALARS[vtype])
    if vtype == _STRING:
        return _string(f)
    if vtype == _ARRAY:
        itype = int(_unpack(f, "<I"))
        n = _length(f, _MAX_ARRAY, "array")
        if itype in _SCALARS:  # skipped: no array is wanted
            f.seek(n * struct.calcsize(_SCALARS[itype]), os.SEEK_CUR)
        elif itype == _STRING:
            for _ in range(n):
                f.seek(_length(f, _MAX_STRING, "string"), os.SEEK_CUR)
        else:
            raise GGUFError(f"unsupported GGUF array element type {itype}")
        return None
    raise GGUFError(f"unknown GGUF value type {vtype}")


def read_model_info(path: str | os.PathLike[str]) -> GGUFModelInfo:
    """Read :class:`GGUFModelInfo` from the header of the GGUF file at ``path``."""
    meta: dict[str, object] = {}
    with Path(path).open("rb") as f:
        if f.read(4) != _MAGIC:
            raise GGUFError(f"{path} is not a GGUF file")
        version = int(_unpack(f, "<I"))
        if version not in (2, 3):
            raise GGUFError(f"unsupported GGUF version {version}")
        _unpack(f, "<Q")  # tensor count
        kvs = _length(f, _MAX_KVS, "key/value count")
        for _ in range(kvs):
            key = _string(f, _MAX_KEY)
            meta[key] = _value(f, int(_unpack(f, "<I")))
    arch = str(meta.get("general.architecture") or "")
    ctx = meta.get(f"{arch}.context_length")

    def count(key: str) -> int | None:
        value = meta.get(f"{arch}.{key}")
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    layers, heads, embd = count("block_count"), count("attention.head_count"), count("embedding_length")
    kv_heads = count("attention.head_count_kv") or heads
    head_dim = embd // heads if embd and heads else None
    key_dim, value_dim = count("attention.key_length") or head_dim, count("attention.value_length") or head_dim
    kv_bytes = layers * kv_heads * (key_dim + value_dim) * 2 if layers and kv_heads and key_dim and value_dim else None
    return GGUFModelInfo(
        name=str(meta.get("general.name") or ""),
        architecture=arch,
        context_length=int(ctx) if isinstance(ctx, int) and ctx > 0 else None,
        chat_template=str(meta.get("tokenizer.chat_template") or ""),
        kv_bytes_per_token=kv_bytes,
    )
