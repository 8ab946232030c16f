"""Models, analysis functions, the top-k/dropout backtest and the record templates.

Metrics are checked against independent pandas computations, the backtest against a case
worked out by hand, and the records against a real tracker store. ``StubDataset`` is a
test double implementing the ``Dataset.prepare`` contract on hand-made frames.
"""

from __future__ import annotations

import logging
import math
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import tracker
from tracker import objects
from tracker.errors import InvalidStateError, LoadObjectError
from tracker.online.backtest import REPORT_COLUMNS, backtest_topk_dropout, forward_returns
from tracker.online.evaluate import (
    calc_ic,
    calc_long_short_prec,
    calc_long_short_return,
    risk_analysis,
)
from tracker.online.model.gbdt import LGBModel
from tracker.online.model.linear import RidgeModel
from tracker.online.workflow.record_temp import PortAnaRecord, SigAnaRecord, SignalRecord

# ------------------------------------------------------------------------------- test double


class StubDataset:
    """``prepare(segments, col_set)`` over fixed features and a ``LABEL0`` label."""

    def __init__(self, features: pd.DataFrame, label: pd.Series, segments: dict) -> None:
        self.features, self.label, self.segments = features, label, segments

    def prepare(self, segments, col_set="__all"):
        if isinstance(segments, list):
            return [self.prepare(s, col_set) for s in segments]
        start, end = self.segments[segments]
        dates = self.features.index.get_level_values("datetime")
        rows = (dates >= pd.Timestamp(start)) & (dates <= pd.Timestamp(end))
        feature, label = self.features[rows], self.label[rows].to_frame("LABEL0")
        if col_set == "feature":
            return feature
        if col_set == "label":
            return label
        groups = {"feature": feature, "label": label}
        keys = list(groups) if col_set == "__all" else list(col_set)
        return pd.concat({k: groups[k] for k in keys}, axis=1)


