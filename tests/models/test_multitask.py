"""Multi-task heads (``train.multitask``): task labels from a column (directly or through patterns), the heads on
every kind's shared model, the weighted per-sample loss under DP clipping, saving, serving and evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from frugalml.errors import CompressionError, EmptyDatasetError, ParameterError, PretrainedModelError, SchemaError
from frugalml.models.multitask import (
    ALL_OUTPUTS,
    MultiHead,
    MultiTaskLoss,
    TaskSpec,
    TaskTargets,
    attach_task_heads,
    label_key,
    split_task_tensors,
    task_output,
    task_targets,
)
from frugalml.models.pyfunc import load_text_classifier, predict_frame, save_text_classifier
from frugalml.models.transformer import SmallTransformer, TransformerConfig
from frugalml.nodes.evaluate import evaluate_classifier, evaluation_summary
from frugalml.nodes.split import split_dataset
from frugalml.nodes.train import train_text_classifier
from frugalml.params import TrainParams, parse_params
from tests.helpers import DATA
from tests.privacy.clipping_reference import assert_clipped_sum_matches_per_sample_gradients

#: the corpus' second label: easy vs hard ham, from the folder a message came from (spam rows have no label for it)
DIFFICULTY = {"name": "difficulty", "column": "group", "labels": ["easy", "hard"],
              "map": {"easy-ham*": "easy", "hard-ham*": "hard"}, "weight": 1.0}  # fmt: skip
#: a user's own second label column: is the message a reply (learnable from the text: 31% of the sample)
REPLY = {"name": "reply", "column": "is_reply", "labels": ["no", "yes"], "weight": 1.0}
PLAIN = {"epochs": 6, "progress": False, "privacy": {"enabled": False}}
TINY_TRANSFORMER = {"kind": "transformer", "transformer": {"max_tokens": 64, "layers": 1, "dim": 32, "heads": 2,
                                                           "ffn_dim": 64}}  # fmt: skip


def _with_reply(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(is_reply=np.where(frame["subject"].fillna("").str.match(r"(?i)\s*re:"), "yes", "no"))


@pytest.fixture(scope="module")
def sets(sample_emails: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    train, dev, _, test, *_ = split_dataset(sample_emails, {"gold_dev_size": 0}, DATA, 0)
    return _with_reply(train), _with_reply(dev), _with_reply(test)


def _tasks(*tasks: dict) -> dict:
    return {"multitask": {"tasks": list(tasks)}}


def test_label_keys_match_across_types():
    assert label_key(3) == label_key(3.0) == label_key("3") == label_key(np.int64(3)) == label_key(" 3 ") == "3"
    assert label_key(True) == "1" and label_key("hard") == "hard" and label_key(2.5) == "2.5"
    assert all(label_key(v) is None for v in (None, float("nan"), "", "  ", "NaN", "null", pd.NA, pd.NaT))
    nullable = pd.DataFrame({"stars": pd.array([1, None, 3], dtype="Int64")})  # pandas' nullable integers
    assert task_targets(nullable, TaskSpec("stars", "stars", labels=(1, 3))).tolist() == [0, -1, 1]


def test_task_targets_map_patterns_and_skip_rows_without_a_label():
    spec = parse_params(TrainParams, _tasks(DIFFICULTY), name="train").multitask.specs()[0]
    frame = pd.DataFrame({"group": ["easy-ham-1", "HARD-HAM-1", "spam-2", None, "easy-ham-2"]})
    assert task_targets(frame, spec).tolist() == [0, 1, -1, -1, 0]
    numbers = TaskSpec("stars", "stars", labels=(1, 2, 3))
    column = pd.DataFrame({"stars": [1.0, np.nan, 3.0, 2.0]})  # a column with blanks reads as floats
    assert task_targets(column, numbers).tolist() == [0, -1, 2, 1]


def test_task_targets_refuse_undeclared_values_naming_them_and_rows():
    spec = TaskSpec("topic", "topic", labels=("sport", "news"))
    frame = pd.DataFrame({"id": ["a", "b", "c", "d"], "topic": ["sport", "weather", "news", "weather"]})
    with pytest.raises(SchemaError, match=r"'topic'.*outside its declared labels.*'weather' \(2 rows\).*\['b', 'd'\]"):
        task_targets(frame, spec, id_column="id")
    with pytest.raises(SchemaError, match="reads column 'topic', which the dev rows lack"):
        task_targets(frame.drop(columns="topic"), spec, where="the dev rows")
    ambiguous = TaskSpec("t", "g", labels=("a", "b"), mapping=(("x*", "a"), ("*y", "b")))
    with pytest.raises(SchemaError, match="matches patterns of labels"):
        task_targets(pd.DataFrame({"g": ["xy"]}), ambiguous)


@pytest.mark.parametrize(
    ("multitask", "problem"),
    [
        ({"tasks": [{**REPLY, "name": "Bad Name"}]}, "lower-case letters"),
        ({"tasks": [REPLY, REPLY]}, "task names must be distinct"),
        ({"tasks": [{**REPLY, "labels": ["yes"]}]}, "at least 2"),
        ({"tasks": [{**REPLY, "labels": [1, "1"]}]}, "labels must be distinct"),
        ({"tasks": [{**DIFFICULTY, "map": {"easy*": "medium"}}]}, "not one of"),
        ({"tasks": [{**REPLY, "weight": 0}]}, "greater than 0"),
        ({"tasks": [{**REPLY, "label_names": ["only one"]}]}, "one name per label"),
        ({"tasks": [{**REPLY, "label_names": ["same", "same"]}]}, "label_names must be distinct"),
        ({"main_weight": -1}, "greater than 0"),
        ({"tasks": [{**REPLY, "name": "type"}]}, "reserved"),  # an nn.ModuleDict attribute
        ({"tasks": [{**REPLY, "name": "train"}]}, "reserved"),
        ({"tasks": [{**REPLY, "name": "label"}]}, "reserved"),  # the served model's own column
        ({"tasks": [{**REPLY, "name": "probability_x"}]}, "reserved"),
    ],
)
def test_bad_task_parameters_are_refused(multitask, problem):
    with pytest.raises(ParameterError, match=problem):
        parse_params(TrainParams, {"multitask": multitask}, name="train")


def test_multi_head_gives_the_main_logits_unless_asked_and_fresh_heads_of_the_main_shape():
    torch.manual_seed(0)
    module = torch.nn.Module()
    module.head = torch.nn.Sequential(
        torch.nn.LayerNorm(6), torch.nn.Linear(6, 4), torch.nn.GELU(), torch.nn.Linear(4, 2)
    )
    main = module.head
    attach_task_heads(module, [TaskSpec("a", "a", labels=(0, 1, 2)), TaskSpec("b", "b", labels=("x", "y"))])
    head = module.head
    assert isinstance(head, MultiHead) and head.main is main
    x = torch.randn(5, 6)
    assert torch.equal(head(x), main(x))  # the main task's logits by default: predict_proba is unchanged
    with task_output(module, ALL_OUTPUTS):
        assert head(x).shape == (5, 2 + 3 + 2)
    with task_output(module, "a"):
        assert head(x).shape == (5, 3)
    assert head.output is None
    assert head.tasks["a"][3].out_features == 3 and isinstance(head.tasks["a"][0], torch.nn.LayerNorm)
    assert not torch.equal(head.tasks["b"][1].weight, main[1].weight)  # its own, re-initialised weights
    with pytest.raises(KeyError, match="no task 'c'"), task_output(module, "c"):
        pass


def test_multitask_loss_is_the_weighted_sum_and_skips_missing_labels():
    logits = torch.randn(3, 2 + 3)
    targets = TaskTargets(torch.tensor([0, 1, 1]), torch.tensor([[2], [-1], [0]]))
    loss = MultiTaskLoss(2, [TaskSpec("t", "t", labels=(0, 1, 2), weight=0.3)], main_weight=2.0)(logits, targets)
    ce = torch.nn.functional.cross_entropy
    main = ce(logits[:, :2], targets.main, reduction="none")
    expected = 2.0 * main + 0.3 * torch.stack([ce(logits[0:1, 2:], torch.tensor([2]))[None][0], torch.tensor(0.0),
                                               ce(logits[2:3, 2:], torch.tensor([0]))])  # fmt: skip
    torch.testing.assert_close(loss, expected)


def test_dp_clipping_covers_every_head():
    """Each row's whole gradient (main and task heads, the shared encoder) is what gets clipped: the book-keeping
    step's clipped sum equals each sample's gradient of its weighted multi-task loss, computed alone."""
    torch.manual_seed(0)
    module = SmallTransformer(TransformerConfig(2, vocab=128, dim=16, heads=2, ffn_dim=32, max_tokens=32))
    tasks = [TaskSpec("a", "a", labels=(0, 1, 2), weight=0.7), TaskSpec("b", "b", labels=(0, 1))]
    attach_task_heads(module, tasks)
    ids = torch.randint(2, 128, (4, 20))
    mask = torch.ones_like(ids)
    y = TaskTargets(torch.tensor([0, 1, 1, 0]), torch.tensor([[2, -1], [-1, 1], [0, 0], [1, -1]]))
    loss = MultiTaskLoss(2, tasks, main_weight=1.0)
    with task_output(module, ALL_OUTPUTS):
        assert_clipped_sum_matches_per_sample_gradients(module, ids, mask, y, checked=4, loss=loss)
        assert_clipped_sum_matches_per_sample_gradients(module, ids, mask, y, checked=4, loss=loss, last=True)


def test_concurrent_predictions_never_see_each_others_head(sets):
    """The head a forward pass uses is chosen per thread: a thread inside task_output (a task of 3 classes) does not
    change what another thread's predictions give, and many threads serving every task agree with serial calls."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    train, dev, test = (frame.iloc[:120] for frame in sets)
    three = {"name": "era", "column": "group", "labels": ["one", "two", "other"],
             "map": {"easy-ham-1": "one", "spam-1": "one", "*-2": "two", "hard*": "other"}}  # fmt: skip
    model, _, _ = train_text_classifier(train, dev, {**PLAIN, "epochs": 1, **_tasks(three, REPLY)}, {}, 0)
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with task_output(model.module, "era"):
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(10)
    try:
        assert model.predict_proba(test).shape == (len(test), 2)  # the main head here, whatever the other thread chose
    finally:
        release.set()
        holder.join()
    serial = predict_frame(model, test)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: predict_frame(model, test), range(24)))
    for result in results:
        pd.testing.assert_frame_equal(result, serial)
    pd.testing.assert_frame_equal(predict_frame(model, test), serial)


