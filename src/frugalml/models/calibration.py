"""Calibration of an encoder's compression: how much each weight tensor's quantisation changes that layer's output
on real inputs, measured once on calibration texts (the dev split; never test rows).

One forward pass of the fp32 encoder records each ``nn.Linear``'s inputs X (up to ``max_rows`` token rows per
layer, sampled with a fixed seed) and how often each token id occurs. Then, per tensor and codec, with no further
pass through the model:

- a Linear weight W: ``||X Wq^T - X W^T|| / ||X W^T||`` (weight-only), and for int8 also the error of the real
  INT8 layer as it runs: dynamic (activations quantised per batch) or static (activations quantised with a range
  fixed from these inputs by an observer; that range is what the compressed layer keeps);
- the token-embedding table E: ``sqrt(sum_t n_t ||Eq[t] - E[t]||^2 / sum_t n_t ||E[t]||^2)`` (n_t: the id's count).

These relative errors rank the tensors for mixed precision (``int8_share``) and decide which INT8 layers run
INT8 and which decode to fp32 because their activations quantise badly (``max_dynamic_int8_error``). The static
ranges are fitted and checked on the same calibration rows, so their error is an in-sample figure; the stage's
dev-accuracy gate checks the whole model afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import torch

from frugalml.models.codecs import StaticInt8Linear, decode, encode, int8_linear, static_input_meta


@dataclass
class TensorSensitivity:
    """One tensor's relative output error per codec (weight-only), and as a dynamic INT8 layer."""

    name: str
    numel: int
    error: dict[str, float] = field(default_factory=dict)
    dynamic_int8_error: float | None = None  # the INT8 layer as it runs (dynamic or static activations)
    input_meta: dict[str, Any] = field(default_factory=dict)  # static: the calibrated input quantiser

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        dynamic = None if self.dynamic_int8_error is None else round(self.dynamic_int8_error, 6)
        out: dict[str, Any] = {
            "numel": self.numel,
            "error": {k: round(v, 6) for k, v in self.error.items()},
            "dynamic_int8_error": dynamic,
        }
        if self.input_meta:
            out["input_quantiser"] = dict(self.input_meta)
        return out


def _relative(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx - exact).norm() / exact.norm().clamp(min=1e-12))


@torch.inference_mode()
def record_inputs(
    model: torch.nn.Module, tokenizer: Any, texts: list[str], *, max_tokens: int, batch_size: int = 16,
    max_rows: int = 2048, seed: int = 0,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:  # fmt: skip
    """Each Linear's input rows (real tokens only, padding left out) and the token-id counts of ``texts``.

    Returns:
        Linear module name -> (n, in) float32 inputs; (vocab,) float32 counts.
    """
    inputs: dict[str, list[torch.Tensor]] = {}
    current_mask: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name: str):  # noqa: ANN202
        def record(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0]
            rows = x.reshape(-1, x.shape[-1])[current_mask["m"].reshape(-1)] if x.dim() == 3 else x
            inputs.setdefault(name, []).append(rows.detach().float())

        return record

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.startswith("pooler"):
            handles.append(module.register_forward_pre_hook(hook(name)))
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or 0)
    counts = torch.zeros(max(vocab, 1))
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], truncation=True, max_length=max_tokens,
                              padding=True, return_tensors="pt")  # fmt: skip
            current_mask["m"] = batch["attention_mask"].bool()
            ids = batch["input_ids"][current_mask["m"]]
            counts += torch.bincount(ids, minlength=counts.numel())[: counts.numel()].float()
            model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    generator = torch.Generator().manual_seed(seed)
    sampled = {}
    for name, parts in inputs.items():
        rows = torch.cat(parts)
        if rows.shape[0] > max_rows:
            rows = rows[torch.randperm(rows.shape[0], generator=generator)[:max_rows]]
        sampled[name] = rows
    return sampled, counts