def make_panel(
    n_dates: int = 120, n_inst: int = 30, seed: int = 0, signal: float = 0.4
) -> StubDataset:
    """Five N(0,1) features; the label is linear in f0, f1 plus noise, NaN on the last two
    dates (no future price yet) and on a few scattered rows (missing days)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2021-01-04", periods=n_dates)
    idx = pd.MultiIndex.from_product(
        [dates, [f"S{i:02d}" for i in range(n_inst)]], names=["datetime", "instrument"]
    )
    x = rng.standard_normal((len(idx), 5))
    features = pd.DataFrame(x, index=idx, columns=[f"f{i}" for i in range(5)])
    noise = rng.standard_normal(len(idx))
    y = 0.02 * (signal * (x[:, 0] - 0.5 * x[:, 1]) + noise)
    label = pd.Series(y, index=idx)
    label[idx.get_level_values(0) >= dates[-2]] = np.nan
    label.iloc[rng.choice(len(idx) - 2 * n_inst, 20, replace=False)] = np.nan
    third = n_dates // 3
    segments = {
        "train": (dates[0], dates[third - 1]),
        "valid": (dates[third], dates[2 * third - 1]),
        "test": (dates[2 * third], dates[-1]),
    }
    return StubDataset(features, label, segments)


@pytest.fixture(scope="module")
def panel() -> StubDataset:
    return make_panel()


def _mean_ic(pred: pd.Series, label: pd.Series) -> float:
    return float(calc_ic(pred, label)[0].mean())


# ------------------------------------------------------------------------------------ models

LGB_SMALL = {"num_leaves": 8, "learning_rate": 0.05, "min_data_in_leaf": 20}


def test_ridge_learns_planted_signal_and_matches_least_squares(panel):
    model = RidgeModel(alpha=0.0)
    model.fit(panel)
    pred = model.predict(panel)
    assert pred.name == "score" and pred.index.names == ["datetime", "instrument"]
    label = panel.prepare("test", col_set="label")["LABEL0"]
    assert pred.index.equals(label.index)
    assert _mean_ic(pred, label) > 0.2
    # Independent check: ordinary least squares with an intercept on the non-NaN train rows.
    df = panel.prepare("train", col_set="__all").dropna()
    a = np.column_stack([np.ones(len(df)), df["feature"].to_numpy()])
    coef = np.linalg.lstsq(a, df[("label", "LABEL0")].to_numpy(), rcond=None)[0]
    np.testing.assert_allclose(model.coef_, coef[1:], rtol=1e-9, atol=1e-12)
    assert model.intercept_ == pytest.approx(coef[0], abs=1e-12)


def test_ridge_shrinks_and_honours_weights(panel):
    small, big = RidgeModel(alpha=1.0), RidgeModel(alpha=1e6)
    small.fit(panel)
    big.fit(panel)
    assert np.abs(big.coef_).sum() < 0.1 * np.abs(small.coef_).sum()

    class HalfWeights:
        def reweight(self, df):
            return (df.index.get_level_values("instrument") < "S15").astype(float)

    weighted = RidgeModel(alpha=2.0)
    weighted.fit(panel, reweighter=HalfWeights())
    half = StubDataset(
        panel.features[panel.features.index.get_level_values(1) < "S15"],
        panel.label[panel.label.index.get_level_values(1) < "S15"],
        panel.segments,
    )
    subset = RidgeModel(alpha=2.0)
    subset.fit(half)
    np.testing.assert_allclose(weighted.coef_, subset.coef_, rtol=1e-9)


@pytest.mark.slow
def test_lgb_learns_and_early_stops_on_valid(panel, capfd):
    model = LGBModel(num_boost_round=1000, early_stopping_rounds=20, **LGB_SMALL)
    model.fit(panel)
    pred = model.predict(panel)
    assert capfd.readouterr().out == ""  # LightGBM prints nothing
    assert pred.name == "score" and pred.index.names == ["datetime", "instrument"]
    label = panel.prepare("test", col_set="label")["LABEL0"]
    assert _mean_ic(pred, label) > 0.2
    valid_l2 = model.evals_result["valid"]["l2"]
    assert set(model.evals_result) == {"train", "valid"}
    assert len(model.evals_result["train"]["l2"]) == len(valid_l2)
    # Stopped early, on the best valid round, 20 rounds before the end.
    assert len(valid_l2) < 1000
    assert model.best_iteration == int(np.argmin(valid_l2)) + 1
    assert len(valid_l2) == model.best_iteration + 20


def test_lgb_without_valid_runs_all_rounds(panel):
    segments = {k: v for k, v in panel.segments.items() if k != "valid"}
    ds = StubDataset(panel.features, panel.label, segments)
    model = LGBModel(num_boost_round=15, **LGB_SMALL)
    model.fit(ds)
    assert set(model.evals_result) == {"train"}
    assert len(model.evals_result["train"]["l2"]) == 15
    assert model.best_iteration == 15


@pytest.mark.slow
def test_lgb_is_seed_deterministic(panel):
    params = {"num_boost_round": 30, "bagging_fraction": 0.7, "bagging_freq": 1}
    params |= {"feature_fraction": 0.6, **LGB_SMALL}
    preds = []
    for seed in (1, 1, 2):
        model = LGBModel(seed=seed, **params)
        model.fit(panel)
        preds.append(model.predict(panel))
    pd.testing.assert_series_equal(preds[0], preds[1])
    assert not np.allclose(preds[0], preds[2])


@pytest.mark.parametrize("make", [lambda: LGBModel(num_boost_round=30, **LGB_SMALL), RidgeModel])
def test_models_pickle_and_refuse_predict_before_fit(panel, make):
    model = make()
    with pytest.raises(InvalidStateError, match="not fitted"):
        model.predict(panel)
    model.fit(panel)
    before = model.predict(panel)
    clone = pickle.loads(pickle.dumps(model))
    pd.testing.assert_series_equal(clone.predict(panel), before, check_exact=True)


# ---------------------------------------------------------------------------------- analysis


def _random_frame(seed: int = 3) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product(
        [pd.bdate_range("2022-01-03", periods=6), [f"I{i}" for i in range(10)]],
        names=["datetime", "instrument"],
    )
    pred = pd.Series(rng.standard_normal(len(idx)).round(1), idx)  # rounding makes rank ties
    label = pd.Series(rng.standard_normal(len(idx)), idx)
    label.iloc[[1, 7, 22]] = np.nan
    pred.iloc[[5, 30]] = np.nan
    return pred, label


def test_calc_ic_matches_pandas_corr():
    pred, label = _random_frame()
    ic, ric = calc_ic(pred, label)
    df = pd.DataFrame({"p": pred, "l": label})
    expected = df.groupby(level=0).apply(lambda g: g["p"].corr(g["l"]))
    expected_rank = df.groupby(level=0).apply(lambda g: g["p"].corr(g["l"], method="spearman"))
    pd.testing.assert_series_equal(ic, expected, check_names=False, rtol=1e-12)
    pd.testing.assert_series_equal(ric, expected_rank, check_names=False, rtol=1e-12)


def test_calc_ic_degenerate_dates_are_nan_without_warnings():
    pred, label = _random_frame()
    dates = pred.index.get_level_values(0).unique()
    pred[pred.index.get_level_values(0) == dates[1]] = 0.1  # constant prediction
    label[label.index.get_level_values(0) == dates[2]] = np.nan  # no label yet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ic, ric = calc_ic(pred, label)
    assert list(ic.index) == list(dates)
    assert ic.isna().tolist() == [False, True, True, False, False, False]
    assert ric.isna().tolist() == ic.isna().tolist()
    assert len(calc_ic(pred, label, dropna=True)[0]) == 4


def _qlib_long_short(pred, label, quantile=0.2):
    """Qlib's calc_long_short_return, verbatim in spirit (groupby + nlargest)."""
    df = pd.DataFrame({"pred": pred, "label": label})
    group = df.groupby(level="datetime", group_keys=False)

    def n(x):
        return int(len(x) * quantile)

    r_long = group.apply(lambda x: x.nlargest(n(x), columns="pred").label.mean())
    r_short = group.apply(lambda x: x.nsmallest(n(x), columns="pred").label.mean())
    return (r_long - r_short) / 2, group.label.mean()


