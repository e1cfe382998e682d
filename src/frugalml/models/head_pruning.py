"""Structured pruning of the hidden units of MLP heads, with physical removal (``compress.prune_hidden``).

Notation: an MLP head is ``[LayerNorm,] Linear(in, h), GELU, Dropout, Linear(h, C)`` (``train.model.hidden_dim``
h > 0); a multi-task model has one per task, all of width h. The lowest-scoring ``share`` of the h hidden units is
removed from every head (the same count, so the saved ``hidden_dim`` fits them all): rows of the first Linear, columns
of the last. A unit's score, by ``importance`` (as for the encoder, :mod:`frugalml.models.pruning`):

- ``fluctuation``: Var(a_j) * ||W_out[:, j]||^2 over the calibration rows (the dev split), a_j the unit's activation;
  each removed unit's mean contribution is added to the output bias;
- ``l1`` / ``l2``: the norm of the unit's weights in both Linear layers (no data);
- ``taylor``: |sum over calibration rows of a_j * dL/da_j| with L the head's cross-entropy on the rows' labels (the
  main task's for the main head, each task's own labels for a task head; rows without a label add nothing, and a
  head no calibration row labels is refused).

The pruned bundle is rebuilt from its saved form by the kind's own loader with ``hidden_dim`` set to the units kept.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import nn

from frugalml.errors import CompressionError
from frugalml.models.feature_head import RowInputs
from frugalml.models.multitask import ALL_OUTPUTS, MultiHead, model_tasks, task_output, task_targets, with_tasks


def mlp_heads(module: nn.Module) -> dict[str, tuple[nn.Linear, nn.Linear]]:
    """Each MLP head of ``module`` by its state-dict prefix (``head``, or ``head.main`` and ``head.tasks.<name>``),
    as its (first, last) Linear layers; empty when the head is linear."""
    head = getattr(module, "head", None)
    named = [("head.main", head.main), *((f"head.tasks.{n}", h) for n, h in head.tasks.items())] if isinstance(
        head, MultiHead) else [("head", head)]  # fmt: skip
    found: dict[str, tuple[nn.Linear, nn.Linear]] = {}
    for prefix, part in named:
        layers = [layer for layer in part.children()] if isinstance(part, nn.Sequential) else []
        linears = [layer for layer in layers if isinstance(layer, nn.Linear)]
        if len(linears) == 2:  # noqa: PLR2004  # in -> h -> C
            found[prefix] = (linears[0], linears[1])
    return found


def _inputs(model: Any, frame: pd.DataFrame) -> tuple[torch.Tensor, ...]:
    """The module's positional inputs for ``frame`` (bag weights, embeddings: the kinds with MLP heads)."""
    if hasattr(model, "inputs"):
        return model.inputs(frame).all()  # type: ignore[no-any-return]
    return RowInputs(csr=model.featurize(frame)).all()


