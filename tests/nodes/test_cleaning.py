"""Label cleaning on real e-mails: injected flips are found, each policy does what it says, weak labels are
cleaned, data issues are flagged, and every bad input named by issue 7 raises a named error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from frugalml.errors import EmptyDatasetError, ParameterError, ProbabilityError, SchemaError
from frugalml.labels import CONFIDENCE_COLUMN, GOLD, RELABELLED, SOURCE_COLUMN, WEAK, prob_columns
from frugalml.nodes.cleaning import (
    FOLD_MODELS,
    FoldContext,
    apply_cleaning_policy,
    check_pred_probs,
    create_probability_model,
    cross_validate_pred_probs,
    find_data_issues,
    find_label_issues,
    fold_train_params,
    label_issue_mask,
    merge_label_sources,
    pred_prob_columns,
    register_probability_model,
    report_label_issues,
)
from frugalml.nodes.split import split_dataset, validate_text_dataset
from frugalml.params import CleanParams, DataIssueParams, DataSchema, FeatureParams, TrainParams, parse_params

DATA = DataSchema().model_dump()
SCHEMA = DataSchema()
# one torch thread: the fold fits are tiny, and two threads on a busy 2-core machine spin-wait (10x slower)
FAST_TRAIN = {"epochs": 5, "progress": False, "features": {"buckets": 4096}, "threads": 1}
CLEAN = {"progress": False, "fold_train": {}}  # fold models: FAST_TRAIN as it is (without DP)
FLIP_SHARE = 0.12


@pytest.fixture(scope="module", autouse=True)
def restore_torch_threads():
    """``train.threads`` sets torch's process-wide thread count; give the next test module the default back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def noisy(sample_emails: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """The 600-email sample split (about 430 training rows); 12% of the training labels flipped, seeded."""
    validated, _ = validate_text_dataset(sample_emails, DATA)
    train, dev, _, _, _, _ = split_dataset(validated, {"gold_dev_size": 0}, DATA, 0)
    truth = train["label"].astype(int).to_numpy()
    flipped = np.zeros(len(train), dtype=bool)
    flipped[np.random.default_rng(7).choice(len(train), size=round(FLIP_SHARE * len(train)), replace=False)] = True
    return train.assign(label=np.where(flipped, 1 - truth, truth)), dev, truth, flipped


@pytest.fixture(scope="module")
def cleaned(noisy):
    """Merge, out-of-fold probabilities (5 folds, 2 rounds, ngram_bag + naive_bayes) and issues, once."""
    train, dev, _, _ = noisy
    merged, rejected = merge_label_sources(train, None, DATA)
    pred_probs, metrics = cross_validate_pred_probs(merged, dev, CLEAN, FAST_TRAIN, DATA, 0)
    quality, summary = find_label_issues(merged, pred_probs, CLEAN, FAST_TRAIN, DATA, 0)
    return merged, rejected, pred_probs, metrics, quality, summary


def test_injected_flips_are_found_on_real_mail(noisy, cleaned):
    _, _, truth, flipped = noisy
    merged, _, pred_probs, metrics, quality, _ = cleaned
    found = quality["is_label_issue"].to_numpy()
    precision, recall = (found & flipped).sum() / found.sum(), (found & flipped).sum() / flipped.sum()
    assert recall >= 0.85 and precision >= 0.75, (precision, recall)
    # the suggestion is the true label for the flips it found
    assert (quality.loc[found & flipped, "suggested_label"].to_numpy() == truth[found & flipped]).all()
    # flips score lower label quality than the clean rows
    assert quality.loc[flipped, "label_quality"].median() < 0.5 < quality.loc[~flipped, "label_quality"].median()
    # out-of-fold probabilities: every row once, in its fold, rows are distributions; two rounds were run
    assert list(pred_probs["email_id"]) == list(merged["email_id"])
    assert set(pred_probs["fold"]) == set(range(5))
    check_pred_probs(pred_probs[pred_prob_columns([0, 1])].to_numpy(), 2)
    assert [m["step"] for m in metrics["cv.agreement"]] == [1, 2] and metrics["cv.excluded"][1]["value"] > 0