def test_long_short_return_matches_qlib_and_keeps_long_avg_quirk():
    pred, label = _random_frame()
    long_short, long_avg = calc_long_short_return(pred, label)
    exp_ls, exp_avg = _qlib_long_short(pred, label)
    pd.testing.assert_series_equal(long_short, exp_ls, check_names=False, rtol=1e-12)
    # Quirk 13: "long-avg" is the plain per-date label mean, whatever the prediction.
    pd.testing.assert_series_equal(long_avg, label.groupby(level=0).mean(), check_names=False)


def test_long_short_precision_by_hand():
    idx = pd.MultiIndex.from_product(
        [pd.bdate_range("2022-01-03", periods=1), list("ABCDEFGHIJ")],
        names=["datetime", "instrument"],
    )
    pred = pd.Series(np.arange(10.0), idx)  # J best, A worst; 20% of 10 = 2 names per leg
    label = pd.Series([-1, 1, 0, 0, 0, 0, 0, 0, 1, np.nan], idx, dtype=float)
    long_prec, short_prec = calc_long_short_prec(pred, label)
    assert long_prec.iloc[0] == 1.0  # legs J (NaN, not counted) and I (> 0)
    assert short_prec.iloc[0] == 0.5  # legs A (< 0) and B (> 0)
    with pytest.raises(ValueError, match="more instruments"):
        calc_long_short_prec(pred.iloc[:4], label.iloc[:4])


def test_risk_analysis_by_hand():
    r = pd.Series([0.01, -0.02, 0.03, 0.0])
    res = risk_analysis(r, N=238)["risk"]
    std = math.sqrt((0.005**2 + 0.025**2 + 0.025**2 + 0.005**2) / 3)
    assert list(res.index) == [
        "mean",
        "std",
        "annualized_return",
        "information_ratio",
        "max_drawdown",
    ]
    assert res["mean"] == pytest.approx(0.005)
    assert res["std"] == pytest.approx(std)
    assert res["annualized_return"] == pytest.approx(0.005 * 238)
    assert res["information_ratio"] == pytest.approx(0.005 / std * math.sqrt(238))
    assert res["max_drawdown"] == pytest.approx(-0.02)  # cumsum 0.01 -> -0.01

    prod = risk_analysis(r, N=252, mode="product")["risk"]
    total = 1.01 * 0.98 * 1.03
    assert prod["mean"] == pytest.approx(total**0.25 - 1)
    assert prod["annualized_return"] == pytest.approx(total ** (252 / 4) - 1)
    assert prod["max_drawdown"] == pytest.approx(0.98 - 1)
    assert prod["std"] == pytest.approx(np.log1p(r).std(ddof=1))

    flat = risk_analysis(pd.Series([0.01, 0.01]))["risk"]
    assert flat["std"] == 0 and math.isnan(flat["information_ratio"])
    with pytest.raises(ValueError, match="mode"):
        risk_analysis(r, mode="log")


