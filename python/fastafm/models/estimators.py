"""scikit-learn style estimators: AFM and FM, each for regression (squared loss) and classification (logistic).

The four classes are thin: hyperparameters (fastafm.models.hyperparams), their objective (fastafm.objectives)
and delegation to the fitting (fastafm.models.fitting) and prediction (fastafm.models.base) they share. FM and
AFM are siblings over one base: FM fixes uniform pooling and p = 1 (fastafm.models.registry.FM_FIXED), AFM
pools by attention (or uniformly with attention=False).
"""
from __future__ import annotations

import numpy as np

from .._compat import ClassifierMixin, RegressorMixin
from ..objectives import REGRESSION_LOSSES, objective
from ..objectives.logistic import LOGISTIC, positive_probability, probabilities
from ..objectives.squared import SQUARED
from . import registry as _registry
from .calibration import sampling_offset
from .fitting import _Fitting
from .hyperparams import store

class _AFM(_Fitting):
    """AFM: attention pooling over the pairs (uniform with attention=False); see AFMRegressor."""

    def __init__(
        self,
        embedding_dim=64,
        attention_dim=64,
        dropout=0.5,
        attention_l2=2.0,
        l2=0.0,
        frequency_l2=1.0,
        learning_rate="auto",
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        attention=True,
        n_threads=0,
        random_state=None,
        verbose=0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=2,
        tol=0.0,
        early_stopping_metric=None,
        linear_fallback=True,
        pretrain="fm",
        loss="squared",
        field_aware=None,
        fields=None,
        precision="fp32",
    ):
        store(self, locals())

    def _field_term(self, name: str, attr: str):
        params = self._fitted_state().params
        if name not in params:
            raise AttributeError(f"{attr}: this model's field_aware_={self.field_aware_!r} has no {name}")
        return params[name]

    field_aware_ = property(lambda self: _registry.kind(type(self)).fitted_field_aware(
                                {"field_aware": self.field_aware}, self._fitted_state().fields is not None),
                            doc="The field_aware mode the fitted model has: `field_aware` with \"auto\" resolved "
                                "(\"both\" when the fit knew the fields and stopped early, else None).")

    field_weights_ = property(lambda self: self._field_term("R", "field_weights_"),
                              doc="field_aware 'weights' or 'both': the learned weights r of the field pairs on "
                                  "the pooled pairs, (n_fields, n_fields), symmetric (AttributeError otherwise).")
    field_logits_ = property(lambda self: self._field_term("S", "field_logits_"),
                             doc="field_aware 'logits' or 'both': the learned terms s of the field pairs in the "
                                 "attention logits, (n_fields, n_fields), symmetric (AttributeError otherwise).")
    fields_ = property(lambda self: self._state_attr(lambda s: s.fields, "fields_"),
                       doc="A field-aware model's field of every feature, int32 (n_features,); None otherwise.")


class _FM(_Fitting):
    """FM (Rendle 2010), the AFM paper's baseline, on the same core: uniform pooling (every pair weight 1,
    computed in O(k·nnz) by the sum-of-squares identity) with the projection p fixed at 1, so the pair term is
    exactly sum_{i<j} <v_i, v_j> x_i x_j. The attention network is unused, kept at its smallest shape."""

    def __init__(
        self,
        embedding_dim=64,
        dropout=0.5,
        l2=0.0,
        frequency_l2=1.0,
        learning_rate="auto",
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        n_threads=0,
        random_state=None,
        verbose=0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=2,
        tol=0.0,
        early_stopping_metric=None,
        linear_fallback=True,
        loss="squared",
    ):
        store(self, locals())