def test_out_of_fold_probabilities_are_reproducible(noisy, cleaned):
    train, dev, _, _ = noisy
    merged = cleaned[0]
    again, _ = cross_validate_pred_probs(merged, dev, CLEAN, FAST_TRAIN, DATA, 0)
    pd.testing.assert_frame_equal(again, cleaned[2])


def test_rows_left_out_between_rounds_follow_exclude_by(noisy, cleaned):
    train, dev, _, _ = noisy
    merged, metrics = cleaned[0], cleaned[3]
    # round 1 alone: the same seeded folds and models, so the same probabilities round 2 started from
    first, _ = cross_validate_pred_probs(merged, dev, {**CLEAN, "rounds": 1}, FAST_TRAIN, DATA, 0)
    labels, probs = merged["label"].astype(int).to_numpy(), first[pred_prob_columns([0, 1])].to_numpy()
    disagree = int((probs.argmax(axis=1) != labels).sum())
    final_filter = int(label_issue_mask(labels, probs, filter_by=CleanParams().filter_by).sum())
    assert disagree != final_filter  # so the two checks below can tell the methods apart
    assert CleanParams().exclude_by is None and metrics["cv.excluded"][1]["value"] == final_filter  # null: filter_by
    eager = {**CLEAN, "exclude_by": "predicted_neq_given"}
    _, eager_metrics = cross_validate_pred_probs(merged, dev, eager, FAST_TRAIN, DATA, 0)
    assert eager_metrics["cv.excluded"][1]["value"] == disagree  # every row the ensemble disagrees with
    quality, _ = find_label_issues(merged, cleaned[2], eager, FAST_TRAIN, DATA, 0)
    _, _, queue, outcome = apply_cleaning_policy(merged, quality, cleaned[1], eager, DATA)
    page, report, _, _ = report_label_issues(quality, queue, {}, outcome, eager, DATA)
    assert report["exclude_by"] == "predicted_neq_given" and "left out between rounds by predicted_neq_given" in page


def test_naive_bayes_temperature_softens_its_votes_without_changing_them(noisy):
    train, dev, _, _ = noisy
    merged, _ = merge_label_sources(train, None, DATA)
    factory, rows = create_probability_model("naive_bayes"), np.arange(len(merged))
    fit, held = rows[rows % 4 != 0], rows[rows % 4 == 0]
    plain = factory(merged, dev, FoldContext(FAST_TRAIN, DATA, 0))(fit, held)  # default: temperature 1
    tempered = factory(merged, dev, FoldContext(FAST_TRAIN, DATA, 0, {"naive_bayes_temperature": 30}))(fit, held)
    check_pred_probs(tempered, 2)
    assert (plain.argmax(axis=1) == tempered.argmax(axis=1)).all()
    # the log-odds are divided by the temperature (rows whose plain posterior has not underflowed to 0 or 1)
    finite = plain.min(axis=1) > 1e-250
    log_odds = lambda p: np.log(p[:, 1]) - np.log(p[:, 0])  # noqa: E731
    assert finite.sum() >= 10 and np.allclose(30 * log_odds(tempered[finite]), log_odds(plain[finite]), rtol=1e-6)
    assert (plain.max(axis=1) > 1 - 1e-12).mean() > 0.8 > (tempered.max(axis=1) > 1 - 1e-12).mean()
    with pytest.raises(ParameterError, match="naive_bayes_temperature"):
        factory(merged, dev, FoldContext(FAST_TRAIN, DATA, 0, {"naive_bayes_temperature": 0}))


