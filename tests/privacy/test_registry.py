"""Per-layer norm rule registrations (frugalml.privacy.register_norm_sampler)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from frugalml.errors import ModelError, ParameterError
from frugalml.privacy import NORM_SAMPLERS, GhostNorms, register_norm_sampler, supported


class Scale(nn.Module):
    """y = x * scale, a (d,) parameter: sample i's gradient is g_i * x_i."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.randn(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class MyLinear(nn.Linear):
    """A subclass with no rule of its own."""


def _explicit_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample gradient norms by a per-sample loop."""
    norms = []
    for i in range(len(x)):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1], reduction="sum").backward()
        norms.append(torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters())))
    return torch.stack(norms)


def _ghost_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with GhostNorms(model) as ghost:
        nn.functional.cross_entropy(model(x), y, reduction="sum").backward()
    return ghost.norms()


@pytest.fixture
def scale_rule():
    @register_norm_sampler(Scale)
    def _scale_norm(layer: nn.Module, saved: tuple, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = saved
        return (grad_output.float() * x.float()).pow(2).sum(1)

    yield _scale_norm
    NORM_SAMPLERS.remove(Scale)


def test_unregistered_trainable_layer_is_refused() -> None:
    with pytest.raises(ModelError, match=r"layer '0' \(Scale\).*register_norm_sampler"):
        GhostNorms(nn.Sequential(Scale(3), nn.Linear(3, 2)))


def test_registered_custom_layer_matches_per_sample_gradients(scale_rule) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Scale(5), nn.Linear(5, 3))
    x, y = torch.randn(6, 5), torch.randint(0, 3, (6,))
    assert Scale in supported()
    torch.testing.assert_close(_ghost_norms(model, x, y), _explicit_norms(model, x, y), rtol=1e-4, atol=1e-5)


def test_linear_subclass_uses_linear_rule_via_mro() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(MyLinear(4, 6), nn.Tanh(), MyLinear(6, 3))
    x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    torch.testing.assert_close(_ghost_norms(model, x, y), _explicit_norms(model, x, y), rtol=1e-4, atol=1e-5)


def test_duplicate_registration_is_refused_and_replace_replaces(scale_rule) -> None:
    def other(layer: nn.Module, saved: tuple, grad_output: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(grad_output))

    with pytest.raises(ParameterError, match="already registered"):
        register_norm_sampler(Scale)(other)
    assert NORM_SAMPLERS.lookup(Scale).norm is scale_rule
    register_norm_sampler(Scale, replace=True)(other)
    assert NORM_SAMPLERS.lookup(Scale).norm is other


def test_builtin_linear_cannot_be_registered_twice() -> None:
    with pytest.raises(ParameterError):
        register_norm_sampler(nn.Linear)(lambda layer, saved, g: g)


def test_embedding_bag_mode_max_is_refused() -> None:
    with pytest.raises(ModelError, match="mode 'max'"):
        GhostNorms(nn.EmbeddingBag(10, 4, mode="max"))


def test_shim_exports() -> None:
    from frugalml.nodes import privacy as shim
    from frugalml.nodes.train import PrivateTraining, check_dp_compatible  # noqa: F401

    assert shim.GhostNorms is GhostNorms
    assert set(shim.SUPPORTED) >= {nn.Linear, nn.EmbeddingBag, nn.Embedding, nn.LayerNorm}