def test_one_pass_serves_every_head_and_an_empty_frame_keeps_the_columns(sets):
    from frugalml.models.multitask import predict_all_proba, predict_task_proba

    train, dev, test = (frame.iloc[:120] for frame in sets)
    three = {"name": "era", "column": "group", "labels": ["one", "two", "other"],
             "map": {"easy-ham-1": "one", "spam-1": "one", "*-2": "two", "hard*": "other"}}  # fmt: skip
    model, _, _ = train_text_classifier(train, dev, {**PLAIN, "epochs": 1, **_tasks(three)}, {}, 0)
    main, era = predict_all_proba(model, test)
    np.testing.assert_allclose(main, model.predict_proba(test), atol=1e-5)
    np.testing.assert_allclose(era, predict_task_proba(model, test, "era"), atol=1e-5)
    empty = predict_frame(model, test.iloc[:0])
    assert len(empty) == 0 and list(empty.columns) == list(predict_frame(model, test.iloc[:2]).columns)


def test_tasks_whose_served_columns_collide_are_refused(sets):
    train, dev, _ = sets
    first = {**REPLY, "name": "a", "label_names": ["b_label", "other"]}  # a_probability_b_label ...
    second = {**REPLY, "name": "a_probability_b"}  # ... and this task's own label column a_probability_b_label
    with pytest.raises(SchemaError, match=r"\['a_probability_b_label'\] twice"):
        train_text_classifier(train, dev, {**PLAIN, **_tasks(first, second)}, {}, 0)


