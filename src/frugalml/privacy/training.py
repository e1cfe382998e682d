"""DP-SGD training bookkeeping: Poisson batches, calibrated noise, ghost-norm clipping, the accountant.

Notation: N training rows, q = batch_size / N the Poisson sampling rate, sigma the noise multiplier, C the
clipping norm. The trainer (:func:`frugalml.nodes.train.train_text_classifier`) drives :class:`PrivateTraining`
one logical batch at a time.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from frugalml.errors import ModelError, ParameterError
from frugalml.privacy.signal import calibrated_noise_multiplier
from frugalml.privacy.step import dp_sgd_step

if TYPE_CHECKING:
    from frugalml.params import PrivacyParams

logger = logging.getLogger("frugalml.nodes.train")  # the trainer's logger, as before the move


def check_dp_compatible(module: torch.nn.Module) -> None:
    """Refuse layers that mix samples in a batch (BatchNorm), which break per-sample gradients.

    Args:
        module: The network.

    Raises:
        ModelError: Naming the offending layer.
    """
    for name, layer in module.named_modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            raise ModelError(f"layer '{name}' is {type(layer).__name__}: not DP-compatible, use LayerNorm")


def batch_too_large(batch_size: int, rows: int, what: str) -> str:
    """The message refusing a DP batch larger than the training rows (with the value to set)."""
    from frugalml.params import TrainParams

    auto = TrainParams().resolve_batch_size(rows)  # what `auto` gives under DP
    return (
        f"train.batch_size {batch_size} is larger than {what} (under DP it is the expected Poisson batch, "
        f"sampling rate batch_size / N <= 1): set --params train.batch_size=auto ({auto} here: a quarter of N on "
        f"small tables) or a number up to {rows}"
    )


class PrivateTraining:
    """DP-SGD bookkeeping: Poisson batches, calibrated noise, ghost-norm clipping, the accountant.

    The noise multiplier is calibrated (Opacus accountant ``prv`` or ``rdp``) so that ``epochs`` passes of
    Poisson sampling at rate q = batch_size / N reach ``target_epsilon`` at ``target_delta``; the epsilon
    actually spent (fewer steps when early stopping stops) is what the report gives.
    """

    def __init__(
        self, config: PrivacyParams, *, rows: int, batch_size: int, epochs: int, seed: int,
        physical_batch_size: int | None = None,
    ) -> None:  # fmt: skip
        """Validate against the data and calibrate the noise.

        Args:
            config: ``params:train.privacy``.
            rows: N, training rows.
            batch_size: Expected (Poisson) batch size.
            epochs: Planned epochs.
            seed: Seeds the noise unless ``secure_mode``.
            physical_batch_size: Rows per forward pass (default ``config.max_physical_batch_size``).

        Raises:
            ParameterError: delta >= 1/N, or a batch larger than the dataset.
        """
        from opacus.accountants import create_accountant

        if batch_size > rows:
            raise ParameterError(batch_too_large(batch_size, rows, f"the {rows} training rows"))
        self.delta = config.target_delta if config.target_delta is not None else 1.0 / (10 * rows)
        if self.delta >= 1.0 / rows:
            raise ParameterError(
                f"train.privacy.target_delta {self.delta:g} must be below 1/N = {1.0 / rows:g} (N = {rows} rows)"
            )
        if not config.secure_mode:
            logger.warning("DP noise comes from a seeded PRNG (secure_mode: false); use secure_mode for production")
        self.config, self.rows, self.sample_rate = config, rows, batch_size / rows
        self.batch_size, self.expected_batch_size = batch_size, float(batch_size)
        self.noise_multiplier = calibrated_noise_multiplier(
            target_epsilon=config.target_epsilon, delta=self.delta, rows=rows, batch_size=batch_size, epochs=epochs,
            accountant=config.accountant,
        )  # fmt: skip
        self.accountant = create_accountant(mechanism=config.accountant)
        self.generator = torch.Generator()
        self.generator.manual_seed(int.from_bytes(os.urandom(8), "little") if config.secure_mode else seed)
        self.steps, self._clipped, self._batches, self.physical_steps = 0, 0.0, 0, 0
        self.physical_batch_size = physical_batch_size or config.max_physical_batch_size

    def batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        """One epoch of Poisson-sampled batches (each row in each batch with probability q).

        Args:
            rng: The sampling generator.

        Returns:
            round(1/q) index arrays (possibly empty).
        """
        return [np.flatnonzero(rng.random(self.rows) < self.sample_rate) for _ in range(round(1 / self.sample_rate))]

    def step(
        self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, forward: Any, batch: np.ndarray,
        targets: Any,
        *,
        loss: Any = None,
    ) -> dict:  # fmt: skip
        """One clipped, noised step, accounted; in physical chunks when the batch is larger than
        ``max_physical_batch_size`` (virtual steps: one noisy update per logical batch).

        Args:
            module: The model.
            optimizer: Its optimiser.
            forward: Row indices -> logits of those rows.
            batch: Row indices of the (Poisson) batch.
            targets: Targets of every training row (indexed by ``batch``).
            loss: ``(logits, targets) -> (N,)`` per-sample losses (default: cross-entropy; a multi-task model's
                weighted sum over its heads, so each row's whole gradient is clipped).

        Returns:
            The step's loss and clipped share.
        """
        size = self.physical_batch_size or max(len(batch), 1)
        chunks = [batch[start : start + size] for start in range(0, len(batch), size)] or [batch]
        parts = [(functools.partial(forward, rows), targets[rows]) for rows in chunks]
        stats = dp_sgd_step(module, optimizer, parts[0][0], parts[0][1], max_grad_norm=self.config.max_grad_norm,
                            noise_multiplier=self.noise_multiplier, expected_batch_size=self.expected_batch_size,
                            generator=self.generator, microbatches=parts, loss=loss)  # fmt: skip
        self.physical_steps += len(chunks)
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        self.steps += 1
        self._clipped += stats["clipped_share"]
        self._batches += 1
        return stats

    def epsilon(self) -> float:
        """Epsilon spent so far at the configured delta."""
        return float(self.accountant.get_epsilon(delta=self.delta)) if self.steps else 0.0

    def epoch_metrics(self) -> dict[str, float]:
        """Epsilon spent and the share of clipped samples in the epoch that just ended."""
        clipped = self._clipped / max(self._batches, 1)
        self._clipped, self._batches = 0.0, 0
        return {"epsilon": self.epsilon(), "clipped_share": clipped}

    def report(self) -> dict[str, Any]:
        """The privacy report of the run (``clipping`` keeps its historical wording)."""
        return {
            "enabled": True,
            "epsilon": self.epsilon(),
            "target_epsilon": self.config.target_epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.config.max_grad_norm,
            "batch_size": self.batch_size,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "physical_steps": self.physical_steps,
            "max_physical_batch_size": self.physical_batch_size,
            "accountant": self.config.accountant,
            "secure_mode": self.config.secure_mode,
            "clipping": "per-sample, ghost norms (frugalml.nodes.privacy)",
        }