class _FwFM(_Fitting):
    """FwFM (Pan et al., WWW 2018): FM with one learned weight per pair of fields,
    y = w0 + sum_i w_i x_i + sum_{i<j} r_{F(i),F(j)} <v_i, v_j> x_i x_j, with R symmetric (n_fields x n_fields,
    starting at 1: an FwFM starts as the FM). The core computes the pair term from per-field sums, O(nnz k +
    F_row^2 k) a row (docs/model.md, "FwFM").

    `fields` is a hyperparameter, not a fit argument: it describes the features, not the samples, like
    HistGradientBoosting's `categorical_features`, so clone, get_params, grid searches and model files keep it.
    None gives one field (a single learned scale of FM's pair term)."""

    def __init__(
        self,
        embedding_dim=64,
        dropout=0.5,
        l2=0.0,
        frequency_l2=1.0,
        learning_rate="auto",
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        fields=None,
        n_threads=0,
        random_state=None,
        verbose=0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=2,
        tol=0.0,
        early_stopping_metric=None,
        linear_fallback=True,
    ):
        store(self, locals())

    field_weights_ = property(lambda self: self._fitted_state().params["R"],
                              doc="The learned field-pair weights R, shape (n_fields, n_fields), symmetric.")
    fields_ = property(lambda self: self._state_attr(lambda s: s.fields, "fields_"),
                       doc="The field of every feature the model was fitted with, int32 (n_features,).")


class _Regression(_Fitting):
    """Squared loss: float targets, predict = the raw model output y(x), eval RMSE (clipped) and MAE; or, with
    loss="logistic", rate targets in [0, 1] (fastafm.objectives.rate): predict = the probability. No
    decision_function: scikit-learn's regressors have none (check_regressors_no_decision_function)."""

    @property
    def _objective(self):
        return objective(REGRESSION_LOSSES.get(getattr(self, "loss", "squared"), "squared"))

    _metrics = SQUARED.metrics  # the class's default loss's; fit checks the metric against the objective's

    label_range_ = property(lambda self: self._state_attr(lambda s: _present(s.label_range, "label_range_"),
                                                          "label_range_"),
                            doc="Training label range, used to clip predictions in eval RMSE.")

    def predict(self, X) -> np.ndarray:
        """Predicted values, float64 of shape (n_rows,): the raw model output y(x), or with loss="logistic" the
        probability sigmoid(y(x)) of the rate."""
        return self._objective.predict(self._raw_output(X), None)

    def _serving_outputs(self, state) -> dict:
        objective = self._objective
        return {"predict": None if objective is SQUARED else (lambda z: objective.predict(z, None))}

    def score(self, X, y, sample_weight=None) -> float:
        """R² of the predictions (scikit-learn's r2_score), rows weighted by `sample_weight`."""
        X, w = self._score_inputs(X, sample_weight)
        return super().score(X, y, sample_weight=w)


class _Classification(_Fitting):
    """Logistic loss on two labels (any two values; classes_[1] is the positive class)."""

    _objective = LOGISTIC
    _metrics = LOGISTIC.metrics

    classes_ = property(lambda self: self._state_attr(lambda s: _present(s.classes, "classes_"), "classes_"),
                        doc="The two class labels, sorted; classes_[1] is the positive class.")

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _logit_offset(self) -> float:
        """log(negative_sampling_rate): the log-odds correction from the training rows, whose negatives were kept
        with that probability, to the full population (0 when nothing was downsampled)."""
        return sampling_offset(getattr(self, "negative_sampling_rate", 1.0))

    def _serving_outputs(self, state) -> dict:
        classes = state.classes
        return {"decision": None, "proba": positive_probability,
                "predict": lambda z: LOGISTIC.predict(z, classes)}

    def decision_function(self, X) -> np.ndarray:
        """Raw model output y(x), the logit of classes_[1], float64 of shape (n_rows,); with
        negative_sampling_rate r < 1 plus log(r) (the population's log-odds)."""
        return self._raw_output(X)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_rows, 2), columns in the order of `classes_` (of the full population
        when `negative_sampling_rate` < 1: docs/explain.md)."""
        return probabilities(self.decision_function(X))

    def predict(self, X) -> np.ndarray:
        """Predicted class labels."""
        return LOGISTIC.predict(self.decision_function(X), self.classes_)

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy (scikit-learn's accuracy_score), rows weighted by `sample_weight`."""
        X, w = self._score_inputs(X, sample_weight)
        return super().score(X, y, sample_weight=w)


def _present(value, name: str):
    if value is None:
        raise AttributeError(name)
    return value