def _unit_terms(
    model: Any, heads: dict[str, tuple[nn.Linear, nn.Linear]], frame: pd.DataFrame, label_column: str | None,
    taylor: bool,
) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:  # fmt: skip
    """Per head: its last Linear's inputs on ``frame`` (n, h), and with ``taylor`` the (h,) sums of a_j * dL/da_j."""
    captured: dict[str, torch.Tensor] = {}

    def keep(prefix: str):  # noqa: ANN202
        def record(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            captured[prefix] = args[0]

        return record

    handles = [last.register_forward_pre_hook(keep(prefix)) for prefix, (_, last) in heads.items()]
    module = model.module
    was_training = module.training
    module.eval()
    try:
        grads: dict[str, torch.Tensor] = {}
        with torch.set_grad_enabled(taylor), task_output(module, ALL_OUTPUTS):
            logits = module(*_inputs(model, frame))
            if taylor:
                losses = _task_losses(model, logits, frame, label_column)
                for prefix, x in captured.items():  # each head by its own loss; no parameter gets a .grad
                    grads[prefix] = torch.autograd.grad(losses[prefix], x, retain_graph=True)[0]
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    return {prefix: (x.detach(), (x.detach() * grads[prefix]).sum(0) if taylor else None)
            for prefix, x in captured.items()}  # fmt: skip


def _task_losses(model: Any, logits: torch.Tensor, frame: pd.DataFrame, label_column: str | None) -> dict[str, Any]:
    """Each head's summed cross-entropy on ``frame`` (``head`` / ``head.main``: the main labels; ``head.tasks.<t>``:
    task t's labels), by the head's state-dict prefix.

    Raises:
        CompressionError: No label column, a main label outside the model's labels, or a head that no calibration
            row has a label for (its units would be kept in index order, not by score).
    """
    if label_column is None or label_column not in frame.columns:
        raise CompressionError(
            "taylor pruning of the head's hidden units needs labelled calibration rows (dev_labelled with its "
            "label column); use compress.prune_importance fluctuation / l1 / l2"
        )
    index = {label: k for k, label in enumerate(model.labels)}
    unknown = sorted({str(v) for v in frame[label_column] if v not in index})
    if unknown:
        raise CompressionError(f"calibration labels {unknown[:5]} are not among the model's labels {model.labels}")
    classes, tasks = len(model.labels), model_tasks(model)
    y = torch.tensor([index[v] for v in frame[label_column]], dtype=torch.long)
    losses = {"head.main" if tasks else "head": nn.functional.cross_entropy(logits[:, :classes].float(), y,
                                                                          reduction="sum")}  # fmt: skip
    start = classes
    for task in tasks:
        labels = torch.from_numpy(task_targets(frame, task, where="the calibration rows"))
        if not (labels >= 0).any():
            raise CompressionError(
                f"taylor pruning of task {task.name!r}'s head: no calibration row has a label for it (column "
                f"{task.column!r}); use compress.prune_importance fluctuation / l1 / l2, or calibrate on rows it labels"
            )
        part = logits[:, start : start + len(task.labels)].float()
        losses[f"head.tasks.{task.name}"] = nn.functional.cross_entropy(part, labels, ignore_index=-1, reduction="sum")
        start += len(task.labels)
    return losses


def prune_hidden_units(
    model: Any, *, share: float, importance: str, calibration: pd.DataFrame | None, label_column: str | None,
    load_base: Any,
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """A copy of ``model`` with ``share`` of its MLP heads' hidden units removed, and the report.

    Args:
        model: A bundle whose module has MLP heads (the ``ngram_bag``, ``pretrained`` and ``hybrid`` kinds with
            ``hidden_dim`` > 0); unchanged.
        share: In (0, 1): the share of the h units removed (at least one is kept).
        importance: ``fluctuation`` | ``l1`` | ``l2`` | ``taylor``.
        calibration: Labelled dev rows (``fluctuation``, ``taylor``), never test rows.
        label_column: Their label column (``taylor``).
        load_base: Rebuilds a bundle from (metadata, tensors) (:func:`frugalml.models.zoo.load_classifier`).

    Returns:
        The pruned bundle and ``{hidden_before, hidden_after, importance, heads, output_error}`` (the relative change
        of the heads' outputs on the calibration rows; null without them).

    Raises:
        CompressionError: No MLP head, a share outside (0, 1), or calibration rows missing where needed.
    """
    heads = mlp_heads(model.module)
    if not heads:
        raise CompressionError(
            "compress.prune_hidden removes hidden units of an MLP head: this model's head is linear "
            "(train.model.hidden_dim 0); set prune_hidden 0, or train with a hidden layer"
        )
    if not 0 < share < 1:
        raise CompressionError(f"the hidden-unit pruning ratio must be in [0, 1) (a share removed), got {share}")
    needs_rows = importance in ("fluctuation", "taylor")
    if needs_rows and (calibration is None or calibration.empty):
        raise CompressionError(
            f"{importance} pruning of the head's hidden units scores them on calibration rows: give dev rows "
            "(dev_labelled), or use prune_importance l1 / l2"
        )
    width = next(iter(heads.values()))[0].out_features
    keep = max(1, round(width * (1 - share)))
    terms = _unit_terms(model, heads, calibration, label_column, importance == "taylor") if needs_rows else {}
    tensors = dict(model.tensors())
    for name, layers in heads.items():
        tensors.update(_sliced_head(model.module, tensors, layers, terms.get(name, (None, None)),
                                    importance=importance, keep=keep))  # fmt: skip
    metadata = with_tasks(model.metadata(), model)
    metadata["model_config"] = {**metadata["model_config"], "hidden_dim": keep}
    pruned = load_base(metadata, tensors)
    if hasattr(model, "store"):
        pruned.store = model.store
    report: dict[str, Any] = {"hidden_before": width, "hidden_after": keep, "importance": importance,
                              "heads": sorted(heads), "output_error": None}  # fmt: skip
    if calibration is not None and not calibration.empty:
        report["output_error"] = _output_error(model, pruned, calibration)
    return pruned, report


def _sliced_head(
    module: nn.Module, tensors: dict[str, torch.Tensor], layers: tuple[nn.Linear, nn.Linear],
    terms: tuple[torch.Tensor | None, torch.Tensor | None], *, importance: str, keep: int,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """One head's tensors with its ``keep`` best hidden units (and, under fluctuation, the bias compensation)."""
    first, last = layers
    x, taylor = terms
    width = first.out_features
    if importance == "taylor":
        score = taylor.abs() if taylor is not None else torch.zeros(width)
    elif importance == "fluctuation":
        score = x.var(0, unbiased=False) * last.weight.detach().pow(2).sum(0)  # type: ignore[union-attr]
    else:
        power = 1 if importance == "l1" else 2
        score = first.weight.detach().abs().pow(power).sum(1) + last.weight.detach().abs().pow(power).sum(0)
    order = score.argsort(descending=True)
    kept, removed = order[:keep].sort().values, order[keep:].sort().values
    first_key, last_key = _key(tensors, first, module), _key(tensors, last, module)
    out = {f"{first_key}.weight": first.weight.detach()[kept].clone(),
           f"{last_key}.weight": last.weight.detach()[:, kept].clone()}  # fmt: skip
    if first.bias is not None:
        out[f"{first_key}.bias"] = first.bias.detach()[kept].clone()
    if last.bias is not None:
        bias = last.bias.detach().clone()
        if importance == "fluctuation" and x is not None and removed.numel():
            bias += last.weight.detach()[:, removed] @ x[:, removed].mean(0)  # the removed units' mean share
        out[f"{last_key}.bias"] = bias
    return out


def _key(tensors: dict[str, torch.Tensor], layer: nn.Linear, module: nn.Module) -> str:
    """The saved name (without ``.weight``) of ``layer``: ``module.<its name in the module>``.

    Raises:
        CompressionError: When the bundle does not save its module's state under ``module.`` (no such kind here).
    """
    name = next(n for n, m in module.named_modules() if m is layer)
    key = f"module.{name}"
    if f"{key}.weight" not in tensors:
        raise CompressionError(f"the model saves no tensor {key}.weight: hidden-unit pruning is not built for it")
    return key


def _output_error(model: Any, pruned: Any, rows: pd.DataFrame) -> float:
    """Relative change of every head's logits on ``rows`` (the pruned against the unpruned model)."""
    with torch.no_grad():
        outputs = []
        for bundle in (model, pruned):
            bundle.module.eval()
            with task_output(bundle.module, ALL_OUTPUTS):
                outputs.append(bundle.module(*_inputs(bundle, rows)).float())
    before, after = outputs
    return round(float((after - before).norm() / before.norm().clamp(min=1e-12)), 6)


__all__ = ["mlp_heads", "prune_hidden_units"]
