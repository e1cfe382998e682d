"""Encoder-feature classifiers: ``pretrained`` (a frozen encoder's pooled embedding -> head) and ``hybrid``
(the n-gram bag and the embedding side by side into one head).

Notation: N rows, H the encoder width, B hash buckets, d the bag width, C classes. Only the head (and, for
``hybrid``, the bag) is trained, so under DP only these parameters see private gradients; the encoder was
trained on public data and stays frozen (``fine_tuning: frozen``). Layers: EmbeddingBag, Linear, LayerNorm -
each with a ghost-norm rule, so per-sample clipping covers every trainable weight.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from frugalml.models.embedding_store import EmbeddingStore, shared_memory_store
from frugalml.models.encoder import EncoderSpec, frame_texts
from frugalml.models.hashing import HashingConfig, HashingFeaturizer
from frugalml.models.ngram_bag import (
    bundle_tensors,
    common_metadata,
    csr_to_bags,
    hashing_from_metadata,
    restore_module,
    tfidf_weights,
)

FORMAT = "frugalml.feature_head/1"


@dataclass
class RowInputs:
    """A model's inputs for a set of rows: bag weights (CSR), dense embeddings, both, or token ids and masks."""

    csr: sp.csr_matrix | None = None
    dense: np.ndarray | None = None
    tokens: np.ndarray | None = None  # (N, T) int64 token ids (fine-tuned encoders), padded
    mask: np.ndarray | None = None  # (N, T) attention mask of ``tokens``

    def __len__(self) -> int:
        source = next((s for s in (self.csr, self.dense, self.tokens) if s is not None), None)
        return 0 if source is None else int(source.shape[0])

    def take(self, rows: np.ndarray | slice, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        """The module's positional inputs for ``rows``: bag tensors first, then the embeddings; or token ids and
        mask, cut to the longest text among ``rows``."""
        if self.tokens is not None and self.mask is not None:
            mask = self.mask[rows]
            width = max(int(mask.sum(axis=1).max()) if len(mask) else 1, 1)
            return (torch.from_numpy(np.ascontiguousarray(self.tokens[rows][:, :width])).to(device),
                    torch.from_numpy(np.ascontiguousarray(mask[:, :width])).to(device))  # fmt: skip
        parts: tuple[torch.Tensor, ...] = ()
        if self.csr is not None:
            parts += csr_to_bags(self.csr[rows], device)
        if self.dense is not None:
            parts += (torch.from_numpy(np.ascontiguousarray(self.dense[rows])).to(device),)
        return parts

    def all(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        """Every row's inputs."""
        return self.take(slice(None), device)


def batched_probabilities(module: nn.Module, inputs: RowInputs, batch_size: int, classes: int) -> np.ndarray:
    """(N, C) softmax of ``module`` on ``inputs``, ``batch_size`` rows at a time, in eval mode on its device."""
    module.eval()
    device = next(module.parameters()).device
    with torch.no_grad():
        out = [torch.softmax(module(*inputs.take(slice(start, start + batch_size), device)).float(), dim=-1)
               .cpu().numpy() for start in range(0, len(inputs), batch_size)]  # fmt: skip
    return np.concatenate(out) if out else np.zeros((0, classes), dtype=np.float32)


class FeatureHeadClassifier(nn.Module):
    """[EmbeddingBag(B, d)] ++ LayerNorm(H) -> [Linear(., h), GELU] -> Linear -> C."""

    def __init__(
        self, num_classes: int, *, encoder_dim: int, buckets: int = 0, bag_dim: int = 0, hidden_dim: int = 0,
        dropout: float = 0.0,
    ) -> None:  # fmt: skip
        """Build the layers.

        Args:
            num_classes: C.
            encoder_dim: H, the width of the pooled embedding.
            buckets: B, hash buckets of the n-gram bag (0: no bag, the ``pretrained`` kind).
            bag_dim: d, width of the bag (with ``buckets``).
            hidden_dim: Width of an optional hidden layer (0: linear head).
            dropout: Dropout before the output layer.
        """
        super().__init__()
        self.bag: nn.EmbeddingBag | None = None
        if buckets:
            self.bag = nn.EmbeddingBag(buckets, bag_dim, mode="sum")
            self.bag.frugalml_unique_per_bag = True  # type: ignore[assignment]  # csr_to_bags of a summed CSR
            nn.init.normal_(self.bag.weight, std=0.02)
        self.norm = nn.LayerNorm(encoder_dim)  # unit-norm embeddings have ~1/sqrt(H) entries: rescale, learnably
        width = encoder_dim + (bag_dim if buckets else 0)
        layers: list[nn.Module] = []
        if hidden_dim:
            layers += [nn.Linear(width, hidden_dim), nn.GELU()]
        layers += [nn.Dropout(dropout), nn.Linear(hidden_dim or width, num_classes)]
        self.head = nn.Sequential(*layers)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Logits: ``(indices, offsets, weights, embeddings)`` with a bag, ``(embeddings,)`` without.

        Returns:
            (N, C) logits.
        """
        features = self.norm(inputs[-1])  # (N, H)
        if self.bag is not None:
            indices, offsets, weights = inputs[:3]
            features = torch.cat([self.bag(indices, offsets, per_sample_weights=weights), features], dim=1)
        return self.head(features)


class EncoderTextClassifier:
    """Inference bundle of the ``pretrained`` and ``hybrid`` kinds: encoder spec (verified by digest when it is
    loaded), optional bag featuriser and idf, label set, text columns and the head."""

    def __init__(
        self,
        module: FeatureHeadClassifier,
        *,
        kind: str,
        encoder: EncoderSpec,
        hashing: HashingConfig | None,
        idf: np.ndarray | None,
        sublinear_tf: bool,
        text_columns: list[str],
        labels: list[int],
        label_names: list[str],
        model_config: dict[str, Any],
        store: EmbeddingStore | None = None,
    ) -> None:
        """Bundle a trained head with its preprocessing (see the attributes of the same names)."""
        self.module, self.kind, self.encoder = module, kind, encoder
        self.hashing, self.idf, self.sublinear_tf = hashing, idf, sublinear_tf
        self.featurizer = HashingFeaturizer(hashing) if hashing is not None else None
        self.text_columns, self.labels, self.label_names = list(text_columns), list(labels), list(label_names)
        self.model_config = dict(model_config)
        self.store = store or shared_memory_store()

    def inputs(self, frame: pd.DataFrame, *, progress: bool = False) -> RowInputs:
        """The head's inputs for ``frame``: embeddings (from the cache where present), bag weights for hybrid.

        Raises:
            KeyError: When a text column is missing.
        """
        dense = self.store.embed(self.encoder, frame_texts(frame, self.text_columns), progress=progress)
        return RowInputs(csr=self.bag_weights(frame), dense=dense)

    def bag_weights(self, frame: pd.DataFrame) -> sp.csr_matrix | None:
        """The hybrid kind's tf-idf bag weights of ``frame`` (None for the ``pretrained`` kind)."""
        if self.featurizer is None:
            return None
        fields = [frame[c].fillna("").astype(str).tolist() for c in self.text_columns]
        return tfidf_weights(self.featurizer.transform(fields), self.idf, sublinear=self.sublinear_tf)

    @torch.no_grad()
    def predict_proba(self, frame: pd.DataFrame, *, batch_size: int = 1024) -> np.ndarray:
        """(N, C) class probabilities; column k is the probability of ``labels[k]``."""
        return batched_probabilities(self.module, self.inputs(frame), batch_size, len(self.labels))

    def to_cpu(self) -> EncoderTextClassifier:
        """Move the head to CPU (in place) and return self."""
        self.module.to("cpu")
        return self

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description (everything but the weights; the encoder by path hint and digest)."""
        return {
            "format": FORMAT,
            "kind": self.kind,
            "encoder": self.encoder.as_dict(),
            "hashing": asdict(self.hashing) if self.hashing is not None else None,
            **common_metadata(self),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        """The head's weights (and idf) as a flat tensor dict, for safetensors (the encoder is referenced)."""
        return bundle_tensors(self.module, self.idf)

    @classmethod
    def from_parts(cls, metadata: dict[str, Any], tensors: dict[str, torch.Tensor]) -> EncoderTextClassifier:
        """Rebuild from :meth:`metadata` and :meth:`tensors` (the encoder loads, digest-checked, on first use).

        Raises:
            ValueError: On an unknown format.
        """
        if metadata.get("format") != FORMAT:
            raise ValueError(f"unknown model format {metadata.get('format')!r}")
        hashing = hashing_from_metadata(metadata["hashing"]) if metadata["hashing"] is not None else None
        module = restore_module(FeatureHeadClassifier(**metadata["model_config"]), tensors)
        return cls(
            module,
            kind=metadata["kind"],
            encoder=EncoderSpec(**metadata["encoder"]),
            hashing=hashing,
            idf=tensors["idf"].numpy() if metadata["has_idf"] else None,
            sublinear_tf=metadata["sublinear_tf"],
            text_columns=metadata["text_columns"],
            labels=metadata["labels"],
            label_names=metadata["label_names"],
            model_config=metadata["model_config"],
        )

    def __repr__(self) -> str:
        return f"EncoderTextClassifier({self.kind}, {json.dumps(self.model_config)}, columns={self.text_columns})"
