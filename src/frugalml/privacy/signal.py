"""Can DP-SGD learn here? The noise the accountant calibrates, against the most signal the gradients can carry.

Notation: N training rows, B the expected (Poisson) batch, q = B / N, T = epochs * round(1/q) noisy steps,
sigma the noise multiplier the accountant calibrates for (epsilon, delta, q, T), C the clipping norm, d the
model's trainable parameters.

Each step adds Gaussian noise of std sigma * C to every one of the d coordinates of the summed clipped
gradient, so the noise has norm about sigma * C * sqrt(d); the signal, the sum of B per-sample gradients
clipped to C, has norm at most B * C (every gradient aligned). Over T steps the signal adds up linearly and
the noise as sqrt(T), so

    signal_to_noise = sqrt(T) * B / (sigma * sqrt(d))

is an *optimistic* bound (real per-sample gradients are far from aligned): below about 1 even perfectly
aligned gradients are lost in the noise, and the model learns next to nothing. It depends on the data only
through N (which the accountant uses anyway), so it is computed before any work. The thresholds frugalml
uses (``train.privacy.min_signal_to_noise`` / ``refuse_signal_to_noise``) are documented in docs/privacy.md
with the measurements they come from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SignalToNoise:
    """The estimate and its inputs (for the message and the run's parameters)."""

    rows: int
    batch_size: int
    steps: int
    noise_multiplier: float
    trainable: int
    ratio: float

    def explain(self) -> str:
        """The numbers in one sentence."""
        return (
            f"DP-SGD signal-to-noise bound {self.ratio:.2f} = sqrt({self.steps} steps) x batch {self.batch_size} / "
            f"(noise multiplier {self.noise_multiplier:.2f} x sqrt({self.trainable:,} trainable parameters)), "
            f"for N = {self.rows} training rows"
        )


def noisy_steps(rows: int, batch_size: int, epochs: int) -> int:
    """T = epochs * round(1/q), the steps the accountant is calibrated for (as :class:`PrivateTraining` runs)."""
    return epochs * round(1 / (batch_size / rows))  # 1 / q, as the sampler computes it


def calibrated_noise_multiplier(
    *, target_epsilon: float, delta: float, rows: int, batch_size: int, epochs: int, accountant: str
) -> float:
    """sigma such that ``epochs`` passes at rate q = B / N reach ``target_epsilon`` at ``delta`` (Opacus)."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=batch_size / rows,
            steps=noisy_steps(rows, batch_size, epochs),
            accountant=accountant,
        )
    )


def signal_to_noise(
    *, rows: int, batch_size: int, epochs: int, noise_multiplier: float, trainable: int
) -> SignalToNoise:
    """The optimistic signal-to-noise bound of a DP-SGD training (see the module docstring)."""
    steps = noisy_steps(rows, batch_size, epochs)
    ratio = math.sqrt(steps) * batch_size / (noise_multiplier * math.sqrt(max(trainable, 1)))
    return SignalToNoise(rows, batch_size, steps, noise_multiplier, trainable, ratio)
