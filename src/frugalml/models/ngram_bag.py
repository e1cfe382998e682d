"""Bag-of-hashed-n-grams text classifier and its inference bundle.

Notation: B hash buckets, d embedding width, h hidden width (0 = none), C classes, N documents,
nnz the non-zero features of a batch. The module is DP-friendly: EmbeddingBag + Linear (+ LayerNorm),
no BatchNorm, and its per-sample gradients are well defined.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from frugalml.models.hashing import HashingConfig, HashingFeaturizer


class NgramBagClassifier(nn.Module):
    """EmbeddingBag(B, d, sum) over tf-idf weighted buckets -> [LayerNorm, Linear(d, h), GELU] -> Linear -> C."""

    def __init__(
        self, buckets: int, embedding_dim: int, num_classes: int, *, hidden_dim: int = 0, dropout: float = 0.0
    ) -> None:
        """Build the layers.

        Args:
            buckets: Hash buckets B.
            embedding_dim: Width d of the bag embedding.
            num_classes: C.
            hidden_dim: Width of an optional hidden layer (0 = linear head).
            dropout: Dropout before the output layer.
        """
        super().__init__()
        self.embedding = nn.EmbeddingBag(buckets, embedding_dim, mode="sum")
        # inputs come from csr_to_bags of a summed CSR: no bucket appears twice in a bag (ghost norms use it)
        self.embedding.frugalml_unique_per_bag = True  # type: ignore[assignment]  # a marker attribute
        nn.init.normal_(self.embedding.weight, std=0.02)
        layers: list[nn.Module] = []
        if hidden_dim:
            layers += [nn.LayerNorm(embedding_dim), nn.Linear(embedding_dim, hidden_dim), nn.GELU()]
        layers += [nn.Dropout(dropout), nn.Linear(hidden_dim or embedding_dim, num_classes)]
        self.head = nn.Sequential(*layers)

    def forward(self, indices: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of bags.

        Args:
            indices: (nnz,) int64 bucket ids of all documents, concatenated.
            offsets: (N,) int64 start of each document in ``indices``.
            weights: (nnz,) float feature weights (tf-idf, L2-normalised per document).

        Returns:
            (N, C) logits.
        """
        bag = self.embedding(indices, offsets, per_sample_weights=weights)  # (N, d)
        return self.head(bag)  # (N, C)


def tfidf_weights(counts: sp.csr_matrix, idf: np.ndarray | None, *, sublinear: bool) -> sp.csr_matrix:
    """Turn hashed counts into L2-normalised tf-idf weights.

    Args:
        counts: (N, B) n-gram counts.
        idf: (B,) inverse document frequencies, or ``None`` for plain tf.
        sublinear: Use 1 + log(tf) instead of tf.

    Returns:
        (N, B) CSR of float32 weights; empty rows stay empty.
    """
    weights = counts.astype(np.float32, copy=True)
    if sublinear:
        np.log(weights.data, out=weights.data)
        weights.data += 1.0
    if idf is not None:
        weights.data *= idf[weights.indices]
    row_nnz = np.diff(weights.indptr)
    row_of_value = np.repeat(np.arange(weights.shape[0]), row_nnz)
    norms = np.sqrt(np.bincount(row_of_value, weights=weights.data.astype(np.float64) ** 2, minlength=weights.shape[0]))
    norms[norms == 0] = 1.0
    weights.data /= norms[row_of_value].astype(np.float32)
    return weights


def fit_idf(counts: sp.csr_matrix) -> np.ndarray:
    """Smoothed inverse document frequency per bucket, from training documents only.

    Args:
        counts: (N, B) training counts.

    Returns:
        (B,) float32 ``log((1 + N) / (1 + df)) + 1``.
    """
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    return (np.log((1.0 + counts.shape[0]) / (1.0 + df)) + 1.0).astype(np.float32)


def csr_to_bags(weights: sp.csr_matrix, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """CSR rows -> EmbeddingBag inputs.

    Args:
        weights: (N, B) weights.
        device: Target device.

    Returns:
        ``indices`` (nnz,), ``offsets`` (N,), ``weights`` (nnz,) tensors.
    """
    indices = torch.from_numpy(weights.indices.astype(np.int64))
    offsets = torch.from_numpy(weights.indptr[:-1].astype(np.int64))
    values = torch.from_numpy(weights.data.astype(np.float32))
    return indices.to(device), offsets.to(device), values.to(device)


def bundle_tensors(module: nn.Module, idf: np.ndarray | None) -> dict[str, torch.Tensor]:
    """A model bundle's weights (``module.<name>``) and idf (``idf``) as a flat CPU tensor dict, for safetensors."""
    tensors = {f"module.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    if idf is not None:
        tensors["idf"] = torch.from_numpy(idf)
    return tensors


def restore_module(module: nn.Module, tensors: dict[str, torch.Tensor]) -> Any:
    """Load the ``module.<name>`` entries of :func:`bundle_tensors` into ``module``; return it in eval mode."""
    module.load_state_dict({k[len("module.") :]: v for k, v in tensors.items() if k.startswith("module.")})
    return module.eval()


def common_metadata(bundle: Any) -> dict[str, Any]:
    """The metadata every text-model bundle writes: tf scaling, idf presence, columns, labels, module config."""
    return {
        "sublinear_tf": bundle.sublinear_tf,
        "has_idf": bundle.idf is not None,
        "text_columns": bundle.text_columns,
        "labels": bundle.labels,
        "label_names": bundle.label_names,
        "model_config": bundle.model_config,
    }


def hashing_from_metadata(fields: dict[str, Any]) -> HashingConfig:
    """The featuriser config from its JSON form (lists back to tuples)."""
    return HashingConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})  # type: ignore[arg-type]  # JSON