class AFMRegressor(_Regression, RegressorMixin, _AFM):
    """Attentional Factorization Machine for regression (squared loss, as in Xiao et al. 2017).

    Parameters
    ----------
    embedding_dim : int, default 64
        Size k of the feature embeddings (rows of V).
    attention_dim : int, default 64
        Size t of the attention network's hidden layer.
    dropout : float in [0, 1), default 0.5
        Drop ratio on the pooled pair-wise interaction layer during training (never at prediction).
    attention_l2 : float, default 2.0
        L2 strength λ on the attention weights W, added once per mini-batch (the paper's λ). Without it the
        attention network overfits within a few epochs on data like Frappe (docs/accuracy.md).
    l2 : float, default 0.0
        L2 strength on the rows of V and w touched by a mini-batch (once per batch: frequent ids pay most).
    frequency_l2 : float, default 1.0
        L2 on V and w shared out by frequency: per epoch feature i pays frequency_l2 / (2 n_i) times
        ||V[i]||^2 + w[i]^2, n_i its occurrences in the training rows, so rare ids are shrunk and frequent ones
        barely (docs/model.md; chosen by measurement, docs/accuracy.md).
    learning_rate : float or "auto", default "auto"
        Step size; the batch loss is summed over rows (see docs/model.md). "auto": the optimizer's own
        default, measured on the tuning data (docs/accuracy.md): adagrad 0.1 (FM 0.05), sgd and adam as in
        fastafm.models.hyperparams.AUTO_LEARNING_RATES; the value used is `learning_rate_` after fit.
    optimizer : {"adagrad", "sgd", "adam"}, default "adagrad"
        Adam is lazy and sparse: a row of V and w is updated (and its moments decayed) only in the batches
        that touch it, bias-corrected by its own step count; beta1 0.9, beta2 0.999, eps 1e-8 (docs/model.md).
    batch_size : int, default 128
    n_epochs : int, default 20
    init_std : float, default 0.01
        Standard deviation of the initial embeddings.
    attention : bool, default True
        False gives FM-like uniform pooling (every pair weight 1), the paper's ablation.
    n_threads : int, default 0
        OpenMP threads for training and prediction; 0 uses all cores.
    random_state : int, numpy Generator or None
        Seeds initialisation, shuffling and dropout; with a fixed seed and n_threads a fit is bit-identical.
    verbose : int, default 0
        0: silent. 1: one line per epoch (loss, eval metrics, seconds) to stdout, and a tqdm progress bar
        within each epoch (rows/s) on stderr when stderr is a terminal. 2: the progress bar also when it is
        not (e.g. in a log file). Without tqdm installed there is no bar.
    early_stopping : "auto", True or False, default "auto"
        Early stopping, scikit-learn's way (HistGradientBoosting, MLP): after every epoch the monitored score
        is computed on the `eval_set` given to `fit`, or, without one, on `validation_fraction` of the
        training rows held out; training stops once `n_iter_no_change` epochs in a row did not improve it by
        more than `tol`, and the parameters (and optimizer state) of the best epoch are restored; `n_epochs`
        is the maximum. "auto": on when an `eval_set` is given or the training set has at least 1,000 rows.
        `partial_fit` never stops early.
    validation_fraction : float in (0, 1), default 0.1
        Share of the training rows held out for early stopping when no `eval_set` is given: a seeded split
        (from `random_state`), stratified by class for the classifiers; from a CacheFile a seeded subset of
        every block's rows (docs/cache.md). The held-out rows are not trained on.
    n_iter_no_change : int >= 1, default 2
        Epochs without improvement after which early stopping stops (docs/accuracy.md: why 2).
    tol : float >= 0, default 0.0
        Improvement of the monitored score needed to count (absolute; 0: any improvement).
    early_stopping_metric : str or None, default None
        The eval metric early stopping watches: "rmse" (the default; predictions clipped to the training
        label range, as the paper's code) or "mae" for the regressor, "logloss" (the default) or "auc"
        for the classifier. Also what `eval_set` alone (early_stopping=False) reports in best_epoch_.
    pretrain : "fm", "linear+fm" or None, default "fm"
        "fm": `fit` first trains an FM (FMRegressor/FMClassifier) with this estimator's embedding_dim,
        dropout, l2, optimizer, batch size, n_epochs, seed and early stopping on the same validation rows, at
        half the learning rate (the ratio of the FM's and AFM's defaults), and warm-starts AFM from its w0, w
        and V, as the AFM paper does (docs/accuracy.md: it helps on every tuning set). "linear+fm": first the
        linear model w0 + w.x (that FM with V = 0 throughout), then the FM from its w0 and w, then AFM; with
        early stopping the kept model is the mix of the AFM and the linear model that validates best
        (`linear_share_`; 1: the linear model itself, V = 0, best_epoch_ 0). None: AFM from its random initialisation. `fit(..., init=model)` overrides it; `partial_fit`
        never pretrains.
    precision : "fp32" or "bf16", default "fp32"
        Training arithmetic of the attention network's GEMMs (pair products times W, and their gradients):
        "bf16" rounds their inputs to bfloat16 and sums in float32 (vdpbf16ps; 1.4-1.55x float32's training
        speed at k = t = 64, bench/RESULTS.md), weights and optimizer state stay float32; it needs a CPU with
        AVX512_BF16 (fit raises a ValueError naming it otherwise). A training setting only: the model's weights are float32 and it
        predicts in float32 (docs/model.md, "Precision").

    Attributes
    ----------
    w0_, w_, V_, W_, b_, h_, p_ : learned parameters (float32)
    n_features_in_ : int
    history_ : list of dict, one per epoch run (train_loss, seconds, and eval_* metrics with an eval_set)
    best_epoch_, best_score_ : with an eval_set or a held-out validation set, the epoch (1-based) with the
        best `early_stopping_metric` and its value; the parameters are that epoch's with early stopping,
        else the last epoch's. With the linear fallback's mix (`linear_share_` > 0) best_score_ is the kept
        mix's validation score (and best_epoch_ 0 when the linear model alone is kept).
    validation_score_ : float array, the monitored score after every epoch (as in history_)
    do_early_stopping_ : bool, whether this fit stopped early (early_stopping resolved)
    pretrain_history_ : list of dict or None, the history of the pretraining FM (None: no pretraining)
    linear_history_ : list of dict or None, the history of the linear model fitted beside the model
        (pretrain="linear+fm" or linear_fallback): one record per L2 of the exact stage, or per epoch of the
        SGD stage (docs/accuracy.md)
    linear_share_ : float, the linear model's share in the kept model (pretrain="linear+fm" or
        linear_fallback, with early stopping): the outputs are (1 - s) model + s linear, s from 0 (the trained
        model) to 1 (the linear model) in steps of 0.05, chosen on the validation rows (docs/model.md)
    n_epochs_done_ : int, epochs run (partial_fit continues with the next epoch's shuffling and dropout)
    label_range_ : (float, float), training label range used to clip predictions in eval RMSE
    """



