"""The sandboxed stage of a run with hidden labels: train and predict, nothing else.

    python -I -c <this file> KIT_DIR HANDED SUBMISSIONS_DIR SUBMISSION

With ``worker.isolation.labels: hidden`` the sandbox runs this instead of
``ramp-test``. The data folder is not in its view at all: what it works on is
HANDED, a file the trusted scorer wrote once for the event (the kit's own
``get_train_data`` with its labels, ``get_test_data`` *without* its labels,
and the CV folds). For each fold it does what ``ramp-test --save-output``
does up to the scores — rampwf's own ``train_test_submission``, then
``save_y_pred`` and the three times — and writes them in the same
``training_output`` layout. It computes no score: the dispatcher's trusted
scorer reads the predictions (plain arrays, never a pickle) and writes
``scores.csv`` and ``bagged_scores.csv`` as ramp-test would.

A local run starts while the trusted scorer is still loading the data (both
import the kit's libraries at once): HANDED may appear a moment after the
start, all at once (a link, or a rename), and is waited for.

It runs the participant's code, with the kit's Python (rampwf's, the kit's
imports; any Python 3 that rampwf runs on): nothing it writes is trusted, and
it is given nothing to hide.
"""

from __future__ import annotations

import os
import pickle
import sys
import time

#: The longest the run waits for its data (the trusted scorer's start: a second or two).
HANDED_WAIT = 600.0


def main(argv: list[str]) -> int:
    kit, handed, submissions, submission = argv
    external = os.path.join(kit, "external_imports")
    if os.path.isdir(external) and external not in sys.path:
        sys.path.append(external)
    from rampwf.utils.importing import import_module_from_source
    from rampwf.utils.io import save_y_pred
    from rampwf.utils.pretty_print import print_title
    from rampwf.utils.submission import train_test_submission

    problem = import_module_from_source(os.path.join(kit, "problem.py"), "problem")
    wait_for(handed, HANDED_WAIT)
    with open(handed, "rb") as stream:
        data = pickle.load(stream)  # noqa: S301 (the trusted scorer wrote it; read-only here)
    X_train, y_train, X_test = data["X_train"], data["y_train"], data["X_test"]
    submission_path = os.path.join(submissions, submission)
    print_title(f"Training {submission_path} (labels hidden: the scores are computed outside) ...")
    output = os.path.join(submission_path, "training_output")
    os.makedirs(output, exist_ok=True)
    for index, fold in enumerate(data["cv"]):
        fold_output = os.path.join(output, f"fold_{index}")
        os.makedirs(fold_output, exist_ok=True)
        print_title(f"CV fold {index}")
        (y_pred_train, y_pred_test), times = train_test_submission(
            problem, submission_path, X_train, y_train, X_test, False, False, True,
            fold_output, "trained_model.pkl", fold)
        # What ramp-test saves: the test predictions only when the test set has labels.
        save_y_pred(problem, y_pred_train, data_path="", output_path=fold_output, suffix="train")
        names = ["train_time", "valid_time"]
        if data["has_test"]:
            save_y_pred(problem, y_pred_test, data_path="", output_path=fold_output,
                        suffix="test")
            names.append("test_time")
        for name, seconds in zip(names, times[:len(names)]):  # noqa: B905 (Python 3.8 kits)
            with open(os.path.join(fold_output, name), "w") as out:
                out.write(str(seconds))
    return 0


def wait_for(path: str, seconds: float) -> None:
    """Until ``path`` exists (it appears whole), or exit saying the data never came."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit(f"no data was handed to the run within {seconds:g} s")
        time.sleep(0.01)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
