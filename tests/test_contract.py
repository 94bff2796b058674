"""One contract every estimator keeps (the benfred/implicit pattern: a mixin of tests, one subclass per
estimator): fit/predict shapes, determinism, partial_fit, save/load, pickling, clone, the not-fitted error."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from support import small_model, raw_output

import fastafm


class EstimatorContract:
    cls: type = fastafm.AFMRegressor

    @pytest.fixture
    def data(self):
        X, y, _ = fastafm.make_planted(n_rows=300, n_fields=4, cardinality=5, random_state=1)
        return X, (y > np.median(y)).astype(int) if self.cls.__name__.endswith("Classifier") else y

    def test_fit_predict_shapes_and_determinism(self, data):
        X, y = data
        a, b = small_model(self.cls).fit(X, y), small_model(self.cls).fit(X, y)
        assert a.predict(X).shape == (X.shape[0],) and a.n_features_in_ == X.shape[1]
        np.testing.assert_array_equal(raw_output(a)(X), raw_output(b)(X))
        assert len(a.history_) == a.n_epochs_done_ == 3

    def test_partial_fit_continues(self, data):
        X, y = data
        model = small_model(self.cls).fit(X, y)
        before = raw_output(model)(X)
        model.partial_fit(X, y)
        assert model.n_epochs_done_ == 4 and not np.array_equal(raw_output(model)(X), before)

    def test_save_load_and_pickle_round_trip(self, data, tmp_path):
        X, y = data
        model = small_model(self.cls).fit(X, y)
        model.save(tmp_path / "m.afm")
        for copy in (fastafm.load(tmp_path / "m.afm"), pickle.loads(pickle.dumps(model))):
            assert type(copy) is self.cls and copy.get_params() == model.get_params()
            np.testing.assert_array_equal(raw_output(copy)(X), raw_output(model)(X))

    def test_not_fitted(self, data):
        with pytest.raises(AttributeError, match="not fitted"):
            small_model(self.cls).predict(data[0])


class TestAFMRegressor(EstimatorContract):
    cls = fastafm.AFMRegressor


class TestAFMClassifier(EstimatorContract):
    cls = fastafm.AFMClassifier


class TestFMRegressor(EstimatorContract):
    cls = fastafm.FMRegressor


class TestFMClassifier(EstimatorContract):
    cls = fastafm.FMClassifier