# ---------------------------------------------------------------------------------- backtest


def _frame(rows: dict[str, list[float]]) -> pd.Series:
    """{date: [A, B, C, D]} -> Series indexed (datetime, instrument)."""
    data = pd.DataFrame(rows, index=list("ABCD")).T
    data.index = pd.DatetimeIndex(data.index, name="datetime")
    data.columns.name = "instrument"
    return data.stack(future_stack=True)


SCORES = _frame(
    {
        "2024-01-01": [4, 3, 2, 1],  # buy A, B
        "2024-01-02": [1, 4, 3, 2],  # held B, A; candidate C; worst of {B, C, A} is A: A -> C
        "2024-01-03": [2, 3, 4, 1],  # held C, B; candidate A is the worst: no trade
        "2024-01-04": [3, 1, 2, 4],  # held C, B; candidate D; worst is B: B -> D
    }
)
RETURNS = _frame(
    {
        "2024-01-01": [0.10, -0.10, 0.05, 0.0],
        "2024-01-02": [0.20, 0.10, -0.05, 0.30],
        "2024-01-03": [0.0, np.nan, 0.10, 0.0],  # B has no price: earns 0, stays held
        "2024-01-04": [0.10, 0.10, 0.0, 0.20],
    }
)
HAND = {"topk": 2, "n_drop": 1, "risk_degree": 1.0, "account": 100.0, "min_cost": 0.0}


def test_backtest_topk_dropout_by_hand_without_costs():
    report, positions = backtest_topk_dropout(
        SCORES, RETURNS, open_cost=0.0, close_cost=0.0, **HAND
    )
    assert list(report.columns) == REPORT_COLUMNS
    held = positions.reset_index().groupby("datetime")["instrument"].apply(list)
    assert held.tolist() == [["A", "B"], ["B", "C"], ["B", "C"], ["C", "D"]]
    # Day 1: 50 in A and B -> 55 + 45. Day 2: A's 55 goes to C -> B 49.5, C 52.25.
    # Day 3: B's return is NaN -> 49.5, C 57.475. Day 4: B's 49.5 goes to D -> 59.4.
    accounts = [100.0, 101.75, 106.975, 57.475 + 59.4]
    np.testing.assert_allclose(report["account"], accounts)
    np.testing.assert_allclose(report["return"], [0.0, 0.0175, 5.225 / 101.75, 9.9 / 106.975])
    np.testing.assert_allclose(report["turnover"], [1.0, 110 / 100, 0.0, 99 / 106.975])
    np.testing.assert_allclose(report["cost"], 0.0)
    np.testing.assert_allclose(report["cash"], 0.0, atol=1e-12)
    np.testing.assert_allclose(report["bench"], [0.0125, 0.1375, 0.1 / 3, 0.1])
    np.testing.assert_allclose(
        positions["weight"],
        [0.5, 0.5, 0.45, 0.55, 49.5 / 101.75, 52.25 / 101.75] + [57.475 / 106.975, 49.5 / 106.975],
    )


def test_backtest_costs_by_hand():
    report, _ = backtest_topk_dropout(
        SCORES.loc[:"2024-01-02"],
        RETURNS,
        open_cost=0.01,
        close_cost=0.02,
        **HAND,
    )
    # Day 1: each buy's budget of 50 pays the trade and its 1% fee.
    v = 50 / 1.01
    account1 = v * 1.1 + v * 0.9
    assert report["cost"].iloc[0] == pytest.approx((100 - 2 * v) / 100)
    assert report["turnover"].iloc[0] == pytest.approx(2 * v / 100)
    assert report["return"].iloc[0] == pytest.approx(0.0)
    assert report["account"].iloc[0] == pytest.approx(account1)
    # Day 2: sell A (value 1.1 v) paying 2%, buy C with the proceeds paying 1%.
    sold = 1.1 * v
    cash = sold * 0.98
    bought = cash / 1.01
    fees = sold * 0.02 + bought * 0.01
    assert report["cost"].iloc[1] == pytest.approx(fees / account1)
    assert report["turnover"].iloc[1] == pytest.approx((sold + bought) / account1)
    assert report["return"].iloc[1] == pytest.approx((0.9 * v * 0.10 - bought * 0.05) / account1)
    assert report["account"].iloc[1] == pytest.approx(0.9 * v * 1.1 + bought * 0.95)
    # return - cost is the net change of the account.
    net = report["account"].iloc[1] / account1 - 1
    assert report["return"].iloc[1] - report["cost"].iloc[1] == pytest.approx(net)


