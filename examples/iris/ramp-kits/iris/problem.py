"""Iris species classification: the RAMP problem of the ramp-fleet demo event.

Read by ramp-workflow (``ramp-test``) and by ``ramp_fleet.scoring``: the first
score type is the event's official score.
"""

import os

import pandas as pd
import rampwf as rw
from sklearn.model_selection import StratifiedShuffleSplit

problem_title = "Iris species classification"

_target_column_name = "species"
_prediction_label_names = ["setosa", "versicolor", "virginica"]

Predictions = rw.prediction_types.make_multiclass(label_names=_prediction_label_names)
workflow = rw.workflows.Estimator()

score_types = [
    rw.score_types.Accuracy(name="acc", precision=3),
    rw.score_types.ClassificationError(name="error", precision=3),
    rw.score_types.NegativeLogLikelihood(name="nll", precision=3),
    rw.score_types.MacroAveragedRecall(name="macro_recall", precision=3),
]


def get_cv(X, y):
    cv = StratifiedShuffleSplit(n_splits=3, test_size=0.25, random_state=57)
    return cv.split(X, y)


def _read_data(path, f_name):
    data = pd.read_csv(os.path.join(path, "data", f_name))
    y_array = data[_target_column_name].to_numpy()
    X_df = data.drop(columns=[_target_column_name])
    if os.environ.get("RAMP_TEST_MODE"):  # ramp-test --quick-test
        X_df, y_array = X_df.iloc[::3], y_array[::3]
    return X_df, y_array


def get_train_data(path="."):
    return _read_data(path, "train.csv")


def get_test_data(path="."):
    return _read_data(path, "test.csv")
