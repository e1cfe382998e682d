"""Every parameters file validates; a typo or a bad value names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from frugalml.errors import ParameterError
from frugalml.params import FrugalParams, TrainParams, load_project_parameters, parse_params, validate_parameters

CONF = Path(__file__).resolve().parents[1] / "conf"


def merged(env: str | None = None) -> dict:
    return load_project_parameters(CONF, env)


@pytest.mark.parametrize("env", [None, "gpu", "private"])
def test_every_parameters_file_validates(env):
    params = validate_parameters(merged(env))
    assert isinstance(params, FrugalParams)
    assert params.data.text_columns == ["subject", "body"]


def test_private_env_turns_dp_on_with_the_measured_recipe():
    params = validate_parameters(merged("private"))
    assert params.train.privacy.enabled and params.train.privacy.max_grad_norm == 0.25
    assert params.train.model.embedding_dim == 1 and params.train.features.buckets == 65536  # base kept


def test_defaults_match_the_base_files():
    """conf/base documents every key, with the same values a library caller gets by default."""
    assert validate_parameters(merged()).model_dump(exclude={"tracking"}) == FrugalParams().model_dump(
        exclude={"tracking"}
    )
    base = merged()
    for block in ("data", "ingest", "split", "train", "evaluate", "weak_label"):
        assert set(base[block]) == set(FrugalParams.model_fields[block].default_factory().model_dump())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"train": {"learning_rate": 0.1}}, "unknown parameter 'train.learning_rate'"),
        ({"train": {"features": {"bukets": 10}}}, "unknown parameter 'train.features.bukets'"),
        ({"split": {"strategy": "by_date"}}, "parameter 'split.strategy'"),
        ({"split": {"test_fraction": 1.5}}, "parameter 'split.test_fraction'"),
        ({"train": {"features": {"word_ngrams": [3, 1]}}}, "train.features.word_ngrams"),
        ({"data": {"positive_label": 5}}, "positive_label 5 is not in labels"),
        ({"sed": 1}, "unknown parameter 'sed'"),
    ],
)
def test_bad_parameters_name_the_key(override, message):
    params = merged()
    for key, value in override.items():
        params[key] = {**params[key], **value} if isinstance(value, dict) and key in params else value
    with pytest.raises(ParameterError, match=message.replace(".", r"\.")):
        validate_parameters(params)


def test_node_level_validation_uses_the_same_schema():
    with pytest.raises(ParameterError, match="train.epochs"):
        parse_params(TrainParams, {"epochs": 0}, name="train")