class AFMClassifier(_Classification, ClassifierMixin, _AFM):
    """Attentional Factorization Machine for binary classification (logistic loss, e.g. click-through rate).

    Takes the same parameters as AFMRegressor, and `class_weight`. Labels may be any two values ({0, 1},
    {-1, 1}, strings); `classes_[1]` is the positive class.

    class_weight : None, "balanced" or dict {label: weight}, default None
        As scikit-learn (sklearn.utils.class_weight.compute_sample_weight): each row's loss times its class's
        weight, and times its `sample_weight`; "balanced" gives class c the weight n_rows / (2 * count(c)) over
        the rows `fit` trains on (before a validation_fraction split); a dict gives the listed classes their
        weights and the others 1 (a label that is not a class is a ValueError). `partial_fit` takes a dict,
        not "balanced". From a CacheFile the class weights multiply the cache's stored weights ("balanced"
        counts the classes over the whole cache).
    field_aware : "auto", "weights", "logits", "both" or None, default "auto"
        Field-pair terms (docs/model.md, "Field-aware AFM"); `fields` gives the field of every feature.
        "auto": "both" where the fields are known (`fields` given, or a raw log's cache, which carries them)
        and the fit stops early, None otherwise (no fields; early_stopping=False or too few rows without an
        eval_set; partial_fit); the mode a fitted model has is `field_aware_`. The classifier's default because
        "both" won or tied on every classification tuning set (docs/accuracy.md, "Field-aware AFM by
        default"); AFMRegressor's default stays None (worse on Frappe's regression).
    """

    def __init__(
        self,
        embedding_dim=64,
        attention_dim=64,
        dropout=0.5,
        attention_l2=2.0,
        l2=0.0,
        frequency_l2=1.0,
        learning_rate="auto",
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        attention=True,
        n_threads=0,
        random_state=None,
        verbose=0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=2,
        tol=0.0,
        early_stopping_metric=None,
        linear_fallback=True,
        pretrain="fm",
        class_weight=None,
        negative_sampling_rate=1.0,
        field_aware="auto",
        fields=None,
        precision="fp32",
    ):
        store(self, locals())