def test_review_policy_changes_no_label_and_queues_every_suspect(cleaned):
    merged, rejected, _, _, quality, _ = cleaned
    clean, quarantine, queue, outcome = apply_cleaning_policy(merged, quality, rejected, {"policy": "review"}, DATA)
    pd.testing.assert_frame_equal(clean, merged)
    assert quarantine.empty and outcome["removed"] == outcome["relabelled"] == 0
    suspects = queue[queue["issues"].str.contains("label_issue")]
    assert set(suspects["email_id"]) == set(quality.loc[quality["is_label_issue"], "email_id"])
    assert suspects["label_quality"].is_monotonic_increasing and (queue["action"] == "review").all()
    row = suspects.iloc[0]
    assert row["given_label_name"] != row["suggested_label_name"] and row["body"] and 0 <= row["label_quality"] <= 1
    assert queue["body"].str.len().max() <= CleanParams().review_text_chars + 1


def test_remove_policy_quarantines_every_suspect_with_a_reason(noisy, cleaned):
    _, _, truth, flipped = noisy
    merged, rejected, _, _, quality, _ = cleaned
    clean, quarantine, _, outcome = apply_cleaning_policy(merged, quality, rejected, {"policy": "remove"}, DATA)
    assert len(clean) + len(quarantine) == len(merged) and outcome["removed"] == quality["is_label_issue"].sum()
    assert set(clean["email_id"]).isdisjoint(quarantine["email_id"])  # nothing lost, nothing twice
    assert quarantine["reason"].str.match(r"label_issue: given (ham|spam), model suggests (ham|spam) \(p=").all()
    kept = merged["email_id"].isin(clean["email_id"]).to_numpy()
    assert (clean["label"].to_numpy() != truth[kept]).mean() < 0.5 * flipped.mean()  # less than half the noise


def test_relabel_policy_relabels_only_confident_suspects(noisy, cleaned):
    _, _, truth, _ = noisy
    merged, rejected, _, _, quality, _ = cleaned
    params = {"policy": "relabel", "relabel_min_confidence": 0.8}
    clean, quarantine, queue, outcome = apply_cleaning_policy(merged, quality, rejected, params, DATA)
    relabelled = clean[clean[SOURCE_COLUMN] == RELABELLED]
    assert outcome["relabelled"] == len(relabelled) > 0
    assert len(clean) + len(quarantine) == len(merged)
    assert (relabelled[CONFIDENCE_COLUMN] >= 0.8).all()
    check_pred_probs(relabelled[prob_columns([0, 1])].to_numpy(), 2)
    by_id = dict(zip(merged["email_id"], truth, strict=True))
    assert (relabelled["label"].astype(int) == relabelled["email_id"].map(by_id)).mean() > 0.8
    assert quarantine["reason"].str.contains("below clean.relabel_min_confidence").all()
    assert set(queue.loc[queue["action"] == "relabelled", "email_id"]) == set(relabelled["email_id"])
    assert merged[SOURCE_COLUMN].eq(GOLD).all()  # the input frame is not mutated


def test_none_policy_skips_the_folds_and_passes_rows_through(noisy):
    train, dev, _, _ = noisy
    merged, rejected = merge_label_sources(train, None, DATA)
    params = {"policy": "none", "progress": False}
    pred_probs, metrics = cross_validate_pred_probs(merged, dev, params, {"epochs": 500}, DATA, 0)
    assert pred_probs.empty and metrics == {"cv.skipped": {"value": 1.0, "step": 0}}
    quality, _ = find_label_issues(merged, pred_probs, params, {}, DATA)
    clean, quarantine, queue, outcome = apply_cleaning_policy(merged, quality, rejected, params, DATA)
    pd.testing.assert_frame_equal(clean, merged)
    assert quarantine.empty and queue.empty and outcome["label_issues"] == 0


