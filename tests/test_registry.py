"""The named registries every stage uses, and the figures -> metrics helper."""

import pytest
from torch import nn

from frugalml.errors import ParameterError
from frugalml.registry import Registry, TypeRegistry
from frugalml.tracking import as_history, as_metrics


def test_a_duplicate_name_is_refused_unless_replaced():
    registry: Registry[int] = Registry("fold model", key="clean.models")
    registry.add("a", 1)
    with pytest.raises(ParameterError, match="'a' is already registered"):
        registry.add("a", 2)
    registry.add("a", 3, replace=True)
    assert registry.get("a") == 3 and registry.names() == ["a"]


def test_an_unknown_name_lists_the_registered_ones_and_the_parameter():
    registry: Registry[int] = Registry("fold model", key="clean.models")
    registry.add("naive_bayes", 1)
    with pytest.raises(
        ParameterError, match=r"clean.models: unknown fold model 'bayes'; registered: \['naive_bayes'\]"
    ):
        registry.get("bayes")
    with pytest.raises(ParameterError, match="non-empty name"):
        registry.add(" ", 1)


def test_the_decorator_uses_the_function_name_and_the_loader_runs_once():
    calls = []
    registry: Registry = Registry("rule", loader=lambda: calls.append(1))

    @registry.register()
    def shout(x):
        return x

    assert "shout" in registry and registry.get("shout") is shout and len(registry) == 1 and calls == [1]


def test_type_rules_follow_the_class_hierarchy_and_refuse_duplicates():
    rules: TypeRegistry[str] = TypeRegistry("norm sampler")
    rules.register(nn.Linear)("linear rule")

    class Scaled(nn.Linear):
        pass

    assert rules.lookup(Scaled) == "linear rule" and rules.lookup(nn.Conv1d) is None
    with pytest.raises(ParameterError, match="torch.nn.modules.linear.Linear is already registered"):
        rules.register(nn.Linear)("other")
    rules.register(Scaled)("scaled rule")
    assert rules.lookup(Scaled) == "scaled rule" and rules.lookup(nn.Linear) == "linear rule"


def test_figures_become_kedro_mlflow_metrics():
    assert as_metrics({"rows": 3, "passed": True, "skipped": None}, prefix="gate.") == {
        "gate.rows": {"value": 3.0, "step": 0},
        "gate.passed": {"value": 1.0, "step": 0},
    }
    assert as_history([(0, 0.5), (1, 0.25)]) == [{"value": 0.5, "step": 0}, {"value": 0.25, "step": 1}]
