"""Fine-tuning the pretrained encoder: ``fine_tuning: adapters`` (LoRA through peft, or bottleneck adapters) and
``fine_tuning: full``, for the ``pretrained`` kind.

Notation: N texts, T tokens (at most ``max_tokens``), H the encoder width, r the adapter rank/width, C classes.
The module is encoder -> pooled, L2-normalised embedding -> the same head as the frozen kind
(:class:`~frugalml.models.feature_head.FeatureHeadClassifier`), trained end to end on token ids, so every step
re-runs the encoder (no feature cache). Under DP every trainable layer is clipped per sample by the ghost norms
of :mod:`frugalml.privacy` (LoRA's pairs and the adapters are Linear layers; full fine-tuning adds the word
embeddings and LayerNorms). Position and token-type embeddings stay frozen in ``full``: they are one table row per
position shared by the whole batch, so a per-sample gradient norm does not exist for them (0.9% of MiniLM).

The base encoder is the verified directory of ``train.model.pretrained`` (digest checked as it loads); a saved
adapter model stores the head and the adapter weights only (hundreds of KB), a fully fine-tuned one every encoder
weight (its file's sha256 is pinned in the model's metadata like any file).
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from frugalml.errors import CompressionError, PretrainedModelError
from frugalml.models.encoder import (
    EncoderSpec,
    file_sha256,
    frame_texts,
    load_encoder,
    resolve_encoder_dir,
    weights_file,
)
from frugalml.models.feature_head import EncoderTextClassifier, FeatureHeadClassifier, RowInputs, batched_probabilities

FORMAT = "frugalml.fine_tuned_encoder/1"
#: embeddings indexed by position (one row shared by the batch): frozen in full fine-tuning
SHARED_EMBEDDINGS = ("position_embeddings", "token_type_embeddings")
_ADAPTER_MARKS = (".lora_", ".adapter_")
#: what a Hugging Face encoder directory holds besides its weights (copied into a merged encoder's directory)
_DIRECTORY_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@dataclass(frozen=True)
class AdapterSpec:
    """Which adapters, where (``target_modules``: Linear layer names or name suffixes)."""

    type: str = "lora"  # lora | bottleneck
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("query", "value")

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {**asdict(self), "target_modules": list(self.target_modules)}


def _saved(name: str, fine_tuning: str) -> bool:
    """Whether a saved model keeps encoder weight ``name``: every one for full fine-tuning, else the adapters'."""
    return fine_tuning == "full" or any(mark in "." + name for mark in _ADAPTER_MARKS)


class BottleneckAdapter(nn.Module):
    """A Linear layer followed by a residual bottleneck: h = base(x); h + up(GELU(down(h))) (Houlsby-style).

    ``up`` starts at zero, so the adapted encoder starts as the pretrained one.
    """

    def __init__(self, base: nn.Linear, width: int, dropout: float = 0.0) -> None:
        """Wrap ``base`` (kept frozen) with a width-``width`` bottleneck."""
        super().__init__()
        self.base = base
        self.adapter_down = nn.Linear(base.out_features, width)
        self.adapter_up = nn.Linear(width, base.out_features)
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_out)."""
        hidden = self.base(x)
        return hidden + self.adapter_up(nn.functional.gelu(self.adapter_down(self.drop(hidden))))


def linear_layers(model: nn.Module) -> list[str]:
    """Names of the model's Linear layers."""
    return [name for name, layer in model.named_modules() if isinstance(layer, nn.Linear)]


def resolve_targets(model: nn.Module, targets: tuple[str, ...] | list[str]) -> list[str]:
    """The Linear layers that ``targets`` name (each a full name or a dotted suffix), every target matching one.

    Raises:
        PretrainedModelError: Naming the targets that match no Linear layer, and the suffixes there are.
    """
    names = linear_layers(model)
    matched = {target: [n for n in names if n == target or n.endswith("." + target)] for target in targets}
    missing = [target for target, found in matched.items() if not found]
    if missing:
        suffixes = sorted({".".join(n.split(".")[-2:]) for n in names} | {n.split(".")[-1] for n in names})
        raise PretrainedModelError(
            f"train.model.pretrained.adapter.target_modules {missing} match no Linear layer of the encoder; "
            f"its Linear layers are named (suffixes) {suffixes}"
        )
    return sorted({name for found in matched.values() for name in found})


