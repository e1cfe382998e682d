"""The ``transformer`` kind: a small encoder trained from scratch on hashed word tokens, with dense or dynamic
sliding-window attention (:mod:`frugalml.models.attention`) for long e-mails.

Notation: N texts, T tokens (at most ``max_tokens``), V the hashed vocabulary, D the width, C classes.

Tokens are words and punctuation (lowercased), hashed into V - 2 buckets (CRC-32: stable across processes and
machines; 0 is padding, 1 the [CLS] token every text starts with), so there is no vocabulary to fit on private
rows and any language works. Positions are fixed sinusoids (a trainable position table would be shared by the
batch, so DP could not clip it per sample). Blocks are pre-LayerNorm: attention (one Linear to q, k, v and one
out) and a GELU feed-forward; the mean of the final states over real tokens goes to a linear head. Every
trainable layer is an Embedding, Linear or LayerNorm, each with a ghost-norm rule, so DP-SGD clips all of them.

``gradient_checkpointing`` recomputes each block in the backward pass instead of keeping its activations (the
saved activations of one block's input remain); it applies without DP only (the DP step keeps every layer's
inputs for its per-sample norms, so checkpointing would save nothing there).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import re
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from frugalml.models.attention import Backend, full_attention, window_attention
from frugalml.models.encoder import frame_texts
from frugalml.models.feature_head import RowInputs, batched_probabilities

FORMAT = "frugalml.transformer/1"
PAD, CLS = 0, 1
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class TransformerConfig:
    """The architecture (saved with the model, so inference tokenises and attends like training)."""

    num_classes: int
    vocab: int = 2**15
    dim: int = 128
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 256
    max_tokens: int = 512
    dropout: float = 0.0
    attention: str = "dense"  # dense | dswa
    block: int = 64
    w_min: int = 64
    w_max: int = 256
    backend: str = "auto"  # dswa: auto (flex on CUDA, banded on CPU) | banded | flex | dense
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        """The checks of ``train.model.transformer`` again, for a config read back from a saved model.

        Raises:
            ValueError: Naming the first value that cannot describe a trained transformer.
        """
        problems = [
            (self.num_classes >= 2, f"num_classes {self.num_classes} (at least 2)"),
            (self.vocab >= 16 and self.max_tokens >= 8 and self.layers >= 1, "vocab, max_tokens or layers too small"),
            (self.heads >= 1 and self.dim % self.heads == 0 and (self.dim // self.heads) % 2 == 0,
             f"dim {self.dim} does not split into {self.heads} heads of an even width"),
            (self.attention in ("dense", "dswa"), f"attention {self.attention!r} (dense or dswa)"),
            (self.backend in ("auto", "banded", "flex", "dense"), f"backend {self.backend!r}"),
            (1 <= self.w_min <= self.w_max and self.block >= 1, f"windows w_min {self.w_min}, w_max {self.w_max}"),
            (0 <= self.dropout < 1, f"dropout {self.dropout}"),
        ]  # fmt: skip
        bad = [what for ok, what in problems if not ok]
        if bad:
            raise ValueError(f"transformer config: {'; '.join(bad)}")


def tokenize(texts: list[str], vocab: int, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashed word ids and masks, (N, T) int64, right-padded to the longest text (at most ``max_tokens``,
    [CLS] included)."""
    rows = []
    for text in texts:
        words = itertools.islice(_TOKEN.finditer(str(text).lower()), max_tokens - 1)  # stops at the limit
        rows.append([CLS] + [zlib.crc32(w.group().encode("utf-8")) % (vocab - 2) + 2 for w in words])
    width = max((len(r) for r in rows), default=1)
    ids = np.full((len(rows), width), PAD, dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    return ids, (ids != PAD).astype(np.int64)


def sinusoids(steps: int, dim: int) -> torch.Tensor:
    """(steps, dim) fixed sinusoidal positions."""
    position = torch.arange(steps, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(steps, dim)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)[:, : dim // 2]
    return table


class Block(nn.Module):
    """Pre-LayerNorm self-attention (dense or DSWA) and feed-forward, both residual."""

    def __init__(self, config: TransformerConfig) -> None:
        """Layers of one block."""
        super().__init__()
        self.config = config
        self.attn_norm = nn.LayerNorm(config.dim)
        self.qkv = nn.Linear(config.dim, 3 * config.dim)
        self.out = nn.Linear(config.dim, config.dim)
        self.ffn_norm = nn.LayerNorm(config.dim)
        self.ffn_in = nn.Linear(config.dim, config.ffn_dim)
        self.ffn_out = nn.Linear(config.ffn_dim, config.dim)
        self.drop = nn.Dropout(config.dropout)

    def attend(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """(N, T, D) normalised states -> (N, T, D) attention output."""
        n, steps, dim = x.shape
        heads = self.config.heads
        q, k, v = self.qkv(x).reshape(n, steps, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        if self.config.attention == "dswa":
            c = self.config
            mixed = window_attention(q, k, v, key_mask, block=c.block, w_min=c.w_min, w_max=c.w_max,
                                     backend=cast(Backend, c.backend))  # fmt: skip
        else:
            mixed = full_attention(q, k, v, key_mask)
        return self.out(mixed.transpose(1, 2).reshape(n, steps, dim))

    def mix(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """The attention sublayer with its residual: (N, T, D) -> (N, T, D)."""
        return x + self.drop(self.attend(self.attn_norm(x), key_mask))

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        """The feed-forward sublayer with its residual: (N, T, D) -> (N, T, D)."""
        return x + self.drop(self.ffn_out(nn.functional.gelu(self.ffn_in(self.ffn_norm(x)))))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """(N, T, D) -> (N, T, D)."""
        return self.feed(self.mix(x, key_mask))

    def sublayers(self, key_mask: torch.Tensor) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The block as its two checkpoint segments, in order (attention, feed-forward)."""
        return [functools.partial(self.mix, key_mask=key_mask), self.feed]


class SmallTransformer(nn.Module):
    """Token ids -> embeddings + sinusoids -> blocks -> LayerNorm -> masked mean -> Linear -> (N, C) logits."""

    def __init__(self, config: TransformerConfig) -> None:
        """Fresh weights for ``config``."""
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab, config.dim, padding_idx=PAD)
        # saved with the weights (a few hundred KB), so a config whose max_tokens or dim differs does not load
        self.register_buffer("positions", sinusoids(config.max_tokens, config.dim))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.num_classes)

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(N, T) ids -> (N, T, D) scaled embeddings plus positions (the first block's input)."""
        positions = cast(torch.Tensor, self.positions)[: input_ids.shape[1]]
        return self.embed(input_ids) * math.sqrt(self.config.dim) + positions

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(N, T) ids and mask -> (N, C) logits."""
        key_mask = attention_mask.bool()
        x = self.embed_tokens(input_ids)
        recompute = self.config.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if not recompute:
                x = block(x, key_mask)
                continue
            for sublayer in cast(Block, block).sublayers(key_mask):  # one checkpoint each: the backward holds one
                x = checkpoint(sublayer, x, use_reentrant=False)
        weights = key_mask.unsqueeze(-1).to(x.dtype)
        pooled = (self.norm(x) * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(pooled)


class TransformerTextClassifier:
    """Inference bundle of the ``transformer`` kind: the module, its config, columns and labels."""

    kind = "transformer"

    def __init__(self, module: SmallTransformer, *, text_columns: list[str], labels: list[int],
                 label_names: list[str]) -> None:  # fmt: skip
        """Bundle a trained module with its preprocessing."""
        self.module, self.config = module, module.config
        self.text_columns, self.labels, self.label_names = list(text_columns), list(labels), list(label_names)

    def inputs(self, frame: pd.DataFrame) -> RowInputs:
        """Hashed token ids and masks of ``frame``'s texts.

        Raises:
            KeyError: When a text column is missing.
        """
        ids, mask = tokenize(frame_texts(frame, self.text_columns), self.config.vocab, self.config.max_tokens)
        return RowInputs(tokens=ids, mask=mask)

    @torch.no_grad()
    def predict_proba(self, frame: pd.DataFrame, *, batch_size: int = 64) -> np.ndarray:
        """(N, C) class probabilities; column k is the probability of ``labels[k]``."""
        return batched_probabilities(self.module, self.inputs(frame), batch_size, len(self.labels))

    def to_cpu(self) -> TransformerTextClassifier:
        """Move the module to CPU (in place) and return self."""
        self.module.to("cpu")
        return self

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description (everything but the weights)."""
        return {"format": FORMAT, "kind": self.kind, "model_config": asdict(self.config),
                "text_columns": self.text_columns, "labels": self.labels, "label_names": self.label_names}  # fmt: skip

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every weight (safetensors-ready)."""
        return {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}

    @classmethod
    def from_parts(cls, metadata: dict[str, Any], tensors: dict[str, torch.Tensor]) -> TransformerTextClassifier:
        """Rebuild from :meth:`metadata` and :meth:`tensors`.

        Raises:
            ValueError: On an unknown format, or weights that do not fit the saved config.
        """
        if metadata.get("format") != FORMAT:
            raise ValueError(f"unknown model format {metadata.get('format')!r}")
        saved = dict(metadata.get("model_config") or {})
        fields = {f.name for f in dataclasses.fields(TransformerConfig)}
        if set(saved) != fields:
            raise ValueError(f"the transformer's model_config must name exactly {sorted(fields)}; unexpected "
                             f"{sorted(set(saved) - fields)}, missing {sorted(fields - set(saved))}")  # fmt: skip
        module = SmallTransformer(TransformerConfig(**saved))
        try:
            module.load_state_dict(tensors)
        except RuntimeError as error:
            raise ValueError(f"saved weights do not fit the transformer's config: {str(error)[:300]}") from error
        return cls(module.eval(), text_columns=metadata["text_columns"], labels=metadata["labels"],
                   label_names=metadata["label_names"])  # fmt: skip

    def __repr__(self) -> str:
        return f"TransformerTextClassifier({json.dumps(asdict(self.config))}, cols={self.text_columns})"
