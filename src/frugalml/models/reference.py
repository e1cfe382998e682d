"""The reference model of BENCHMARKS.md, defined once: TF-IDF word 1-2 grams (sublinear, min_df 2) + LR(C=10).

It is the yardstick the benchmarks compare frugalml's models with, and one of the clean stage's fold models
(``clean.models: [tfidf_lr]``). Plain scikit-learn, no DP.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression


class TfidfLogisticRegression:
    """TF-IDF(1-2 grams, sublinear tf, min_df 2) + ``LogisticRegression(C=10, max_iter=2000)``.

    Args:
        C: Inverse regularisation strength.
        max_iter: Solver iterations.
    """

    def __init__(self, C: float = 10.0, max_iter: int = 2000) -> None:
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        self.classifier = LogisticRegression(C=C, max_iter=max_iter)

    def fit(self, texts: Sequence[str], labels: np.ndarray) -> TfidfLogisticRegression:
        """Fit on ``texts`` with integer class labels; returns self."""
        self.classifier.fit(self.vectorizer.fit_transform(list(texts)), labels)
        return self

    @property
    def classes_(self) -> np.ndarray:
        """The class indices seen in fitting (columns of :meth:`predict_proba`)."""
        return self.classifier.classes_

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, one column per class in :attr:`classes_`."""
        return self.classifier.predict_proba(self.vectorizer.transform(list(texts)))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The most probable class of each text."""
        return self.classifier.predict(self.vectorizer.transform(list(texts)))