def prepare_encoder(model: nn.Module, fine_tuning: str, adapter: AdapterSpec | None) -> nn.Module:
    """Make a private encoder copy trainable as ``fine_tuning`` says (in place; returns the model).

    ``adapters``: every pretrained weight frozen, adapters added on the target layers; ``full``: every weight
    trainable except the shared position/token-type embeddings. The unused pooler is dropped either way.

    Raises:
        PretrainedModelError: When adapter targets match nothing, or the mode is unknown.
    """
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # type: ignore[assignment]  # BertModel's [CLS] pooler: the classifier pools itself, it would only collect noise
    if fine_tuning == "full":
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(not any(part in name.split(".") for part in SHARED_EMBEDDINGS))
        return model
    if fine_tuning != "adapters" or adapter is None:
        raise PretrainedModelError(f"fine_tuning {fine_tuning!r} needs adapters or full (frozen has no encoder copy)")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    names = resolve_targets(model, adapter.target_modules)
    if adapter.type == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        config = LoraConfig(r=adapter.r, lora_alpha=adapter.alpha,  # type: ignore[arg-type]  # peft takes floats too
                            lora_dropout=adapter.dropout,
                            target_modules=names, bias="none")  # fmt: skip
        return inject_adapter_in_model(config, model)
    if adapter.type != "bottleneck":
        raise PretrainedModelError(f"unknown adapter type {adapter.type!r}; built: lora, bottleneck")
    for name in names:
        parent_name, _, attribute = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attribute, BottleneckAdapter(getattr(parent, attribute), adapter.r, adapter.dropout))
    return model


class EncoderClassifier(nn.Module):
    """Token ids -> encoder -> pooled, L2-normalised (N, H) -> the head -> (N, C) logits."""

    def __init__(self, encoder: nn.Module, head: FeatureHeadClassifier, pooling: str = "mean") -> None:
        """Put the (prepared) encoder and the head together."""
        super().__init__()
        self.encoder, self.head, self.pooling = encoder, head, pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(N, T) ids and mask -> (N, C) logits."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (N, T, H)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(nn.functional.normalize(pooled, dim=-1))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The encoder's trainable parameters (their own learning rate)."""
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        """The head's parameters."""
        return [p for p in self.head.parameters() if p.requires_grad]


def trainable_share(module: nn.Module) -> float:
    """Trainable parameters over all parameters of ``module``."""
    total = sum(p.numel() for p in module.parameters())
    return sum(p.numel() for p in module.parameters() if p.requires_grad) / max(total, 1)


@dataclass
class FineTuneConfig:
    """What a fine-tuned classifier records besides its weights."""

    fine_tuning: str
    adapter: AdapterSpec | None
    model_config: dict[str, Any] = field(default_factory=dict)  # the head's FeatureHeadClassifier arguments


def build_module(encoder: EncoderSpec, config: FineTuneConfig) -> EncoderClassifier:
    """A fresh module: a private float copy of the verified encoder, prepared, and a new head.

    Raises:
        PretrainedModelError: As :func:`frugalml.models.encoder.load_encoder` and :func:`prepare_encoder`.
    """
    from frugalml.models.encoder import float_encoder_model

    model = prepare_encoder(float_encoder_model(encoder), config.fine_tuning, config.adapter)
    return EncoderClassifier(model, FeatureHeadClassifier(**config.model_config), encoder.pooling)