def test_hand_labels_get_the_shared_label_columns(noisy):
    train = noisy[0]
    merged, rejected = merge_label_sources(train, None, DATA)
    assert (merged[SOURCE_COLUMN] == GOLD).all() and (merged[CONFIDENCE_COLUMN] == 1.0).all()
    assert (merged[prob_columns([0, 1])].to_numpy().argmax(axis=1) == merged["label"].astype(int)).all()
    assert rejected.empty and SOURCE_COLUMN not in train.columns


def weak_rows(pool: pd.DataFrame, rng: np.random.Generator, wrong_share: float) -> tuple[pd.DataFrame, np.ndarray]:
    """What the weak_label stage writes: hard label, source, confidence and soft labels; some labels wrong."""
    truth = pool["label"].astype(int).to_numpy()
    wrong = rng.random(len(pool)) < wrong_share
    hard = np.where(wrong, 1 - truth, truth)
    confidence = rng.uniform(0.6, 0.95, len(pool))
    soft = np.where(hard[:, None] == np.arange(2), confidence[:, None], 1 - confidence[:, None])
    frame = pool.assign(label=pd.array(hard, dtype="Int64"), **{SOURCE_COLUMN: WEAK, CONFIDENCE_COLUMN: confidence})
    return frame.assign(**dict(zip(prob_columns([0, 1]), soft.T, strict=True))), wrong


def test_weak_labels_are_cleaned_by_their_own_policy(noisy):
    train, dev, truth, _ = noisy
    gold = train.assign(label=truth).iloc[:250]  # clean hand labels
    weak, wrong = weak_rows(train.assign(label=truth).iloc[250:].reset_index(drop=True), np.random.default_rng(3), 0.2)
    weak.loc[0, "label"] = pd.NA  # the label model gave no label: cannot be cleaned, must not vanish
    merged, rejected = merge_label_sources(gold, weak, DATA)
    assert len(merged) == len(gold) + len(weak) - 1 and list(rejected["reason"]) == [
        "weak_label_missing: no hard label to clean"
    ]
    assert merged.loc[merged[SOURCE_COLUMN] == WEAK, CONFIDENCE_COLUMN].between(0.6, 0.95).all()
    params = {**CLEAN, "policy": "review", "weak_policy": "remove"}
    pred_probs, _ = cross_validate_pred_probs(merged, dev, params, FAST_TRAIN, DATA, 0)
    quality, _ = find_label_issues(merged, pred_probs, params, FAST_TRAIN, DATA)
    clean, quarantine, _, outcome = apply_cleaning_policy(merged, quality, rejected, params, DATA)
    assert clean[SOURCE_COLUMN].eq(GOLD).sum() == len(gold)  # review: no hand label touched
    removed = quarantine[quarantine["reason"].str.startswith("label_issue")]
    assert removed[SOURCE_COLUMN].eq(WEAK).all() and len(quarantine) == len(removed) + 1
    wrong_ids = set(weak.loc[wrong & weak["label"].notna().to_numpy(), "email_id"])
    assert len(wrong_ids & set(removed["email_id"])) >= 0.7 * len(wrong_ids)
    assert outcome["weak_rows"] == len(weak) - 1 and outcome["weak_rejected"] == 1