def test_backtest_min_cost_risk_degree_and_benchmark():
    bench = pd.Series([0.01, 0.02, 0.03, 0.04], index=SCORES.index.levels[0])
    args = {**HAND, "min_cost": 1.0, "risk_degree": 0.9}
    report, positions = backtest_topk_dropout(
        SCORES, RETURNS, open_cost=0.0, close_cost=0.0, benchmark=bench, **args
    )
    # 90 of 100 invested; each buy's budget of 45 pays the 1.0 minimum fee.
    assert positions["value"].iloc[:2].tolist() == [44.0, 44.0]
    assert report["cash"].iloc[0] == pytest.approx(10.0)
    assert report["cost"].iloc[0] == pytest.approx(0.02)
    pd.testing.assert_series_equal(report["bench"], bench, check_names=False)
    with pytest.raises(ValueError, match="benchmark has no return"):
        backtest_topk_dropout(SCORES, RETURNS, benchmark=bench.iloc[:2], **HAND)


def test_backtest_has_no_lookahead_and_trims_unrealised_end():
    later = RETURNS.copy()
    later.loc["2024-01-04"] = 9.0  # changing the last day's returns...
    base, _ = backtest_topk_dropout(SCORES, RETURNS, **HAND)
    changed, _ = backtest_topk_dropout(SCORES, later, **HAND)
    pd.testing.assert_frame_equal(base.iloc[:3], changed.iloc[:3])  # ...leaves earlier days
    no_end = RETURNS.copy()
    no_end.loc["2024-01-04"] = np.nan  # the last signal date has no realised return yet
    trimmed, _ = backtest_topk_dropout(SCORES, no_end, **HAND)
    assert list(trimmed.index) == list(base.index[:3])


def test_backtest_unscored_holding_is_dropped_first():
    scores = SCORES.copy()
    scores.loc[("2024-01-02", "A")] = 9.0  # A best by score...
    scores = scores.drop(("2024-01-02", "B"))  # ...and held B has no score: B goes, not A
    _, positions = backtest_topk_dropout(scores, RETURNS, **HAND)
    assert positions.loc["2024-01-02"].index.tolist() == ["A", "C"]


def test_forward_returns_is_the_label_alignment():
    dates = pd.bdate_range("2024-01-01", periods=5)
    idx = pd.MultiIndex.from_product([dates, ["X"]], names=["datetime", "instrument"])
    close = pd.Series([10.0, 11.0, 12.1, 12.1, 6.05], idx)
    label = forward_returns(close)  # close[t+2] / close[t+1] - 1
    np.testing.assert_allclose(label.to_numpy()[:3], [0.1, 0.0, -0.5])
    assert label.iloc[3:].isna().all()
    same_day = forward_returns(close, delay=0)
    np.testing.assert_allclose(same_day.to_numpy()[:4], [0.1, 0.1, 0.0, -0.5])


# ----------------------------------------------------------------------------------- records


@pytest.fixture
def rec(tmp_path):
    manager = tracker.connect(tmp_path / "s")
    exp = objects.get_exp(manager, experiment_name="e")
    recorder = exp.start(recorder_name="r")
    yield recorder
    if recorder.status == "RUNNING":
        recorder.end_run()


@pytest.fixture(scope="module")
def ridge(panel) -> RidgeModel:
    model = RidgeModel(alpha=1.0)
    model.fit(panel)
    return model


def _record_artifacts(rec) -> set[str]:
    """The run's pickles (the recorder also stores code-state text files)."""
    return {p for p in rec.list_artifacts(recursive=True) if p.endswith(".pkl")}


PORT_ARGS = {"topk": 5, "n_drop": 1, "account": 1e6}
RISK = ["mean", "std", "annualized_return", "information_ratio", "max_drawdown"]


