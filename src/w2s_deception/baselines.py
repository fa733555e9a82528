"""Reference points for the ladder: what surface features alone achieve on the harmless test split."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from .data import load_pairs


def shorter_reply_confidence(chosen: list[str], rejected: list[str]) -> np.ndarray:
    """1 where the chosen reply is shorter, 0 where longer, 0.5 on ties (HH's length bias)."""
    lc, lr = np.array([len(c) for c in chosen]), np.array([len(r) for r in rejected])
    return np.where(lc < lr, 1.0, np.where(lc > lr, 0.0, 0.5))


def bag_of_words_confidence(train: tuple[list[str], list[str]], test: tuple[list[str], list[str]],
                            seed: int = 0) -> np.ndarray:
    """A pairwise logistic regression on tf-idf word/bigram counts of the two replies (no LM at all).

    Fit on x_c − x_r with pair order randomised, no intercept: the Bradley–Terry reward model with
    a bag-of-words "trunk".
    """
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(train[0] + train[1])
    diff = vec.transform(train[0]) - vec.transform(train[1])
    sign = np.random.default_rng(seed).choice([-1.0, 1.0], size=diff.shape[0])
    clf = LogisticRegression(C=1.0, fit_intercept=False, max_iter=2000)
    clf.fit(diff.multiply(sign[:, None]).tocsr(), (sign > 0).astype(int))
    return clf.predict_proba(vec.transform(test[0]) - vec.transform(test[1]))[:, 1]


def baseline_accuracies(data_dir=None, n_pairs: int | None = None) -> dict[str, float]:
    """Test accuracy of the shorter-reply rule and the bag-of-words RM trained on `train_gt`."""
    tr = load_pairs("hh-harmless/train_gt", data_dir, limit=n_pairs).to_dict()
    te = load_pairs("hh-harmless/test", data_dir, limit=n_pairs).to_dict()
    short = shorter_reply_confidence(te["chosen"], te["rejected"])
    bow = bag_of_words_confidence((tr["chosen"], tr["rejected"]), (te["chosen"], te["rejected"]))
    return {"shorter reply": float((short >= 0.5).mean()), "bag of words": float((bow >= 0.5).mean())}