def test_data_issues_flag_copies_and_near_copies(noisy):
    train = noisy[0].iloc[:150].reset_index(drop=True)
    base = train.iloc[[0, 1]].copy()
    copies = base.assign(email_id=["copy-of-0", "near-copy-of-1"])
    copies.loc[copies.index[1], "body"] = copies.iloc[1]["body"].replace("e", "a", 3) + " thanks"
    frame = pd.concat([train, copies], ignore_index=True)
    merged, _ = merge_label_sources(frame, None, DATA)
    labels = merged["label"].astype(int).to_numpy()
    config = DataIssueParams(duplicates="remove")
    table, summary = find_data_issues(merged, labels, schema=SCHEMA, features=FeatureParams(), config=config)
    lead = dict(zip(merged["email_id"], table["near_duplicate_of"], strict=True))
    assert lead["copy-of-0"] == lead[train.loc[0, "email_id"]] == train.loc[0, "email_id"]
    assert lead["near-copy-of-1"] == train.loc[1, "email_id"]
    assert table.loc[merged["email_id"] == "copy-of-0", "is_exact_duplicate"].item()
    assert summary["near_duplicate_sets"] >= 2 and 0 <= summary["non_iid_p_value"] <= 1
    assert table["is_outlier"].sum() < 0.1 * len(merged)
    # duplicates: remove, under the remove policy: the followers go, the first of each set stays
    quality = pd.concat([merged[["email_id", SOURCE_COLUMN, CONFIDENCE_COLUMN]], table], axis=1).assign(
        given_label=labels, suggested_label=labels, suggested_confidence=1.0, label_quality=1.0, is_label_issue=False
    )
    params = {"policy": "remove", "data_issues": {"duplicates": "remove"}}
    clean, quarantine, queue, _ = apply_cleaning_policy(merged, quality, merged.iloc[:0], params, DATA)
    assert {"copy-of-0", "near-copy-of-1"} <= set(quarantine["email_id"])
    assert train.loc[0, "email_id"] in set(clean["email_id"]) and train.loc[1, "email_id"] in set(clean["email_id"])
    assert quarantine["reason"].str.startswith("near_duplicate_of:").all()
    assert (queue["issues"].str.contains("near_duplicate")).sum() >= 4


def test_report_counts_by_class_and_lists_suspects(cleaned):
    merged, rejected, _, _, quality, summary = cleaned
    _, _, queue, outcome = apply_cleaning_policy(merged, quality, rejected, CLEAN, DATA)
    page, report, records, metrics = report_label_issues(quality, queue, summary, outcome, CLEAN, DATA)
    assert "<h2>By class</h2>" in page and "<h2>Top " in page
    assert page.count("<tr>") >= 2 + 1 + min(CleanParams().report_top, len(queue))
    by_class = {c["name"]: c for c in report["by_class"]}
    assert by_class["ham"]["label_issues"] + by_class["spam"]["label_issues"] == outcome["label_issues"]
    assert metrics["label_issues"]["value"] == quality["is_label_issue"].sum()
    assert metrics["label_issues.spam"]["value"] == by_class["spam"]["label_issues"]
    assert "data_issues.near_duplicates" in metrics
    assert len(records) == len(queue) and json.loads(json.dumps(records, default=str))[0]["email_id"]
    json.dumps(report, default=str)


# --- bad inputs -----------------------------------------------------------------------------------------------


def test_probabilities_not_summing_to_one_are_refused(cleaned):
    merged, _, pred_probs, _, _, _ = cleaned
    bad = pred_probs.copy()
    bad.loc[3, "pred_prob_0"] += 0.2
    with pytest.raises(ProbabilityError, match=r"1 row\(s\) (do not sum to 1|hold probabilities outside)"):
        find_label_issues(merged, bad, CLEAN, FAST_TRAIN, DATA)
    bad = pred_probs.assign(pred_prob_0=pred_probs["pred_prob_0"] * 0.5)
    with pytest.raises(ProbabilityError, match="do not sum to 1"):
        find_label_issues(merged, bad, CLEAN, FAST_TRAIN, DATA)


def test_nan_probabilities_are_refused(cleaned):
    merged, _, pred_probs, _, _, _ = cleaned
    bad = pred_probs.copy()
    bad.loc[[5, 9], "pred_prob_1"] = np.nan
    with pytest.raises(ProbabilityError, match=r"2 row\(s\) hold NaN") as raised:
        find_label_issues(merged, bad, CLEAN, FAST_TRAIN, DATA)
    assert str(merged.loc[5, "email_id"]) in str(raised.value)