def test_records_write_qlib_artifacts_and_metrics(rec, panel, ridge):
    SignalRecord(ridge, panel, rec).generate()
    SigAnaRecord(rec, ana_long_short=True).generate()
    PortAnaRecord(rec, **PORT_ARGS).generate()
    assert _record_artifacts(rec) == {
        "pred.pkl",
        "label.pkl",
        "sig_analysis/ic.pkl",
        "sig_analysis/ric.pkl",
        "sig_analysis/long_short_r.pkl",
        "sig_analysis/long_avg_r.pkl",
        "portfolio_analysis/report_normal_1day.pkl",
        "portfolio_analysis/positions_normal_1day.pkl",
        "portfolio_analysis/port_analysis_1day.pkl",
    }
    rec.flush()
    metrics = rec.list_metrics()
    port = {f"1day.excess_return_{c}_cost.{m}" for c in ("without", "with") for m in RISK}
    sig = {"IC", "ICIR", "Rank IC", "Rank ICIR"}
    ls = {"Long-Short Ann Return", "Long-Short Ann Sharpe"}
    ls |= {"Long-Avg Ann Return", "Long-Avg Ann Sharpe"}
    assert sig | ls | port <= set(metrics)

    pred, label = rec.load_object("pred.pkl"), rec.load_object("label.pkl")
    assert list(pred.columns) == ["score"] and list(label.columns) == ["LABEL0"]
    pd.testing.assert_frame_equal(label, panel.prepare("test", col_set="label"))
    # Independent pandas computation of the signal metrics.
    df = pd.DataFrame({"p": pred["score"], "l": label["LABEL0"]})
    ic = df.groupby(level=0).apply(lambda g: g["p"].corr(g["l"]))
    ric = df.groupby(level=0).apply(lambda g: g["p"].corr(g["l"], method="spearman"))
    assert metrics["IC"] == pytest.approx(ic.mean(), rel=1e-9)
    assert metrics["ICIR"] == pytest.approx(ic.mean() / ic.std(), rel=1e-9)
    assert metrics["Rank IC"] == pytest.approx(ric.mean(), rel=1e-9)
    assert metrics["Rank ICIR"] == pytest.approx(ric.mean() / ric.std(), rel=1e-9)
    assert metrics["IC"] > 0.2
    ls_r, avg_r = _qlib_long_short(pred["score"], label["LABEL0"])
    assert metrics["Long-Short Ann Return"] == pytest.approx(ls_r.mean() * 252, rel=1e-9)
    sharpe = avg_r.mean() / avg_r.std() * math.sqrt(252)
    assert metrics["Long-Avg Ann Sharpe"] == pytest.approx(sharpe, rel=1e-9)

    # The backtest ran on label.pkl as realised returns; the metrics follow from its report.
    report = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
    expected_report, _ = backtest_topk_dropout(pred, label["LABEL0"], **PORT_ARGS)
    pd.testing.assert_frame_equal(report, expected_report)
    assert report.index[-1] == label.dropna().index[-1][0]  # unrealised last dates trimmed
    for name, r in {
        "without": report["return"] - report["bench"],
        "with": report["return"] - report["bench"] - report["cost"],
    }.items():
        key = f"1day.excess_return_{name}_cost"
        cum = r.cumsum()
        assert metrics[f"{key}.mean"] == pytest.approx(r.mean(), rel=1e-9)
        assert metrics[f"{key}.std"] == pytest.approx(r.std(), rel=1e-9)
        assert metrics[f"{key}.annualized_return"] == pytest.approx(r.mean() * 238, rel=1e-9)
        ir = r.mean() / r.std() * math.sqrt(238)
        assert metrics[f"{key}.information_ratio"] == pytest.approx(ir, rel=1e-9)
        assert metrics[f"{key}.max_drawdown"] == pytest.approx((cum - cum.cummax()).min())
    analysis = rec.load_object("portfolio_analysis/port_analysis_1day.pkl")
    assert analysis.index.get_level_values(0).unique().tolist() == [
        "excess_return_without_cost",
        "excess_return_with_cost",
    ]
    assert list(analysis.columns) == ["risk"]


