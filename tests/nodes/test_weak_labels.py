"""Weak labelling on real e-mails: the LF library, the appliers, the label model, the report, bad inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from frugalml.errors import EmptyDatasetError, LabelingFunctionError, ParameterError, SchemaError
from frugalml.labels import CONFIDENCE_COLUMN, SOURCE_COLUMN, prob_columns
from frugalml.nodes.lf_library import lf_view
from frugalml.nodes.train import soft_targets, train_text_classifier
from frugalml.nodes.weak_labels import (
    ABSTAIN,
    apply_lfs,
    create_lfs,
    register_lf,
    registered_lfs,
    unregister_lf,
    weak_label,
)
from frugalml.params import DataSchema

DATA = DataSchema().model_dump()
FAST = {"progress": False, "leave_one_out": False, "label_model_epochs": 100}


@pytest.fixture(scope="module")
def pool_and_dev(sample_emails: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """The 600-email sample: 150 stratified rows as the gold dev set, the rest as a pool with hidden labels."""
    dev = sample_emails.groupby("label", group_keys=False).sample(frac=0.25, random_state=0)
    rest = sample_emails.drop(dev.index)
    truth = pd.Series(rest["label"].astype(int).to_numpy(), index=rest["email_id"].to_numpy())
    return rest.assign(label=pd.NA).reset_index(drop=True), dev.reset_index(drop=True), truth


@pytest.fixture
def custom_lfs():
    """Register test LFs, removed afterwards."""
    names: list[str] = []

    def add(name, function, **kwargs):
        register_lf(name, **kwargs)(function)
        names.append(name)

    yield add
    for name in names:
        unregister_lf(name)


def test_library_has_twenty_documented_lfs_in_four_families():
    library = {name: spec for name, spec in registered_lfs().items() if spec.vote is not None}
    assert len(library) >= 20
    assert {spec.family for spec in library.values()} >= {"header", "content", "keyword", "subject"}
    undocumented = [name for name, spec in library.items() if len(spec.rationale) < 20]
    assert not undocumented


def test_vectorised_and_snorkel_pandas_appliers_agree_on_real_mail(sample_emails):
    lfs = create_lfs(["all"], ["ham", "spam"])
    view = lf_view(sample_emails, ["subject", "body"])
    vectorised, _ = apply_lfs(view, lfs, cardinality=2, applier="vectorized")
    rows, _ = apply_lfs(view, lfs, cardinality=2, applier="pandas")
    np.testing.assert_array_equal(vectorised, rows)
    assert ((vectorised >= 0).sum(axis=0) > 0).sum() >= 20  # most LFs fire somewhere in 600 real e-mails


def test_dask_applier_agrees(sample_emails):
    lfs = create_lfs(["family:content", "family:subject"], ["ham", "spam"])
    view = lf_view(sample_emails.head(80), ["subject", "body"])
    parallel, _ = apply_lfs(view, lfs, cardinality=2, applier="dask", n_parallel=2)
    vectorised, _ = apply_lfs(view, lfs, cardinality=2, applier="vectorized")
    np.testing.assert_array_equal(parallel, vectorised)


def test_weak_labels_are_accurate_and_nothing_is_lost(pool_and_dev):
    pool, dev, truth = pool_and_dev
    weak, abstained, summary, figure, metrics = weak_label(pool, dev, FAST, DATA, 0)
    assert len(weak) + len(abstained) == len(pool)
    assert set(weak["email_id"]).isdisjoint(abstained["email_id"])
    assert (abstained["reason"] != "").all() and abstained["label"].isna().all()
    assert metrics["coverage"]["value"] > 0.8
    accuracy = (weak["label"].astype(int).to_numpy() == truth.loc[weak["email_id"]].to_numpy()).mean()
    assert accuracy > 0.88
    probabilities = weak[prob_columns([0, 1])].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(weak[CONFIDENCE_COLUMN], probabilities.max(axis=1))
    assert (weak[SOURCE_COLUMN] == "weak").all()
    assert {"lf", "coverage", "overlaps", "conflicts", "dev_accuracy", "rationale", "loo_delta"} <= set(summary)
    assert figure.axes and metrics["n_lfs"]["value"] == len(summary)


def test_majority_vote_and_prior_policy_keep_every_row(pool_and_dev):
    pool, dev, _ = pool_and_dev
    config = FAST | {"label_model": "majority", "abstain_policy": "prior"}
    weak, abstained, _, _, metrics = weak_label(pool, dev, config, DATA, 0)
    assert len(weak) == len(pool) and abstained.empty
    no_votes = weak["lf_votes"] == 0
    if no_votes.any():  # labelled with the class balance of the dev set
        assert weak.loc[no_votes, CONFIDENCE_COLUMN].round(6).nunique() == 1
    assert metrics["dev_majority_vote_accuracy"]["value"] > 0.8


def test_min_confidence_sends_unsure_rows_to_abstained(pool_and_dev):
    pool, dev, _ = pool_and_dev
    weak, abstained, _, _, _ = weak_label(pool, dev, FAST | {"min_confidence": 0.99}, DATA, 0)
    assert (weak[CONFIDENCE_COLUMN] >= 0.99).all()
    assert abstained["reason"].str.contains("min_confidence").any()
    assert len(weak) + len(abstained) == len(pool)


def test_leave_one_out_reports_an_effect_per_lf(pool_and_dev):
    pool, dev, _ = pool_and_dev
    _, _, summary, _, _ = weak_label(pool, dev, FAST | {"leave_one_out": True}, DATA, 0)
    assert summary["loo_delta"].notna().all()
    assert set(summary["verdict"]) <= {"helps", "hurts", "neutral"}
    # majority vote: an LF silent on the dev set cannot change dev accuracy; some LF must
    config = FAST | {"leave_one_out": True, "label_model": "majority"}
    _, _, summary, _, _ = weak_label(pool, dev, config, DATA, 0)
    assert (summary.loc[summary["dev_votes"] == 0, "loo_delta"] == 0).all()
    assert (summary["loo_delta"] != 0).any()
    assert (np.sign(summary["loo_delta"]) == summary["verdict"].map({"helps": 1, "hurts": -1, "neutral": 0})).all()


def test_users_lf_by_name_in_every_applier(pool_and_dev, custom_lfs):
    pool, dev, _ = pool_and_dev

    def mentions_razor(row) -> int:
        """Vipul's Razor is discussed on the lists in this corpus."""
        return 0 if "razor" in str(row["body"]).lower() else ABSTAIN

    custom_lfs("mentions_razor", mentions_razor, columns=["body"])
    lfs = create_lfs(["mentions_razor", "content_wrote"], ["ham", "spam"])
    view = lf_view(pool, ["subject", "body"])
    matrix, _ = apply_lfs(view, lfs, cardinality=2, applier="vectorized")
    assert (matrix[:, 0] == 0).sum() == pool["body"].str.lower().str.contains("razor").sum() > 0
    weak, _, summary, _, _ = weak_label(pool, dev, FAST | {"lfs": ["mentions_razor", "all"]}, DATA, 0)
    assert summary["lf"].iloc[0] == "mentions_razor" and "Razor" in summary["rationale"].iloc[0]