def test_ids_that_do_not_match_are_refused(cleaned):
    merged, _, pred_probs, _, quality, _ = cleaned
    with pytest.raises(ProbabilityError, match="1 labelled row\\(s\\) without probabilities"):
        find_label_issues(merged, pred_probs.drop(index=4), CLEAN, FAST_TRAIN, DATA)
    renamed = pred_probs.assign(email_id=pred_probs["email_id"].where(pred_probs.index != 0, "not-a-row"))
    with pytest.raises(ProbabilityError, match="ids do not match.*e.g. \\['not-a-row'\\]"):
        find_label_issues(merged, renamed, CLEAN, FAST_TRAIN, DATA)
    with pytest.raises(ProbabilityError, match="repeats ids"):
        find_label_issues(merged, pd.concat([pred_probs, pred_probs.iloc[:1]]), CLEAN, FAST_TRAIN, DATA)
    with pytest.raises(ProbabilityError, match="label_quality does not describe"):
        apply_cleaning_policy(merged.iloc[1:], quality, merged.iloc[:0], CLEAN, DATA)


def test_a_class_with_fewer_rows_than_folds_is_refused(noisy):
    train, dev, truth, _ = noisy
    few = pd.concat([train[truth == 0], train[truth == 1].iloc[:3]]).assign(label=lambda f: f["email_id"].map(
        dict(zip(train["email_id"], truth, strict=True))))  # fmt: skip
    merged, _ = merge_label_sources(few, None, DATA)
    with pytest.raises(EmptyDatasetError, match=r"clean.folds is 5 but class\(es\) 'spam' \(3 rows\)"):
        cross_validate_pred_probs(merged, dev, CLEAN, FAST_TRAIN, DATA, 0)


def test_a_single_class_training_set_is_refused(noisy):
    train, dev, truth, _ = noisy
    merged, _ = merge_label_sources(train[truth == 0].assign(label=0), None, DATA)
    with pytest.raises(EmptyDatasetError, match="at least two classes.*only 'ham'"):
        cross_validate_pred_probs(merged, dev, CLEAN, FAST_TRAIN, DATA, 0)


def test_undeclared_labels_and_clashing_ids_are_refused(noisy):
    train = noisy[0]
    with pytest.raises(SchemaError, match="outside the declared set"):
        merge_label_sources(train.assign(label=train["label"].where(train.index != 0, 7)), None, DATA)
    with pytest.raises(SchemaError, match="repeats across train_labelled and weak_labels"):
        merge_label_sources(train, train.iloc[:3].assign(label_source=WEAK), DATA)
    with pytest.raises(SchemaError, match="lacks column"):
        merge_label_sources(train.drop(columns=["body"]), None, DATA)
    with pytest.raises(EmptyDatasetError, match="no rows"):
        merge_label_sources(train.iloc[:0], None, DATA)


def test_bad_parameters_and_models_are_refused(noisy, cleaned):
    merged, dev = cleaned[0], noisy[1]
    with pytest.raises(ParameterError, match="unknown parameter 'clean.fold'"):
        parse_params(CleanParams, {"fold": 3}, name="clean")
    with pytest.raises(ParameterError, match="clean.policy"):
        parse_params(CleanParams, {"policy": "fix"}, name="clean")
    with pytest.raises(ParameterError, match="clean.exclude_by"):
        parse_params(CleanParams, {"exclude_by": "everything"}, name="clean")
    with pytest.raises(ParameterError, match="clean.naive_bayes_temperature"):
        parse_params(CleanParams, {"naive_bayes_temperature": -1}, name="clean")
    with pytest.raises(ParameterError, match="unknown model 'forest'.*naive_bayes"):
        cross_validate_pred_probs(merged, dev, {**CLEAN, "models": ["forest"]}, FAST_TRAIN, DATA, 0)