def test_the_dp_pre_check_counts_the_task_heads(sets):
    from frugalml.nodes.preflight import _trainable_parameters

    train, dev, _ = (frame.iloc[:120] for frame in sets)
    ten = {"name": "bucket", "column": "bucket", "labels": list(range(10))}
    params = {**PLAIN, "epochs": 1, **_tasks(ten)}
    model, _, _ = train_text_classifier(train.assign(bucket=np.arange(len(train)) % 10),
                                        dev.assign(bucket=np.arange(len(dev)) % 10), params, {}, 0)  # fmt: skip
    built = sum(p.numel() for p in model.module.parameters() if p.requires_grad)
    assert _trainable_parameters(parse_params(TrainParams, params, name="train"), 2) == built  # (9 + 1) wide bag


def test_split_task_tensors_gives_the_single_task_layout():
    tensors = {"module.head.main.1.weight": torch.ones(1), "module.head.tasks.t.1.weight": torch.zeros(1),
               "module.embedding.weight": torch.ones(2), "idf": torch.ones(3)}  # fmt: skip
    base, heads = split_task_tensors(tensors)
    assert set(base) == {"module.head.1.weight", "module.embedding.weight", "idf"} and set(heads) == {"t.1.weight"}
    with pytest.raises(ValueError, match="both 'module.head.1.weight' and a main-head copy"):  # a crafted file
        split_task_tensors({**tensors, "module.head.1.weight": torch.ones(1)})


