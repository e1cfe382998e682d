"""Membership-inference audits on real e-mails: LiRA-lite beats the loss threshold, and DP defeats both."""

from __future__ import annotations

import pytest

from frugalml.nodes.evaluate import lira_membership_inference, membership_inference
from frugalml.nodes.train import train_text_classifier

pytestmark = pytest.mark.slow

OVERFIT = {"epochs": 20, "patience": 20, "progress": False, "features": {"buckets": 8192},
           "model": {"embedding_dim": 16}, "privacy": {"enabled": False}}  # fmt: skip
PRIVATE = {"epochs": 5, "batch_size": 50, "progress": False, "features": {"buckets": 8192},
           "privacy": {"enabled": True, "target_epsilon": 1.0, "refuse_signal_to_noise": 0}}  # fmt: skip


def _audit(sample_emails, params):
    members, non_members, dev = sample_emails.iloc[:200], sample_emails.iloc[200:400], sample_emails.iloc[400:]

    def recipe(frame):
        return train_text_classifier(frame, dev, params, {}, 0)[0]

    target = recipe(members)
    lira = lira_membership_inference(target, members, non_members, recipe, {}, shadows=4, seed=0)
    return lira, membership_inference(target, members, non_members, {})


def test_lira_finds_the_members_of_an_overfit_model_better_than_the_loss_threshold(sample_emails):
    lira, loss = _audit(sample_emails, OVERFIT)
    assert lira["auc"] > 0.85 and lira["auc"] > loss["auc"]
    assert lira["tpr_at_1pct_fpr"] > 0.1 and lira["shadows"] == 4


def test_dp_at_epsilon_one_leaves_lira_at_chance(sample_emails):
    lira, _ = _audit(sample_emails, PRIVATE)
    assert lira["auc"] < 0.62


def test_lira_rejects_an_odd_number_of_shadows(sample_emails):
    with pytest.raises(ValueError, match="even number"):
        lira_membership_inference(None, sample_emails, sample_emails, None, {}, shadows=3)
