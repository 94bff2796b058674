"""The serving predictor's team judgement (issue 25): with n_threads > 1, a predictor runs a call's rows on the
calling thread alone while its team's cores are judged busy elsewhere, and probes the team again later
(cpp/include/afm/team_judge.hpp). Which thread runs which rows must not change a single output bit:
FASTAFM_TEAM_MODE=alternate switches between the team and one thread every call, =team never leaves the team,
unset is adaptive. The judge's decisions are tested on given timings (no test depends on machine speed)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import fastafm
from fastafm import _core
from fastafm._core import _testing

from test_serving import FIELDS, rows

# A call's wall and CPU seconds, work units (0: not known): a team call on ~2 cores, one on under 1.
IDLE, BUSY = (0.01, 0.0198, 0.0), (0.01, 0.0095, 0.0)


def judged(calls, mode="adaptive"):
    return "".join("T" if team else "s" for team in _testing.team_judge(calls, mode))


def test_an_idle_team_is_kept():
    assert judged([IDLE] * 200) == "T" * 200


def test_a_starved_team_goes_alone_and_probes_ever_less_often():
    # The first call is not judged (it may start the threads), then a probe of 1 call, then windows of 4 calls.
    # Alone 16 calls, a failed probe, 32, 64: the probes cost ever less.
    assert judged([BUSY] * 140) == "TT" + "s" * 16 + "T" + "s" * 32 + "T" + "s" * 64 + "T" + "s" * 23


def test_the_team_comes_back_when_the_cores_are_free_again():
    assert judged([BUSY] * 18 + [IDLE] * 100) == "TT" + "s" * 16 + "T" * 100
    # A window of BUSY, BUSY, 0.99, 0.99 cores does not keep the team (0.97 cores); after a probe that succeeds,
    # stretches alone start again at 16 calls.
    x = (0.01, 0.0099, 0.0)
    got = judged([IDLE] * 2 + [BUSY] * 2 + [x] * 18 + [IDLE] * 5 + [BUSY] * 2 + [x] * 18)
    assert got == "T" * 6 + "s" * 16 + "T" * 9 + "s" * 16


def test_the_team_is_judged_against_the_thread_alone():
    # The calling thread alone got half a core: a team delivering 0.8 cores is still the better choice.
    calls = [IDLE, BUSY] + [(0.01, 0.005, 0.0)] * 16 + [(0.01, 0.008, 0.0)] * 30
    assert judged(calls) == "TT" + "s" * 16 + "T" * 30


ALONE = (0.01, 0.006, 100.0)  # 10 work units a ms on 0.6 cores


def test_the_team_must_match_the_rate_alone():
    # With more jobs than cores the team's threads got 1.3 cores but did less work a second than the calling
    # thread alone (9 units a ms against 10): alone again.
    slow, fast = (0.01, 0.013, 90.0), (0.01, 0.013, 130.0)
    calls = [IDLE, BUSY] + [ALONE] * 16 + [slow] + [ALONE] * 32 + [fast] * 30
    assert judged(calls) == "TT" + "s" * 16 + "T" + "s" * 32 + "T" * 30
    # No rate alone known (units 0 alone): judged by the cores only.
    calls = [IDLE, BUSY] + [(0.01, 0.006, 0.0)] * 16 + [slow] * 30
    assert judged(calls) == "TT" + "s" * 16 + "T" * 30


def test_a_costly_probe_buys_a_longer_stretch_alone():
    # A team at 0.45x the rate alone (FM beside a busy core) cost 1.22 calls alone in its probe: the next stretch
    # alone is 40 calls (the probe at most 3% of it), not 32; then doubling goes on from there.
    very_slow = (0.01, 0.005, 45.0)
    calls = [IDLE, BUSY] + [ALONE] * 16 + [very_slow] + [ALONE] * 40 + [very_slow] + [ALONE] * 80 + [IDLE]
    assert judged(calls) == "TT" + "s" * 16 + "T" + "s" * 40 + "T" + "s" * 80 + "T"


def test_a_stretch_alone_ends_after_a_second_of_calls():
    # Calls of 0.3 s: the 16-call stretch ends after 4 (1.2 s alone), then a probe; the machine became idle.
    calls = [IDLE, BUSY] + [(0.3, 0.3, 0.0)] * 4 + [(0.15, 0.297, 0.0)] * 10
    assert judged(calls) == "TT" + "s" * 4 + "T" * 10


def test_unknown_cpu_times_and_forced_modes():
    assert judged([(0.01, -1.0, 0.0)] * 50) == "T" * 50  # no thread CPU clock: the team as before
    assert judged([BUSY] * 50, "team") == "T" * 50
    assert judged([IDLE] * 50, "alternate") == "Ts" * 25
    with pytest.raises(ValueError, match="mode must be"):
        _testing.team_judge([IDLE], "sometimes")


def fitted(name):
    rng = np.random.default_rng(0)
    extra = {"fields": FIELDS} if name == "FwFMRegressor" else {"field_aware": "weights", "fields": FIELDS} \
        if name == "field-aware AFM" else {}
    cls = getattr(fastafm, "AFMRegressor" if name == "field-aware AFM" else name)
    X = rows(1, 300)
    return cls(embedding_dim=8, n_epochs=2, random_state=0, early_stopping=False, **extra).fit(
        X, rng.normal(size=300))


def predictor(monkeypatch, model, mode, n_threads):
    if mode is None:
        monkeypatch.delenv("FASTAFM_TEAM_MODE", raising=False)
    else:
        monkeypatch.setenv("FASTAFM_TEAM_MODE", mode)
    return model.predictor(n_threads=n_threads)


@pytest.mark.parametrize("name", ["AFMRegressor", "FMRegressor", "FwFMRegressor", "field-aware AFM"])
@pytest.mark.parametrize("n_threads", [2, 3])
def test_modes_give_bit_identical_outputs(monkeypatch, name, n_threads):
    model = fitted(name)
    batches = [rows(seed, n) for seed, n in ((2, 3000), (3, 700), (4, 5), (5, 4000), (6, 1), (7, 2500))]
    batches.append(sp.vstack([rows(8, 2, nnz_choices=(900,)), rows(9, 1500)]).tocsr().astype(np.float32))
    want = [model.predict(X) for X in batches]
    for mode in ("alternate", "team", None):
        pred = predictor(monkeypatch, model, mode, n_threads)
        for _ in range(3):
            for X, w in zip(batches, want):
                np.testing.assert_array_equal(pred(X), w, err_msg=f"FASTAFM_TEAM_MODE={mode}")
        if not _core.openmp_enabled():  # a build without OpenMP: one thread, no team to judge
            assert pred.team_calls == 0 and pred.solo_calls == 0
        elif mode == "alternate":  # both ways ran: the team and the calling thread alone
            assert pred.team_calls > 0 and pred.solo_calls > 0
        elif mode == "team":
            assert pred.solo_calls == 0 and pred.team_calls > 0
    # one thread never has a team to judge
    pred = predictor(monkeypatch, model, "alternate", 1)
    np.testing.assert_array_equal(pred(batches[0]), want[0])
    assert pred.team_calls == 0 and pred.solo_calls == 0


def test_bad_rows_are_refused_in_either_mode(monkeypatch):
    model = fitted("FMRegressor")
    pred = predictor(monkeypatch, model, "alternate", 2)
    X = rows(10, 3000)
    want = model.predict(X)
    for _ in range(2):  # on the team, then alone
        bad = X.copy()
        bad.indices[5] = 10_000
        with pytest.raises(ValueError, match="out of range"):
            pred(bad)
        bad = X.copy()
        bad.data[7] = np.nan
        with pytest.raises(ValueError, match="finite"):
            pred(bad)
        np.testing.assert_array_equal(pred(X), want)
