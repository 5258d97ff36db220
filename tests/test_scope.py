"""The out-of-scope model of TextClassifier: statistics, p-values, merging, persistence."""

import numpy as np
import pytest

from fixtures import TRAIN
from slmstack import ConfigError, Example, TextClassifier
from slmstack.skills._scope import ScopeModel


def blobs(seed, n_per_class, centres):
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + rng.normal(scale=0.3, size=(n_per_class, 2)) for c in centres])
    y = np.repeat(np.arange(len(centres)), n_per_class)
    return x.astype(np.float32), y.astype(np.int64)


CENTRES = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])


def test_p_values_are_calibrated_in_scope_and_minimal_far_away():
    x, y = blobs(0, 200, CENTRES)
    x_val, _ = blobs(1, 200, CENTRES)
    model = ScopeModel.fit(x, y, 3, x_val)
    x_test, _ = blobs(2, 400, CENTRES)
    flagged = (model.p_values(x_test) < 0.05).mean()
    assert 0.02 < flagged < 0.09  # about alpha of in-scope texts, by construction
    far = np.array([[20.0, 20.0], [-15.0, 4.0]], dtype=np.float32)
    assert np.allclose(model.p_values(far), 1 / (len(x_val) + 1))
    centre_p = model.p_values(CENTRES.astype(np.float32))
    assert (centre_p > 0.9).all()


def test_merge_with_the_same_encoder_equals_fitting_on_all_the_data():
    x1, y1 = blobs(0, 50, CENTRES)
    x2, y2 = blobs(1, 30, CENTRES[:2])  # the second batch lacks class 2
    x_val, _ = blobs(3, 40, CENTRES)
    merged, stale = ScopeModel.fit(x1, y1, 3, x_val).merged(x2, y2, 3, x_val, same_encoder=True)
    whole = ScopeModel.fit(np.concatenate([x1, x2]), np.concatenate([y1, y2]), 3, x_val)
    assert stale == []
    np.testing.assert_allclose(merged.counts, whole.counts)
    np.testing.assert_allclose(merged.means, whole.means, atol=1e-9)
    np.testing.assert_allclose(merged.scatter, whole.scatter, atol=1e-8)
    np.testing.assert_allclose(merged.reference, whole.reference, atol=1e-8)


def test_merge_after_the_encoder_changed_reports_stale_classes():
    x1, y1 = blobs(0, 50, CENTRES)
    x2, y2 = blobs(1, 30, CENTRES[:2])
    merged, stale = ScopeModel.fit(x1, y1, 3, x1).merged(x2, y2, 4, x2, same_encoder=False)
    assert stale == [2]  # kept its old mean; class 3 (new, no data) has none
    assert merged.counts[3] == 0 and merged.scatter_n == len(x2)
    assert np.isfinite(merged.scores(x2)).all()


def test_tensors_round_trip():
    x, y = blobs(0, 20, CENTRES)
    model = ScopeModel.fit(x, y, 3, x)
    again = ScopeModel.from_tensors(model.tensors())
    np.testing.assert_array_equal(again.p_values(x), model.p_values(x))


def test_classifier_flags_out_of_scope_text_and_round_trips(tmp_path):
    clf = TextClassifier(scope_alpha=0.0).fit(TRAIN)
    in_scope, off_topic = clf.predict(["my card has not arrived yet", "photosynthesis in ferns"])
    p_in, p_off = in_scope.data["in_scope_p"], off_topic.data["in_scope_p"]
    assert p_off < p_in
    assert in_scope.abstained is None and off_topic.abstained is None  # alpha 0: flags off
    clf.set_params(scope_alpha=p_off + 1e-9)
    assert clf.predict(["photosynthesis in ferns"])[0].abstained == "out_of_scope"
    assert clf.predict(["my card has not arrived yet"])[0].abstained is None
    loaded = TextClassifier.load(clf.save(tmp_path / "skill"))
    assert loaded.predict(["photosynthesis in ferns"])[0].abstained == "out_of_scope"


def test_bad_scope_alpha_is_named():
    with pytest.raises(
        ConfigError, match=r"'scope_alpha' parameter of TextClassifier must be .* Got 1\.5"
    ):
        TextClassifier(scope_alpha=1.5).fit(TRAIN)


def test_resume_keeps_every_class_in_scope():
    clf = TextClassifier().fit(TRAIN)
    clf.resume([*TRAIN, Example("card delivery is late", "card"), Example("no card yet", "card")])
    assert clf.scope_ is not None and (clf.scope_.counts > 0).all()
    assert clf.scope_.counts.sum() > len(TRAIN)  # head: old and new statistics merged
