"""A tracked experiment in a few lines, on the embedded default store (./.tracker).

Run: python examples/quickstart.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tracker import R


def main() -> None:
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2024-01-01", periods=60)
    instruments = [f"S{i:03d}" for i in range(50)]
    index = pd.MultiIndex.from_product([dates, instruments], names=["datetime", "instrument"])
    label = pd.Series(rng.normal(0, 0.02, len(index)), index=index, name="label")

    with R.start(experiment_name="quickstart", recorder_name="ridge") as recorder:
        R.log_params(model="ridge", alpha=1.0, universe=len(instruments))
        for step in range(100):
            R.log_metrics(step=step, loss=1.0 / (step + 1), lr=0.1 * 0.97**step)
        noise = rng.normal(0, 0.02, len(index))
        pred = pd.Series(0.3 * label.to_numpy() + noise, index=index, name="score")
        ic = pred.groupby(level="datetime").corr(label)
        R.log_metrics(IC=float(ic.mean()), ICIR=float(ic.mean() / ic.std()))
        R.save_objects(**{"pred.pkl": pred.to_frame(), "label.pkl": label.to_frame()})

    again = R.get_recorder(recorder_id=recorder.id, experiment_name="quickstart")
    print(f"store     : {R.get_uri()}")
    print(f"run       : {again.id} ({again.status})")
    print(f"metrics   : { {k: round(v, 4) for k, v in sorted(again.list_metrics().items())} }")
    print(f"artifacts : {again.list_artifacts()}")
    print(f"pred.pkl  : {again.load_object('pred.pkl').shape} rows x cols")


if __name__ == "__main__":
    main()