def test_the_bag_learns_a_second_label_column_beside_the_main_task(sets):
    """A user's own second label (is the e-mail a reply) on a shared bag: the task head learns it well above
    its majority baseline, while the main task stays as good as the single-task model's."""
    train, dev, test = sets
    single, _, _ = train_text_classifier(train, dev, PLAIN, {}, 0)
    model, history, _ = train_text_classifier(train, dev, {**PLAIN, **_tasks(REPLY)}, {}, 0)
    assert model.module.embedding.embedding_dim == 2  # auto width: (C - 1) + (K_reply - 1)
    assert "dev_task_reply_accuracy" in history
    metrics, report, _, _ = evaluate_classifier(model, test, {}, {})
    alone = evaluate_classifier(single, test, {}, {})[1]
    reply = report["tasks"]["reply"]
    assert reply["rows"] == len(test) and reply["accuracy"] > reply["majority_baseline_accuracy"] + 0.1
    assert report["accuracy"] >= alone["accuracy"] - 0.03
    assert metrics["task.reply.accuracy"]["value"] == reply["accuracy"]
    assert "task reply (" in evaluation_summary(report)


@pytest.mark.parametrize(
    ("model", "private"),
    [({"kind": "ngram_bag"}, True), (TINY_TRANSFORMER, False),
     ({"kind": "pretrained", "pretrained": {"max_tokens": 24, "fine_tuning": "adapters"}}, False),
     ({"kind": "hybrid", "pretrained": {"max_tokens": 24}}, True)],
    ids=["bag-dp", "transformer", "adapters", "hybrid-dp"],
)  # fmt: skip
def test_a_saved_multitask_model_serves_every_task_for_each_kind(sets, tmp_path, model, private):
    train, dev, test = (frame.iloc[:96] for frame in sets)
    params = {"epochs": 2, "batch_size": 24, "progress": False, "model": model, **_tasks(DIFFICULTY, REPLY),
              "privacy": {"enabled": private, "refuse_signal_to_noise": 0}}  # fmt: skip
    trained, _, privacy = train_text_classifier(train, dev, params, {}, 0)
    assert privacy["enabled"] is private and (not private or 0 < privacy["epsilon"] <= 1)
    save_text_classifier(trained, tmp_path / "model")
    loaded = load_text_classifier(tmp_path / "model")
    served = predict_frame(loaded, test[["subject", "body"]])
    assert list(served.columns[-6:]) == ["difficulty_label", "difficulty_probability_easy",
                                         "difficulty_probability_hard", "reply_label", "reply_probability_no",
                                         "reply_probability_yes"]  # fmt: skip
    pd.testing.assert_frame_equal(served, predict_frame(trained, test[["subject", "body"]]), atol=1e-5, rtol=1e-4)
    assert served["difficulty_label"].isin(["easy", "hard"]).all()
    np.testing.assert_allclose(served[["reply_probability_no", "reply_probability_yes"]].sum(axis=1), 1, atol=1e-5)


