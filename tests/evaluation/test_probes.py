import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from gair.evaluation.probes import (
    Labelled,
    LogisticProbe,
    few_labels,
    knn_classifier,
    linear_classifier,
    mean_iou,
    r2_per_target,
    ridge_regressor,
    segmentation_probe,
    token_labels,
)


def _splits(x, y, seed=0):
    order = np.random.default_rng(seed).permutation(len(y))
    parts = np.array_split(order, [int(0.6 * len(y)), int(0.8 * len(y))])
    return {name: Labelled(x[p], y[p]) for name, p in zip(("train", "val", "test"), parts,
                                                            strict=True)}


def test_linearly_separable_classes_are_classified_perfectly():
    rng = np.random.default_rng(0)
    centres = np.eye(4, 16) * 8
    y = rng.integers(0, 4, 400)
    x = centres[y] + rng.normal(size=(400, 16))
    result = linear_classifier(_splits(x, y))
    assert result["acc"] == 1.0 and result["macro_f1"] == 1.0
    assert knn_classifier(_splits(x, y))["acc"] == 1.0


def test_noise_features_score_at_chance():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2000, 8)), rng.integers(0, 2, 2000)
    assert abs(linear_classifier(_splits(x, y))["acc"] - 0.5) < 0.08


def test_logistic_probe_matches_scikit_learn():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 10))
    y = (x @ rng.normal(size=(10, 3)) + rng.normal(size=(500, 3))).argmax(1)
    for c in (0.01, 1.0):
        ours = LogisticProbe(c, max_iter=500).fit(x, y)
        theirs = LogisticRegression(C=c, max_iter=5000, tol=1e-10).fit(x, y)
        np.testing.assert_allclose(np.exp(ours.predict_log_proba(x)), theirs.predict_proba(x),
                                   atol=2e-3)


def test_ridge_recovers_a_linear_target_and_chooses_weak_regularisation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 5))
    y = np.column_stack([x @ [1, 2, 0, 0, 1], x @ [0, 0, 3, 1, 0]])
    result = ridge_regressor(_splits(x, y), target_names=("a", "b"))
    assert result["r2"] > 0.999 and result["rmse"] < 0.05 and result["alpha"] <= 1.0
    assert set(result) >= {"r2/a", "r2/b", "rmse/a", "rmse/b"}


def test_ridge_recovers_a_single_linear_target():
    # One target of shape [N]: scored as one column, not broadcast against the predictions.
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 5))
    result = ridge_regressor(_splits(x, x @ [1.0, -2.0, 0.0, 0.5, 0.0]))
    assert result["r2"] > 0.999 and result["alpha"] <= 1.0


def test_r2_per_target_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        r2_per_target(np.zeros((4, 1)), np.zeros(4))


def test_ridge_falls_back_to_the_train_mean_when_features_predict_nothing():
    # What the features say on train is reversed on val (as a relation that does not carry
    # to other places): every finite alpha scores below the mean on val, so the mean is
    # chosen and test R² is exactly the mean's.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(600, 5))
    splits = _splits(x, x[:, 0] + rng.normal(scale=0.1, size=600))
    val = splits["val"]
    splits["val"] = Labelled(val.x, -val.y)
    result = ridge_regressor(splits)
    assert result["alpha"] == np.inf
    test = splits["test"].y
    mean_r2 = 1 - ((test - splits["train"].y.mean()) ** 2).sum() / ((test - test.mean()) ** 2).sum()
    assert result["r2"] == pytest.approx(mean_r2)


def test_few_labels_keeps_at_most_n_per_class():
    y = np.array([0] * 50 + [1] * 3 + [2] * 20)
    kept = y[few_labels(y, 5, seed=0)]
    assert np.bincount(kept).tolist() == [5, 3, 5]
    assert len(few_labels(y, None, 0)) == len(y)


def test_token_labels_take_each_footprints_majority():
    mask = np.zeros((1, 4, 4), dtype=np.uint8)
    mask[0, :2, :2] = 3
    mask[0, 2:, 2:] = [[1, 1], [1, 2]]
    assert token_labels(mask, (2, 2))[0].tolist() == [[3, 0], [0, 1]]
    with pytest.raises(ValueError, match="multiple"):
        token_labels(np.zeros((1, 5, 5), np.uint8), (2, 2))


def test_mean_iou_by_hand():
    truth = np.array([1, 1, 2, 2])
    miou, per_class = mean_iou(truth, np.array([1, 2, 2, 2]))
    assert per_class == {1: 0.5, 2: 2 / 3} and miou == pytest.approx((0.5 + 2 / 3) / 2)


def test_segmentation_head_segments_tokens_whose_features_say_their_class():
    # Token features one-hot encode the class of their 4 x 4 footprint: the head is exact
    # on tokens, and bilinear upsampling only blurs class boundaries.
    rng = np.random.default_rng(4)
    token_classes = rng.integers(1, 4, size=(60, 4, 4))
    features = np.eye(5, dtype=np.float32)[token_classes].transpose(0, 3, 1, 2)
    features += rng.normal(scale=0.05, size=features.shape).astype(np.float32)
    masks = token_classes.repeat(4, axis=1).repeat(4, axis=2).astype(np.uint8)
    result = segmentation_probe(_splits(features, masks))
    assert result["miou"] > 0.7 and result["pixel_acc"] > 0.8
    constant = np.zeros_like(features)
    assert segmentation_probe(_splits(constant, masks))["miou"] < 0.3


def test_a_probe_needs_every_split():
    x, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="'val'"):
        linear_classifier({"train": Labelled(x, y), "val": Labelled(x[:0], y[:0]),
                           "test": Labelled(x, y)})


def test_low_label_scores_are_the_mean_over_label_draws():
    import pandas as pd

    from gair.evaluation.suite import linear_and_knn
    from gair.parameters import EvaluationTaskParams as Tasks

    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 300)
    x = np.eye(3, 6)[y] * 1.5 + rng.normal(size=(300, 6))
    split = pd.Series(np.array(["train", "val", "test"])[np.arange(300) % 3])
    one = [linear_and_knn(x, y, split, Tasks(labels_per_class=4, points_seed=s))
           for s in (7, 8, 9)]
    mean = linear_and_knn(x, y, split, Tasks(labels_per_class=4, points_seed=7, label_draws=3))
    for key in ("acc", "macro_f1", "knn_acc"):
        assert mean[key] == pytest.approx(np.mean([r[key] for r in one]))
    assert len({r["acc"] for r in one}) > 1  # the draws differ, so the mean is not one of them
    assert mean["n_train"] == 12
    every = Tasks(labels_per_class=None, label_draws=3)  # all labels: one fit
    assert linear_and_knn(x, y, split, every)["n_train"] == 100
