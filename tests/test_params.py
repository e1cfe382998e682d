"""Every parameters file validates; a typo or a bad value names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from frugalml.errors import ParameterError
from frugalml.params import FrugalParams, TrainParams, load_project_parameters, parse_params, validate_parameters

CONF = Path(__file__).resolve().parents[1] / "conf"


def merged(env: str | None = None) -> dict:
    return load_project_parameters(CONF, env)


@pytest.mark.parametrize("env", [None, "gpu"])
def test_every_parameters_file_validates(env):
    params = validate_parameters(merged(env))
    assert isinstance(params, FrugalParams)
    assert params.data.text_columns == ["subject", "body"]


def test_training_is_private_by_default_with_the_measured_recipe():
    train = validate_parameters(merged()).train
    assert train.privacy.enabled and train.privacy.target_epsilon == 1.0 and train.privacy.max_grad_norm == 0.25
    assert train.model.resolve_embedding_dim(2) == 1 and train.features.idf == "auto" and not train.uses_idf()
    assert validate_parameters(merged("gpu")).train.privacy.enabled  # every shipped environment stays private


def test_idf_fitted_on_private_rows_is_refused_under_dp():
    with pytest.raises(ParameterError, match="idf.*epsilon does not cover"):
        parse_params(TrainParams, {"features": {"idf": True}}, name="train")
    plain = parse_params(TrainParams, {"features": {"idf": True}, "privacy": {"enabled": False}}, name="train")
    assert plain.uses_idf() and parse_params(TrainParams, {"privacy": {"enabled": False}}, name="train").uses_idf()


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


def test_a_new_stage_registers_its_block_and_gets_the_same_checks():
    from frugalml.params import PARAMETER_BLOCKS, Strict, register_params, root_model

    @register_params("compress_demo")
    class CompressDemo(Strict):
        bits: int = 8

    try:
        params = validate_parameters({**merged(), "compress_demo": {"bits": 4}})
        assert params.compress_demo.bits == 4 and isinstance(params, root_model())
        with pytest.raises(ParameterError, match="unknown parameter 'compress_demo.bitz'"):
            validate_parameters({**merged(), "compress_demo": {"bitz": 4}})
        with pytest.raises(ParameterError, match="already registered"):
            register_params("compress_demo")(CompressDemo)
    finally:
        PARAMETER_BLOCKS.remove("compress_demo")
    with pytest.raises(ParameterError, match="unknown parameter 'compress_demo'"):
        validate_parameters({**merged(), "compress_demo": {"bits": 4}})


def test_duplicate_class_names_are_refused():
    """Each name labels a class and a served model's probability_<name> column: two equal names would collide."""
    from frugalml.params import DataSchema

    with pytest.raises(ParameterError, match="label_names must be distinct"):
        parse_params(DataSchema, {"labels": [0, 1], "label_names": ["ham", "ham"]}, name="data")
