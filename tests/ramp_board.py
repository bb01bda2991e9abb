"""Deployments laid out as ramp-board lays them out, for tests.

    <deploy>/config.yml                  flask + sqlalchemy
    <deploy>/ramp-kits/<problem>/        problem.py, submissions/starting_kit
    <deploy>/ramp-data/<problem>/data/   train.csv, test.csv
    <deploy>/events/<event>/config.yml   ramp + worker + dispatcher, no directories
    <deploy>/events/<event>/submissions/submission_000000001 ...

Two kits: the iris example (multiclass, accuracy first) and a breast-cancer
kit generated here from the data scikit-learn ships (binary, ROC AUC first).
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "iris"

DEPLOYMENT_CONFIG = {
    "flask": {"secret_key": "abcdefghijkl", "mail_server": "localhost"},
    "sqlalchemy": {"drivername": "postgresql", "username": "mrramp", "password": "mrramp",
                   "host": "localhost", "port": 5432, "database": "databoard_test"},
}

CANCER_PROBLEM = '''
    """Breast cancer diagnosis: a binary RAMP kit whose official score is ROC AUC."""
    import os

    import pandas as pd
    import rampwf as rw
    from sklearn.model_selection import StratifiedShuffleSplit

    problem_title = "Breast cancer diagnosis"
    _target_column_name = "malignant"
    _prediction_label_names = [0, 1]

    Predictions = rw.prediction_types.make_multiclass(label_names=_prediction_label_names)
    workflow = rw.workflows.Estimator()

    score_types = [
        rw.score_types.ROCAUC(name="auc", precision=3),
        rw.score_types.Accuracy(name="acc", precision=3),
    ]


    def get_cv(X, y):
        cv = StratifiedShuffleSplit(n_splits=2, test_size=0.3, random_state=57)
        return cv.split(X, y)


    def _read_data(path, f_name):
        data = pd.read_csv(os.path.join(path, "data", f_name))
        y_array = data[_target_column_name].to_numpy()
        return data.drop(columns=[_target_column_name]), y_array


    def get_train_data(path="."):
        return _read_data(path, "train.csv")


    def get_test_data(path="."):
        return _read_data(path, "test.csv")
'''

CANCER_ESTIMATOR = '''
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler


    def get_estimator():
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
'''

IRIS_ESTIMATOR = (EXAMPLE / "submissions" / "logreg" / "estimator.py").read_text()


def write_cancer_kit(kit_dir: Path, data_dir: Path) -> None:
    """The breast-cancer kit and its data (scikit-learn's bundled copy, no download)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    (kit_dir / "submissions" / "starting_kit").mkdir(parents=True, exist_ok=True)
    (kit_dir / "problem.py").write_text(textwrap.dedent(CANCER_PROBLEM).lstrip())
    (kit_dir / "submissions" / "starting_kit" / "estimator.py").write_text(
        textwrap.dedent(CANCER_ESTIMATOR).lstrip())
    frame = load_breast_cancer(as_frame=True).frame
    frame = frame.rename(columns={"target": "malignant"})
    frame["malignant"] = 1 - frame["malignant"]  # scikit-learn's 1 is benign
    frame.columns = [column.replace(" ", "_") for column in frame.columns]
    train, test = train_test_split(frame, test_size=0.3, random_state=42,
                                   stratify=frame["malignant"])
    (data_dir / "data").mkdir(parents=True, exist_ok=True)
    train.to_csv(data_dir / "data" / "train.csv", index=False)
    test.to_csv(data_dir / "data" / "test.csv", index=False)


def estimator_for(problem: str) -> str:
    return IRIS_ESTIMATOR if problem == "iris" else textwrap.dedent(CANCER_ESTIMATOR).lstrip()


def event_config(problem: str, event: str, **sections: Any) -> dict[str, Any]:
    """An event config as ramp-board writes it: no directories, a conda worker."""
    config: dict[str, Any] = {
        "ramp": {"problem_name": problem, "event_name": event,
                 "event_title": f"{problem} test event", "event_is_public": True,
                 "sandbox_dir": "starting_kit"},
        "worker": {"worker_type": "conda", "conda_env": sys.prefix, "timeout": 120},
        "dispatcher": {"hunger_policy": "exit", "n_workers": 2, "n_threads": 1,
                       "time_between_collection": 1, "retry_backoff": 0.1},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config


def make_layout(root: Path, problem: str = "iris", event: str | None = None) -> Path:
    """The folders of the layout under ``root`` (kit, data, the event's submissions)."""
    event = event or f"{problem}_test"
    kit_dir, data_dir = root / "ramp-kits" / problem, root / "ramp-data" / problem
    if not kit_dir.exists():
        if problem == "iris":
            shutil.copytree(EXAMPLE / "ramp-kits" / "iris", kit_dir)
            shutil.copytree(EXAMPLE / "ramp-data" / "iris", data_dir)
        else:
            write_cancer_kit(kit_dir, data_dir)
    event_dir = root / "events" / event
    (event_dir / "submissions").mkdir(parents=True, exist_ok=True)
    return event_dir


def make_deployment(root: Path, problem: str = "iris", event: str | None = None,
                    submissions: int = 0, **sections: Any) -> Path:
    """A ramp-board deployment under ``root``; returns the event config's path."""
    event = event or f"{problem}_test"
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yml").write_text(yaml.safe_dump(DEPLOYMENT_CONFIG, sort_keys=False))
    event_dir = make_layout(root, problem, event)
    for number in range(1, submissions + 1):
        add_submission(event_dir / "submissions", number, estimator_for(problem))
    config = event_dir / "config.yml"
    config.write_text(yaml.safe_dump(event_config(problem, event, **sections), sort_keys=False))
    return config


def add_submission(submissions_dir: Path, number: int, source: str) -> Path:
    """A submission folder named as ramp-board names them (``submission_000000042``)."""
    folder = submissions_dir / f"submission_{number:09d}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "estimator.py").write_text(source)
    return folder