def test_bad_task_data_is_refused_before_the_model_is_built(sets):
    train, dev, _ = sets
    missing_encoder = {"kind": "pretrained", "pretrained": {"path": "/nonexistent/encoder"}}
    base = {**PLAIN, "model": missing_encoder}
    bad = train.assign(is_reply=train["is_reply"].where(train.index % 7 != 0, "maybe"))
    with pytest.raises(SchemaError, match=r"'reply'.*'maybe'"):  # the task's values, not the (missing) encoder
        train_text_classifier(bad, dev, {**base, **_tasks(REPLY)}, {}, 0)
    with pytest.raises(SchemaError, match="the main label column"):
        train_text_classifier(train, dev, {**base, **_tasks({**REPLY, "column": "label", "labels": [0, 1]})}, {}, 0)
    with pytest.raises(SchemaError, match="a text column"):
        train_text_classifier(train, dev, {**base, **_tasks({**REPLY, "column": "subject"})}, {}, 0)
    with pytest.raises(SchemaError, match="which the dev rows lack"):
        train_text_classifier(train, dev.drop(columns="is_reply"), {**base, **_tasks(REPLY)}, {}, 0)
    never = {**DIFFICULTY, "labels": ["easy", "hard", "medium"], "map": {**DIFFICULTY["map"], "medium-*": "medium"}}
    with pytest.raises(EmptyDatasetError, match=r"'difficulty'.*no row of label\(s\) \['medium'\]"):
        train_text_classifier(train, dev, {**base, **_tasks(never)}, {}, 0)
    with pytest.raises(PretrainedModelError):  # and the same parameters without the bad task do reach the encoder
        train_text_classifier(train, dev, {**base, **_tasks(REPLY)} | {"multitask": {"tasks": []}}, {}, 0)


def test_evaluation_skips_a_task_with_undeclared_test_values_or_a_missing_column(sets):
    train, dev, test = (frame.iloc[:120] for frame in sets)
    model, _, _ = train_text_classifier(train, dev, {**PLAIN, "epochs": 2, **_tasks(REPLY)}, {}, 0)
    odd = evaluate_classifier(model, test.assign(is_reply="perhaps"), {"useless_model": "warn"}, {})[1]
    assert (
        "outside its declared labels" in odd["tasks"]["reply"]["skipped"]
        and "'perhaps'" in odd["tasks"]["reply"]["skipped"]
    )
    assert odd["accuracy"] > 0  # the main task's figures are kept
    report = evaluate_classifier(model, test.drop(columns="is_reply"), {"useless_model": "warn"}, {})[1]
    assert report["tasks"]["reply"] == {"skipped": "the test rows have no column 'is_reply'"}
    assert "task reply: not evaluated" in evaluation_summary(report)


def test_a_compressed_multitask_model_keeps_every_head_and_onnx_export_is_refused(sets, tmp_path):
    from frugalml.models.compression import quantize
    from frugalml.models.onnx_export import check_exportable
    from frugalml.models.zoo import load_classifier

    train, dev, test = (frame.iloc[:120] for frame in sets)
    model, _, _ = train_text_classifier(train, dev, {**PLAIN, "epochs": 2, **_tasks(REPLY)}, {}, 0)
    compressed, report = quantize(model, precision="int8", calibration=dev, label_column="label",
                                  load_base=load_classifier)  # fmt: skip
    assert report["size_ratio"] > 3 and [task.name for task in compressed.tasks] == ["reply"]
    save_text_classifier(compressed, tmp_path / "c")
    loaded = load_text_classifier(tmp_path / "c")
    served, original = predict_frame(loaded, test), predict_frame(model, test)
    assert list(served.columns) == list(original.columns)  # the task's columns too
    assert (served["reply_label"] == original["reply_label"]).mean() >= 0.95
    np.testing.assert_allclose(served["reply_probability_yes"], original["reply_probability_yes"], atol=0.05)
    with pytest.raises(CompressionError, match="multi-task model"):
        check_exportable(model)