def test_fold_models_keep_their_own_non_private_recipe(noisy, cleaned):
    """clean.fold_train is merged over params:train key by key; DP is off whatever either block says."""
    private = parse_params(TrainParams, {"features": {"buckets": 4096}}, name="train")  # DP on: the default
    assert private.privacy.enabled and private.model.resolve_embedding_dim(2) == 1
    folds = fold_train_params(private, parse_params(CleanParams, {}, name="clean"))
    assert folds["privacy"]["enabled"] is False and folds["progress"] is False
    assert folds["model"]["embedding_dim"] == 16 and folds["features"]["idf"] is True and folds["epochs"] == 10
    assert folds["features"]["buckets"] == 4096  # a key fold_train does not set comes from params:train
    same = fold_train_params(private, parse_params(CleanParams, {"fold_train": {}}, name="clean"))
    assert same == private.model_dump() | {"progress": False, "privacy": same["privacy"]}
    forced = parse_params(CleanParams, {"fold_train": {"privacy": {"enabled": True}}}, name="clean")
    assert fold_train_params(private, forced)["privacy"]["enabled"] is False
    seen = []

    @register_probability_model("test_recipe_probe")
    def probe(frame, dev, context: FoldContext):  # records the recipe the stage hands its fold models
        seen.append(context.train)
        return lambda fit, held: np.full((len(held), 2), 0.5)

    merged, dev = cleaned[0], noisy[1]
    cross_validate_pred_probs(merged, dev, {"progress": False, "rounds": 1, "models": ["test_recipe_probe"]},
                              {**FAST_TRAIN, "privacy": {"enabled": True}}, DATA, 0)  # fmt: skip
    assert seen and seen[0]["model"]["embedding_dim"] == 16 and seen[0]["privacy"]["enabled"] is False
    with pytest.raises(ParameterError, match="unknown parameter 'clean.fold_train.model.embeding_dim'"):
        fold_train_params(private, parse_params(CleanParams, {"fold_train": {"model": {"embeding_dim": 8}}}))
    with pytest.raises(ParameterError, match="clean.fold_train.epochs"):
        fold_train_params(private, parse_params(CleanParams, {"fold_train": {"epochs": 0}}))


def test_the_model_registry_refuses_a_taken_name_unless_told_to_replace():
    """clean.models is a frugalml.registry.Registry: a taken name is refused, replace=True replaces it."""

    def first(frame, dev, context: FoldContext):
        return lambda fit, held: np.full((len(held), 2), 0.5)

    def second(frame, dev, context: FoldContext):
        return lambda fit, held: np.full((len(held), 2), 0.5)

    try:
        assert register_probability_model("test_duplicate")(first) is first
        with pytest.raises(ParameterError, match="model named 'test_duplicate' is already registered.*replace=True"):
            register_probability_model("test_duplicate")(second)
        assert create_probability_model("test_duplicate") is first
        assert register_probability_model("test_duplicate", replace=True)(second) is second
        assert create_probability_model("test_duplicate") is second
        builtin = create_probability_model("ngram_bag")
        with pytest.raises(ParameterError, match="'ngram_bag' is already registered"):
            register_probability_model("ngram_bag")(second)
        assert create_probability_model("ngram_bag") is builtin
        with pytest.raises(
            ParameterError, match=r"clean.models: unknown model 'forest'; registered: \[.*'naive_bayes'"
        ):
            create_probability_model("forest")
    finally:
        FOLD_MODELS.remove("test_duplicate")
    assert "test_duplicate" not in FOLD_MODELS and {"ngram_bag", "naive_bayes", "tfidf_logreg"} <= set(FOLD_MODELS)


def test_a_model_that_returns_no_distribution_is_refused(noisy, cleaned):
    merged, dev = cleaned[0], noisy[1]

    @register_probability_model("test_broken")
    def broken(frame, dev, context: FoldContext):
        return lambda fit, held: np.ones((len(held), 2))

    assert create_probability_model("test_broken") is broken
    with pytest.raises(ProbabilityError, match="model 'test_broken' \\(fold 0, round 1\\).*do not sum to 1"):
        cross_validate_pred_probs(merged, dev, {**CLEAN, "models": ["test_broken"]}, FAST_TRAIN, DATA, 0)