class FineTunedTextClassifier:
    """Inference bundle of the ``pretrained`` kind with ``fine_tuning`` adapters or full: the module (encoder and
    head), the base encoder's spec (verified by digest when it loads), columns and labels."""

    kind = "pretrained"

    def __init__(
        self, module: EncoderClassifier, *, base_encoder: EncoderSpec, config: FineTuneConfig, text_columns: list[str],
        labels: list[int], label_names: list[str],
    ) -> None:  # fmt: skip
        """Bundle a trained module with its preprocessing (see the attributes of the same names)."""
        self.module, self.base_encoder, self.config = module, base_encoder, config
        self.fine_tuning, self.model_config = config.fine_tuning, config.model_config
        self.text_columns, self.labels, self.label_names = list(text_columns), list(labels), list(label_names)

    def inputs(self, frame: pd.DataFrame) -> RowInputs:
        """Token ids and masks of ``frame``'s texts (truncated to ``max_tokens``, padded to the longest).

        Raises:
            KeyError: When a text column is missing.
        """
        texts = frame_texts(frame, self.text_columns)
        if not texts:
            return RowInputs(tokens=np.zeros((0, 1), dtype=np.int64), mask=np.zeros((0, 1), dtype=np.int64))
        batch = load_encoder(self.base_encoder).tokenizer(texts, truncation=True, padding=True,
                                                          max_length=self.base_encoder.max_tokens,
                                                          padding_side="right", return_tensors="np")  # fmt: skip
        return RowInputs(tokens=batch["input_ids"].astype(np.int64), mask=batch["attention_mask"].astype(np.int64))

    @torch.no_grad()
    def predict_proba(self, frame: pd.DataFrame, *, batch_size: int = 1024) -> np.ndarray:
        """(N, C) class probabilities; column k is the probability of ``labels[k]`` (encoder batches of the
        spec's ``batch_size``)."""
        size = min(batch_size, self.base_encoder.batch_size)
        return batched_probabilities(self.module, self.inputs(frame), size, len(self.labels))

    def to_cpu(self) -> FineTunedTextClassifier:
        """Move the module to CPU (in place) and return self."""
        self.module.to("cpu")
        return self

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable description (everything but the weights; the base encoder by path hint and digest)."""
        return {
            "format": FORMAT,
            "kind": self.kind,
            "fine_tuning": self.fine_tuning,
            "adapter": self.config.adapter.as_dict() if self.config.adapter is not None else None,
            "base_encoder": self.base_encoder.as_dict(),
            "text_columns": self.text_columns,
            "labels": self.labels,
            "label_names": self.label_names,
            "model_config": self.model_config,
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        """The head (``head.*``) and the encoder weights that changed (``encoder.*``: the adapters, or all)."""
        tensors = {f"head.{k}": v.detach().cpu().contiguous() for k, v in self.module.head.state_dict().items()}
        for name, value in self.module.encoder.state_dict().items():
            if _saved(name, self.fine_tuning):
                tensors[f"encoder.{name}"] = value.detach().cpu().contiguous()
        return tensors

    @classmethod
    def from_parts(cls, metadata: dict[str, Any], tensors: dict[str, torch.Tensor]) -> FineTunedTextClassifier:
        """Rebuild from :meth:`metadata` and :meth:`tensors`: the base encoder is loaded (digest-checked), prepared
        the same way, and the saved weights replace its trained ones.

        Raises:
            ValueError: On an unknown format, or weights that do not fit the prepared encoder.
        """
        if metadata.get("format") != FORMAT:
            raise ValueError(f"unknown model format {metadata.get('format')!r}")
        adapter = metadata.get("adapter")
        spec = AdapterSpec(**{**adapter, "target_modules": tuple(adapter["target_modules"])}) if adapter else None
        config = FineTuneConfig(metadata["fine_tuning"], spec, metadata["model_config"])
        base = EncoderSpec(**metadata["base_encoder"])
        module = build_module(base, config)
        module.head.load_state_dict({k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")})
        saved = {k[len("encoder.") :]: v for k, v in tensors.items() if k.startswith("encoder.")}
        expected = module.encoder.state_dict()
        wanted = {name for name in expected if _saved(name, config.fine_tuning)}
        if set(saved) != wanted:  # e.g. metadata naming other adapter targets than the weights were trained with
            unexpected, missing = sorted(set(saved) - wanted)[:5], sorted(wanted - set(saved))[:5]
            raise ValueError(f"saved encoder weights do not fit the prepared encoder: unexpected {unexpected}, "
                             f"missing {missing}")  # fmt: skip
        module.encoder.load_state_dict({**expected, **saved})
        return cls(module.eval(), base_encoder=base, config=config, text_columns=metadata["text_columns"],
                   labels=metadata["labels"], label_names=metadata["label_names"])  # fmt: skip

    def __repr__(self) -> str:
        return f"FineTunedTextClassifier({self.fine_tuning}, {json.dumps(self.model_config)}, cols={self.text_columns})"


def mergeable(model: Any) -> str | None:
    """Why a fine-tuned classifier cannot become a frozen-encoder one (:func:`frozen_equivalent`), or None."""
    if getattr(model, "fine_tuning", "frozen") == "frozen":
        return "its encoder is not fine-tuned"
    adapter = model.config.adapter
    if model.fine_tuning == "adapters" and (adapter is None or adapter.type != "lora"):
        return ("bottleneck adapters add a GELU layer inside the encoder, which no plain encoder directory can hold "
                "(LoRA adapters and full fine-tuning merge into one)")  # fmt: skip
    if getattr(model, "tasks", None):
        return "its task heads sit beside the encoder's head, which the frozen kind's head does not hold yet"
    return None


def check_mergeable(model: Any, action: str, remedy: str) -> bool:
    """Whether ``model`` is fine-tuned (and mergeable: :func:`mergeable`); False for any other model.

    Raises:
        CompressionError: ``action`` of a fine-tuned model that cannot merge, naming why and ``remedy``.
    """
    if getattr(model, "fine_tuning", "frozen") == "frozen":
        return False
    why = mergeable(model)
    if why is not None:
        raise CompressionError(
            f"{action} this fine-tuned encoder classifier (fine_tuning: {model.fine_tuning}) is not built: {why}; "
            f"{remedy}"
        )
    return True


def merged_encoder(model: FineTunedTextClassifier) -> nn.Module:
    """A float copy of the fine-tuned encoder as a plain transformer: each LoRA pair added into its Linear layer
    (W + scale · B A, peft's own merge), the layer put back in its place; a fully fine-tuned encoder as it is.

    Raises:
        PretrainedModelError: When the encoder cannot merge (:func:`mergeable`).
    """
    why = mergeable(model)
    if why is not None:
        raise PretrainedModelError(f"the fine-tuned encoder cannot be merged into a plain one: {why}")
    encoder = copy.deepcopy(model.module.encoder).cpu().eval()
    if model.fine_tuning == "adapters":
        from peft.tuners.lora import LoraLayer

        for name, layer in list(encoder.named_modules()):
            if isinstance(layer, LoraLayer):
                layer.merge(safe_merge=True)  # raises on non-finite merged weights
                parent_name, _, attribute = name.rpartition(".")
                parent = encoder.get_submodule(parent_name) if parent_name else encoder
                setattr(parent, attribute, layer.get_base_layer())
    return encoder


def frozen_equivalent(model: FineTunedTextClassifier, directory: Path) -> EncoderTextClassifier:
    """The same classifier as the frozen ``pretrained`` kind: the merged encoder (:func:`merged_encoder`) written
    into ``directory`` as a Hugging Face encoder directory (the base directory's config and tokenizer, every tensor
    of the base weights file, the trained ones replaced: the unused pooler and the position ids keep the base's),
    pinned by its own sha256, and a copy of the head. Its probabilities are the fine-tuned model's (same pooling,
    same L2 norm, same head), so whatever reads a frozen encoder classifier (compression, ONNX export) reads it.

    Raises:
        PretrainedModelError: When the encoder cannot merge, or a merged tensor does not fit the base file's.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    merged = {name: value.detach().contiguous() for name, value in merged_encoder(model).state_dict().items()}
    base_dir = resolve_encoder_dir(model.base_encoder.path)
    load_encoder(model.base_encoder)  # verifies the base directory's pinned digest before it is read
    state: dict[str, torch.Tensor] = {}
    with safe_open(str(weights_file(base_dir)), "pt") as handle:
        for name in handle.keys():  # noqa: SIM118  # safe_open handles are not iterable
            base = handle.get_tensor(name)
            value = merged.pop(name, base)
            if value.shape != base.shape:
                raise PretrainedModelError(f"merged encoder tensor {name} is {tuple(value.shape)}, the base "
                                           f"file's {tuple(base.shape)}")  # fmt: skip
            state[name] = value
    if merged:
        raise PretrainedModelError(f"merged encoder tensors the base weights file lacks: {sorted(merged)[:5]}")
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):  # only the weights are digest-pinned: no stale tokenizer file may stay beside them
        raise PretrainedModelError(f"{directory} is not empty: a merged encoder is written into an empty folder")
    for name in _DIRECTORY_FILES:
        if (base_dir / name).is_file():
            shutil.copy2(base_dir / name, directory / name)
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    spec = replace(model.base_encoder, path=str(directory), sha256=file_sha256(directory / "model.safetensors"))
    return EncoderTextClassifier(
        copy.deepcopy(model.module.head).cpu().eval(), kind="pretrained", encoder=spec, hashing=None, idf=None,
        sublinear_tf=False, text_columns=model.text_columns, labels=model.labels, label_names=model.label_names,
        model_config=model.model_config,
    )  # fmt: skip