class FMRegressor(_Regression, RegressorMixin, _FM):
    """Factorization Machine for regression (squared loss): y = w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j.

    The AFM paper's baseline, trained by the same core with the same optimizer, mini-batching, dropout (on
    the pooled pair-wise vector, as the authors' FM code) and early stopping. Parameters and attributes are
    those of AFMRegressor without the attention ones (attention_dim, attention_l2, attention). A fitted FM is
    the usual warm start of an AFM: ``AFMRegressor(...).fit(X, y, init=fm)``.

    Defaults as AFM's; learning_rate "auto" resolves to the FM's own values (adagrad 0.05, AFM's 0.1), from
    the Frappe runs in docs/accuracy.md.

    FM and AFM are siblings (not subclasses of each other) over one base: FM pools uniformly with p fixed
    at 1, so `p_` stays all ones and `W_`, `b_`, `h_` are unused placeholders of attention_dim 1.
    """


class FMClassifier(_Classification, ClassifierMixin, _FM):
    """Factorization Machine for binary classification (logistic loss); see FMRegressor and AFMClassifier (class_weight
    included)."""

    def __init__(
        self,
        embedding_dim=64,
        dropout=0.5,
        l2=0.0,
        frequency_l2=1.0,
        learning_rate="auto",
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        n_threads=0,
        random_state=None,
        verbose=0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=2,
        tol=0.0,
        early_stopping_metric=None,
        linear_fallback=True,
        class_weight=None,
        negative_sampling_rate=1.0,
    ):
        store(self, locals())


class FwFMRegressor(_Regression, RegressorMixin, _FwFM):
    """Field-weighted Factorization Machine for regression (squared loss; Pan et al., WWW 2018).

    y = w0 + sum_i w_i x_i + sum_{i<j} r_{F(i),F(j)} <v_i, v_j> x_i x_j. Parameters are FMRegressor's plus
    `fields`: the field of every feature (an array of length n_features such as `FieldEncoder().fields_` or
    the third output of `load_libffm`, a dict {id: field}, or (start, stop) id ranges); None: one field.
    Dropout acts on the pooled pair-wise vector as in FM (a mask per dimension of sum_{i<j} r v_i * v_j x_i x_j).
    Fitted attributes: FM's, `field_weights_` (R, symmetric) and `fields_`. `fit(..., init=fm)` warm-starts
    w0, w and V from a fitted FM (R starts at 1, so the FwFM starts as that FM).
    """


class FwFMClassifier(_Classification, ClassifierMixin, _FwFM):
    """Field-weighted Factorization Machine for binary classification (logistic loss); see FwFMRegressor and
    AFMClassifier (class_weight included)."""

    def __init__(
        self,
        embedding_dim=64,
        dropout=0.5,
        l2=0.0,
        frequency_l2=1.0,
        learning_rate="auto",
        optimizer="adagrad",
        batch_size=128,
        n_epochs=20,
        init_std=0.01,
        fields=None,
        n_threads=0,
        random_state=None,
        verbose=0,
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=2,
        tol=0.0,
        early_stopping_metric=None,
        linear_fallback=True,
        class_weight=None,
    ):
        store(self, locals())


for _cls, _loss, _family in ((AFMRegressor, "squared", "afm"), (AFMClassifier, "logistic", "afm"),
                             (FMRegressor, "squared", "fm"), (FMClassifier, "logistic", "fm"),
                             (FwFMRegressor, "squared", "fwfm"), (FwFMClassifier, "logistic", "fwfm")):
    _registry.register(_cls, _loss, _family)