def record_taylor(
    model: torch.nn.Module, tokenizer: Any, texts: list[str], loss: Any, *, max_tokens: int, pooling: str,
    names: list[str], batch_size: int = 16,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """First-order Taylor terms of the task loss for the input channels of the Linear layers ``names``: per layer,
    the (in,) sums over the calibration tokens of x_j * dL/dx_j (padding left out).

    Args:
        model: The encoder (its weights stay frozen: only activations get gradients).
        tokenizer: Its tokenizer.
        texts: Calibration texts (labelled rows of the dev split).
        loss: ``(embeddings, rows) -> summed loss`` of the classifier on the pooled, L2-normalised (n, H)
            embeddings of ``texts[rows]`` (a slice).
        max_tokens: Truncation.
        pooling: ``mean`` or ``cls``, as the classifier's encoder pools.
        names: Linear module names whose inputs are scored.
        batch_size: Texts per pass.

    Returns:
        ``<name>::taylor`` -> (in,) float32 signed sums.
    """
    from frugalml.models.pruning import TAYLOR_KEY

    captured: dict[str, torch.Tensor] = {}
    sums: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())

    def keep(name: str):  # noqa: ANN202
        def record(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            captured[name] = args[0]

        return record

    def track(_module: torch.nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
        return output.detach().requires_grad_(True)  # the graph starts at the embeddings (weights stay frozen)

    handles = [modules[name].register_forward_pre_hook(keep(name)) for name in names]
    embeddings = cast(torch.nn.Module, model.get_input_embeddings())  # type: ignore[operator]  # a HF model
    handles.append(embeddings.register_forward_hook(track))
    try:
        with torch.enable_grad():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(texts[start : start + batch_size], truncation=True, max_length=max_tokens,
                                  padding=True, return_tensors="pt")  # fmt: skip
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = hidden[:, 0] if pooling == "cls" else (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                value = loss(torch.nn.functional.normalize(pooled, dim=-1), slice(start, start + len(pooled)))
                # gradients of the activations only: no parameter (the head's, the encoder's) gets a .grad
                grads = torch.autograd.grad(value, list(captured.values()), allow_unused=True)
                for (name, x), found in zip(captured.items(), grads, strict=True):
                    grad = found if found is not None else torch.zeros_like(x)
                    term = (x.detach() * grad * mask).sum((0, 1)) if x.dim() == 3 else (x.detach() * grad).sum(0)
                    sums[name] = sums[name] + term.float() if name in sums else term.float()
                captured.clear()
    finally:
        for handle in handles:
            handle.remove()
    return {f"{name}{TAYLOR_KEY}": value for name, value in sums.items()}


def importance(
    model: torch.nn.Module, inputs: dict[str, torch.Tensor], counts: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-entry k-means weights from calibration: a Linear weight's column j by the mean squared input x_j (its
    share of the output's error), the token table's row t by 1 + its count (seen tokens first, none ignored).

    Returns:
        Weight tensor name -> a tensor broadcastable to the weight.
    """
    out: dict[str, torch.Tensor] = {}
    for name, x in inputs.items():
        second = x.pow(2).mean(0)  # (in,)
        out[f"{name}.weight"] = (second + 1e-3 * second.mean().clamp(min=1e-12))[None, :]
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and module.weight.shape[0] == counts.numel():
            out[f"{name}.weight"] = (1.0 + counts)[:, None]
    return out


def encoder_sensitivity(
    model: torch.nn.Module, tokenizer: Any, texts: list[str], *, codecs: tuple[str, ...], max_tokens: int,
    encode_settings: dict[str, Any], max_rows: int = 2048,
    recorded: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None,
    weights: dict[str, torch.Tensor] | None = None, activations: str = "dynamic", activation_observer: str = "minmax",
) -> dict[str, TensorSensitivity]:  # fmt: skip
    """Relative output error of every Linear weight and of the token-embedding table under each of ``codecs``.

    Args:
        model: The fp32 encoder (a Hugging Face ``BertModel``-like module).
        tokenizer: Its tokenizer.
        texts: Calibration texts.
        codecs: The codecs to measure (``int8`` also measures the dynamic INT8 layer).
        max_tokens: Truncation, as the encoder embeds.
        encode_settings: Keyword arguments of :func:`~frugalml.models.codecs.encode` (observer, grouping).
        max_rows: Token rows kept per layer.
        recorded: :func:`record_inputs`' result, when already measured.
        weights: :func:`importance`, for ``int4-kmeans`` (activation-aware centroids).
        activations: How the INT8 layers quantise their inputs: ``dynamic`` (per batch) or ``static`` (a range
            fitted on the recorded inputs by ``activation_observer``, kept in each entry's ``input_meta``).
        activation_observer: ``minmax`` | ``percentile`` | ``mse`` (:func:`~frugalml.models.codecs.observe_range`).

    Returns:
        Weight tensor name (as in ``model.state_dict()``) -> its sensitivity.
    """
    inputs, counts = recorded or record_inputs(model, tokenizer, texts, max_tokens=max_tokens, max_rows=max_rows)
    weights = weights or {}
    out: dict[str, TensorSensitivity] = {}
    modules = dict(model.named_modules())
    for name, x in inputs.items():
        layer = modules[name]
        weight = layer.weight.detach().float()
        exact = x @ weight.T
        entry = TensorSensitivity(f"{name}.weight", weight.numel())
        for codec in codecs:
            code = encode(weight, codec, name=entry.name, importance=_kmeans_weights(codec, weights, entry.name),
                          **encode_settings)  # fmt: skip
            entry.error[codec] = _relative(x @ decode(code).T, exact)
            if codec == "int8" and code.meta.get("rows_per_group", 1) == 1:
                bias = layer.bias.detach().float() if layer.bias is not None else None
                if activations == "static":
                    entry.input_meta = static_input_meta(x, activation_observer)
                    code.meta.update(entry.input_meta)
                    running = StaticInt8Linear(code, bias)(x)
                else:
                    running = int8_linear(code, bias)(x)
                entry.dynamic_int8_error = _relative(running - (bias if bias is not None else 0), exact)
        out[entry.name] = entry
    table_name = next((n for n, m in modules.items() if isinstance(m, torch.nn.Embedding)
                       and m.weight.shape[0] == counts.numel()), None)  # fmt: skip
    if table_name is not None and counts.sum() > 0:
        table = modules[table_name].weight.detach().float()
        used = counts > 0
        rows, seen = table[used], counts[used][:, None]
        entry = TensorSensitivity(f"{table_name}.weight", table.numel())
        for codec in codecs:
            rule = _kmeans_weights(codec, weights, entry.name)
            approx = decode(encode(table, codec, name=entry.name, importance=rule, **encode_settings))[used]
            entry.error[codec] = float(((seen * (approx - rows) ** 2).sum() / (seen * rows**2).sum()).sqrt())
        out[entry.name] = entry
    return out


def _kmeans_weights(codec: str, weights: dict[str, torch.Tensor], name: str) -> torch.Tensor | None:
    return weights.get(name) if codec == "int4-kmeans" else None


def choose_int8(sensitivity: dict[str, TensorSensitivity], *, share: float, total_weights: int) -> list[str]:
    """The tensors that stay int8 under int4-kmeans: the most sensitive first (largest int4 error), while their
    weights fit in ``share`` of ``total_weights``."""
    chosen, used = [], 0
    ranked = sorted(
        (s for s in sensitivity.values() if "int4-kmeans" in s.error), key=lambda s: -s.error["int4-kmeans"]
    )
    for entry in ranked:
        if used + entry.numel <= share * total_weights:
            chosen.append(entry.name)
            used += entry.numel
    return chosen