def test_lf_returning_an_invalid_value_is_named(pool_and_dev, custom_lfs):
    pool, dev, _ = pool_and_dev
    custom_lfs("returns_two", lambda row: 2)
    with pytest.raises(LabelingFunctionError, match=r"'returns_two' returned 2 .* row id"):
        weak_label(pool, dev, FAST | {"lfs": ["returns_two", "content_wrote"]}, DATA, 0)
    custom_lfs("returns_a_name", lambda row: "spam")
    with pytest.raises(LabelingFunctionError, match="'returns_a_name' returned a value that is not an integer"):
        weak_label(pool, dev, FAST | {"lfs": ["returns_a_name"]}, DATA, 0)


def test_lf_that_raises_abstains_there_with_a_warning(pool_and_dev, custom_lfs):
    pool, dev, _ = pool_and_dev

    def fragile(row) -> int:
        if len(str(row["subject"])) % 7 == 0:
            raise ValueError("odd subject")
        return ABSTAIN

    custom_lfs("fragile", fragile, columns=["subject"])
    with pytest.warns(RuntimeWarning, match="'fragile' raised on"):
        weak, abstained, summary, _, _ = weak_label(pool, dev, FAST | {"lfs": ["fragile", "all"]}, DATA, 0)
    assert summary.set_index("lf").loc["fragile", "failures"] > 0
    assert len(weak) + len(abstained) == len(pool)
    custom_lfs("always_broken", lambda row: 1 // 0)
    with pytest.raises(LabelingFunctionError, match="'always_broken' raised on .* max_lf_failure_share"):
        weak_label(pool, dev, FAST | {"lfs": ["always_broken", "all"]}, DATA, 0)


def test_pool_where_every_lf_abstains_is_an_error(pool_and_dev, custom_lfs):
    pool, dev, _ = pool_and_dev
    custom_lfs("never_votes", lambda row: ABSTAIN)
    with pytest.raises(EmptyDatasetError, match="every labelling function abstained on all .* and all .* gold dev"):
        weak_label(pool, dev, FAST | {"lfs": ["never_votes"]}, DATA, 0)


def test_dev_set_with_one_class_leaves_the_pool_unlabelled_with_the_reason(pool_and_dev):
    pool, dev, _ = pool_and_dev
    weak, abstained, _, _, metrics = weak_label(pool, dev[dev["label"] == 0], FAST, DATA, 0)
    assert weak.empty and len(abstained) == len(pool) and abstained["label"].isna().all()
    assert abstained["reason"].str.contains(r"gold_dev_too_small: .*no rows of class\(es\) \['spam'\]").all()
    assert "split.gold_dev_size" in abstained["reason"].iloc[0]
    assert metrics["weak_labelled"]["value"] == 0 and metrics["abstained"]["value"] == len(pool)


def test_unknown_lf_family_and_missing_columns_are_named(pool_and_dev):
    pool, dev, _ = pool_and_dev
    with pytest.raises(ParameterError, match="unknown labelling function 'header_magic'"):
        weak_label(pool, dev, FAST | {"lfs": ["header_magic"]}, DATA, 0)
    with pytest.raises(ParameterError, match="no LF family 'astrology'"):
        weak_label(pool, dev, FAST | {"lfs": ["family:astrology"]}, DATA, 0)
    with pytest.raises(SchemaError, match="'header_list_id' needs \\['list_id'\\]"):
        weak_label(pool.drop(columns=["list_id"]), dev, FAST | {"lfs": ["header_list_id"]}, DATA, 0)
    with pytest.raises(ParameterError, match="class_balance"):
        weak_label(pool, dev, FAST | {"class_balance": [0.5, 0.6]}, DATA, 0)


def test_all_skips_lfs_that_do_not_fit_other_data(pool_and_dev):
    pool, dev, _ = pool_and_dev
    text_only = pool[["email_id", "subject", "body", "label"]]
    lfs = create_lfs(["all"], ["ham", "spam"], columns=text_only.columns)
    assert lfs and all(set(spec.columns) <= {"subject", "body"} for spec in lfs)
    assert not create_lfs(["all"], ["negative", "positive"], columns=text_only.columns)
    weak, abstained, _, _, _ = weak_label(text_only, dev, FAST, DATA | {"label_names": ["negative", "positive"]}, 0)
    assert weak.empty and len(abstained) == len(text_only)
    assert abstained["reason"].str.startswith("no_fitting_lf: weak_label.lfs ['all'] selects no labelling").all()


def test_end_model_trains_on_soft_weak_labels(pool_and_dev, sample_emails):
    pool, dev, truth = pool_and_dev
    weak, _, _, _, _ = weak_label(pool, dev, FAST, DATA, 0)
    params = {"epochs": 4, "progress": False, "targets": "soft", "features": {"buckets": 4096},
              "batch_size": 64, "privacy": {"enabled": False}}  # fmt: skip
    model, _, _ = train_text_classifier(weak, dev, params, DATA, 0)
    predicted = model.predict_proba(pool).argmax(axis=1)
    assert (predicted == truth.loc[pool["email_id"]].to_numpy()).mean() > 0.85


def test_soft_targets_mix_hand_and_weak_labels_and_reject_bad_rows():
    schema = DataSchema()
    frame = pd.DataFrame({"label": [0, 1, 1], "label_prob_0": [np.nan, 0.2, 0.6], "label_prob_1": [np.nan, 0.8, 0.4]})
    targets = soft_targets(frame, schema, np.array([0, 1, 1]))
    np.testing.assert_allclose(targets, [[1, 0], [0.2, 0.8], [0.6, 0.4]], rtol=1e-6)
    with pytest.raises(SchemaError, match="sum to 1"):
        soft_targets(frame.assign(label_prob_1=[np.nan, 0.9, 0.4]), schema, np.array([0, 1, 1]))
    with pytest.raises(SchemaError, match="every column"):
        soft_targets(frame.drop(columns=["label_prob_1"]), schema, np.array([0, 1, 1]))


def test_dp_training_accepts_soft_targets(sample_emails):
    train = sample_emails.iloc[:300].assign(
        label_prob_1=lambda f: f["label"] * 0.9 + 0.05, label_prob_0=lambda f: 0.95 - f["label"] * 0.9
    )
    params = {"targets": "soft", "epochs": 2, "batch_size": 50, "progress": False, "features": {"buckets": 4096},
              "privacy": {"enabled": True, "target_epsilon": 8.0, "refuse_signal_to_noise": 0}}  # fmt: skip
    _, history, report = train_text_classifier(train, sample_emails.iloc[300:], params, DATA, 0)
    assert report["steps"] > 0 and 0 < report["epsilon"] <= 8.1
    assert all(np.isfinite(point["value"]) for point in history["train_loss"])


def test_no_fitting_lf_and_an_empty_pool_gives_empty_outputs(pool_and_dev):
    pool, dev, _ = pool_and_dev
    data = DATA | {"label_names": ["negative", "positive"]}
    weak, abstained, summary, figure, metrics = weak_label(pool.iloc[0:0], dev, FAST, data, 0)
    assert weak.empty and abstained.empty and summary.empty and figure is not None
    assert {"label_source", "label_confidence", "label_prob_0", "label_prob_1"} <= set(weak.columns)
    assert metrics["n_lfs"]["value"] == 0


# --- issue 14: one unlabelled row must not stop the run ---------------------------------------------------
@pytest.mark.parametrize("label_model", ["snorkel", "majority"])
def test_one_unlabelled_row_of_a_user_table_does_not_stop_the_run(sample_emails, label_model):
    """The README's table (message / category ok, abuse) with one empty label: no library LF fits those labels,
    and before issue 14 the weak-label stage raised ParameterError and killed the run."""
    table = pd.DataFrame(
        {
            "message": (sample_emails["subject"] + "\n" + sample_emails["body"]).to_numpy(),
            "category": sample_emails["label"].to_numpy(),
            "row_id": sample_emails["email_id"],
        }
    )
    data = {"text_columns": ["message"], "label_column": "category", "id_column": "row_id",
            "label_names": ["ok", "abuse"]}  # fmt: skip
    pool, dev = table.iloc[[0]].assign(category=pd.NA), table.iloc[1:41]
    weak, abstained, summary, figure, metrics = weak_label(pool, dev, FAST | {"label_model": label_model}, data, 0)
    assert weak.empty and abstained["row_id"].tolist() == [table["row_id"].iloc[0]]
    assert abstained["reason"].iloc[0].startswith("no_fitting_lf:")
    # the same single row with the library's label names: the LFs fit, and it is labelled or abstained
    named = data | {"label_names": ["ham", "spam"]}
    weak, abstained, _, _, _ = weak_label(pool, dev, FAST | {"label_model": label_model}, named, 0)
    assert len(weak) + len(abstained) == 1


def test_one_unlabelled_row_that_no_lf_votes_on_is_abstained_not_fatal(pool_and_dev):
    pool, dev, _ = pool_and_dev
    quiet = pool.iloc[[0]].assign(subject="lunch", body="see you at noon")  # no library LF votes here
    weak, abstained, _, _, _ = weak_label(quiet[["email_id", "subject", "body", "label"]], dev, FAST, DATA, 0)
    assert weak.empty and abstained["reason"].tolist() == ["all labelling functions abstained"]


def test_a_small_table_without_a_gold_dev_set_leaves_its_pool_unlabelled(pool_and_dev):
    pool, dev, _ = pool_and_dev
    weak, abstained, _, _, _ = weak_label(pool.head(3), dev.iloc[0:0], FAST, DATA, 0)
    assert weak.empty and len(abstained) == 3
    assert abstained["reason"].str.startswith("gold_dev_too_small: the gold dev set is empty").all()
