"""Regenerate ``ramp-data/iris/data/{train,test}.csv`` from scikit-learn's bundled iris.

The split is stratified and seeded, so running this script rewrites the
committed files byte for byte (no download: iris ships with scikit-learn).

    python examples/iris/make_data.py
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

DATA_DIR = Path(__file__).resolve().parent / "ramp-data" / "iris" / "data"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
TEST_SIZE = 50
SEED = 42


def make_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    iris = load_iris()
    data = pd.DataFrame(iris.data, columns=COLUMNS)
    data["species"] = [str(iris.target_names[i]) for i in iris.target]
    train, test = train_test_split(
        data, test_size=TEST_SIZE, random_state=SEED, stratify=data["species"]
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def main() -> None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    train, test = make_frames()
    train.to_csv(DATA_DIR / "train.csv", index=False, float_format="%.1f")
    test.to_csv(DATA_DIR / "test.csv", index=False, float_format="%.1f")
    print(f"wrote {len(train)} train and {len(test)} test rows to {DATA_DIR}")


if __name__ == "__main__":
    main()