def test_check_reports_missing_inputs_and_generate_skips(rec, caplog):
    sig = SigAnaRecord(rec)
    with pytest.raises(FileNotFoundError, match=r"pred\.pkl.*label\.pkl"):
        sig.check()
    with caplog.at_level(logging.WARNING, logger="tracker.online.workflow.record_temp"):
        assert sig.generate() is None
        assert PortAnaRecord(rec).generate() is None
    assert "generation skipped" in caplog.text
    assert _record_artifacts(rec) == set()
    rec.save_objects(**{"pred.pkl": pd.DataFrame({"score": [1.0]})})
    with pytest.raises(FileNotFoundError, match=r"label\.pkl") as info:
        sig.check()
    assert "'pred.pkl'" not in str(info.value)
    with pytest.raises(FileNotFoundError, match=r"sig_analysis/ic\.pkl"):
        sig.check(include_self=True, parents=False)


def test_rerun_overwrites_resumes_and_skip_existing(rec, panel, ridge):
    SignalRecord(ridge, panel, rec).generate()
    SigAnaRecord(rec).generate()
    first_ic = rec.load_object("sig_analysis/ic.pkl")
    # Re-running SignalRecord with another model overwrites pred.pkl.
    other = RidgeModel(alpha=1e5)
    other.fit(panel)
    SignalRecord(other, panel, rec).generate()
    pd.testing.assert_series_equal(
        rec.load_object("pred.pkl")["score"], other.predict(panel), check_names=False
    )
    # skip_existing keeps the old results; a plain re-run recomputes them.
    assert SigAnaRecord(rec, skip_existing=True).generate() is None
    pd.testing.assert_series_equal(rec.load_object("sig_analysis/ic.pkl"), first_ic)
    SigAnaRecord(rec).generate()
    assert not rec.load_object("sig_analysis/ic.pkl").equals(first_ic)
    # A resumed recorder (Qlib's end_task_train) accepts the records again.
    rec.end_run()
    exp = objects.get_exp(rec.manager, experiment_name="e")
    resumed = exp.start(recorder_id=rec.id, resume=True)
    PortAnaRecord(resumed, **PORT_ARGS).generate()
    resumed.end_run()
    assert "1day.excess_return_with_cost.mean" in resumed.list_metrics()
    assert "portfolio_analysis/report_normal_1day.pkl" in resumed.list_artifacts(recursive=True)


def test_load_falls_back_to_parent_and_recorder_errors(rec):
    rec.save_objects(**{"pred.pkl": pd.DataFrame({"score": [1.0]})})
    sig = SigAnaRecord(rec)
    assert sig.load("pred.pkl")["score"].tolist() == [1.0]
    with pytest.raises(LoadObjectError, match="sig_analysis/pred.pkl"):
        sig.load("pred.pkl", parents=False)
    with pytest.raises(LoadObjectError, match=r"'sig_analysis/x\.pkl', 'x\.pkl'"):
        sig.load("x.pkl")
    assert SigAnaRecord.get_path("ic.pkl") == "sig_analysis/ic.pkl"
    assert SignalRecord.get_path() == ""
    with pytest.raises(ValueError, match="no recorder"):
        _ = SignalRecord().recorder


def test_port_ana_record_accepts_qlib_config(caplog):
    config = {
        "strategy": {"class": "TopkDropoutStrategy", "kwargs": {"signal": "<PRED>", "topk": 3}},
        "backtest": {
            "account": 1e6,
            "exchange_kwargs": {"open_cost": 0.001, "close_cost": 0.002, "min_cost": 0},
            "deal_price": "close",
        },
    }
    with caplog.at_level(logging.INFO, logger="tracker.online.backtest"):
        record = PortAnaRecord(config=config, n_drop=2, risk_analysis_freq="day")
    assert "backtest.deal_price" in caplog.text
    assert record.backtest_kwargs == {
        "topk": 3,
        "n_drop": 2,
        "open_cost": 0.001,
        "close_cost": 0.002,
        "min_cost": 0,
        "risk_degree": 0.95,
        "account": 1e6,
        "benchmark": None,
    }
    with pytest.raises(ValueError, match="benchmark must be a Series"):
        PortAnaRecord(config={"backtest": {"benchmark": "SH000300"}})
    with pytest.raises(ValueError, match="only daily"):
        PortAnaRecord(risk_analysis_freq="week")