class TextClassifier:
    """Everything inference needs: featuriser config, idf, label set, text columns and the torch module."""

    def __init__(
        self,
        module: NgramBagClassifier,
        *,
        hashing: HashingConfig,
        idf: np.ndarray | None,
        sublinear_tf: bool,
        text_columns: list[str],
        labels: list[int],
        label_names: list[str],
        model_config: dict[str, Any],
    ) -> None:
        """Bundle a trained module with its preprocessing.

        Args:
            module: The trained network.
            hashing: Featuriser config used in training.
            idf: (B,) idf from the training set, or ``None``.
            sublinear_tf: Whether tf was log-scaled.
            text_columns: Input columns, in order.
            labels: Class values, index = class id.
            label_names: Human names of the classes.
            model_config: Constructor arguments of ``module`` (to rebuild it when loading).
        """
        self.module = module
        self.hashing = hashing
        self.featurizer = HashingFeaturizer(hashing)
        self.idf = idf
        self.sublinear_tf = sublinear_tf
        self.text_columns = list(text_columns)
        self.labels = list(labels)
        self.label_names = list(label_names)
        self.model_config = dict(model_config)

    def featurize(self, frame: pd.DataFrame) -> sp.csr_matrix:
        """Weighted features of a frame holding :attr:`text_columns`.

        Args:
            frame: Rows to featurise.

        Returns:
            (N, B) tf-idf weights.
        """
        missing = [c for c in self.text_columns if c not in frame.columns]
        if missing:
            raise KeyError(f"input lacks text column(s) {missing}; expected {self.text_columns}")
        fields = [frame[c].fillna("").astype(str).tolist() for c in self.text_columns]
        return tfidf_weights(self.featurizer.transform(fields), self.idf, sublinear=self.sublinear_tf)

    @torch.no_grad()
    def predict_proba(self, frame: pd.DataFrame, *, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities.

        Args:
            frame: Rows with :attr:`text_columns`.
            batch_size: Documents per forward pass.

        Returns:
            (N, C) float array; column k is the probability of ``labels[k]``.
        """
        self.module.eval()
        device = next(self.module.parameters()).device
        weights = self.featurize(frame)
        out = []
        for start in range(0, weights.shape[0], batch_size):
            batch = csr_to_bags(weights[start : start + batch_size], device)
            out.append(torch.softmax(self.module(*batch).float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), dtype=np.float32)

    def to_cpu(self) -> TextClassifier:
        """Move the module to CPU (in place) and return self."""
        self.module.to("cpu")
        return self

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description (everything but the weights)."""
        return {
            "format": "frugalml.ngram_bag/1",
            "hashing": asdict(self.hashing),
            **common_metadata(self),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        """Weights (and idf) as a flat tensor dict, for safetensors."""
        return bundle_tensors(self.module, self.idf)

    @classmethod
    def from_parts(cls, metadata: dict[str, Any], tensors: dict[str, torch.Tensor]) -> TextClassifier:
        """Rebuild from :meth:`metadata` and :meth:`tensors`.

        Args:
            metadata: As written by :meth:`metadata`.
            tensors: As written by :meth:`tensors`.

        Returns:
            The classifier, in eval mode on CPU.

        Raises:
            ValueError: On an unknown format.
        """
        if metadata.get("format") != "frugalml.ngram_bag/1":
            raise ValueError(f"unknown model format {metadata.get('format')!r}")
        hashing = hashing_from_metadata(metadata["hashing"])
        module = restore_module(NgramBagClassifier(**metadata["model_config"]), tensors)
        idf = tensors["idf"].numpy() if metadata["has_idf"] else None
        return cls(
            module,
            hashing=hashing,
            idf=idf,
            sublinear_tf=metadata["sublinear_tf"],
            text_columns=metadata["text_columns"],
            labels=metadata["labels"],
            label_names=metadata["label_names"],
            model_config=metadata["model_config"],
        )

    def __repr__(self) -> str:
        return f"TextClassifier({json.dumps(self.metadata()['model_config'])}, columns={self.text_columns})"
