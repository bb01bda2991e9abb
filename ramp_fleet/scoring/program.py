"""The trusted scorer: a run's predictions scored with the problem's own score types.

    python -I -c <this file> KIT_DIR DATA_DIR

A participant's process wrote ``training_output`` — its predictions, and
the score files ramp-test writes from them. Those score files are the
participant's to forge (a ``DummyClassifier`` with an ``atexit`` that
rewrites them ranked first), so they are never read: this program, started
once per dispatcher in the kit's own environment, loads ``problem.py``, the
training and test data and the CV folds once, then, for each result, loads
each fold's predictions (``np.load`` without pickles, sizes checked first, or
the problem's own ``load_y_pred``), scores them with ``score_matrix`` and
``bag_submissions`` exactly as ``ramp-test --save-output`` does, and writes
``fold_<i>/scores.csv`` and ``bagged_scores.csv`` over the run's. A score
that is not a finite number is refused. No participant code runs here.

With ``worker.isolation.labels: hidden`` it also makes what the sandbox is
handed instead of the data folder (``{"hand": PATH}``): the training data
with its labels, the test features without theirs, and the folds, pickled
into PATH (trusted code writes it, the sandbox only reads it:
:mod:`ramp_fleet.sandbox.train_predict`).

Requests are lines of JSON on stdin (``{"folder", "max_bytes"}``); answers
are lines of JSON on what was stdout when it started (rampwf's own prints go
to stderr): first ``{"ready": true, "official": ...}`` (or the reason it
cannot score), then ``{"scores": ...}`` or ``{"error": ...}`` per request.

It runs with the kit's Python, which has rampwf and numpy but not
ramp-fleet: standard library, numpy, pandas and rampwf only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import zipfile
from collections import OrderedDict
from typing import Any, TextIO

STEPS = ("train", "valid", "test")
TIMES = ("train_time", "valid_time", "test_time")


class Refused(Exception):
    """The predictions cannot be scored; the message says why, on one line."""


def main(argv: list[str]) -> int:
    kit, data = argv
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # what rampwf prints goes to stderr, never into the answers
    sys.stdout = sys.stderr
    try:
        problem = Problem(kit, data)
    except Exception as exc:
        _answer(answers, {"ready": False, "error": _line(exc)})
        return 1
    _answer(answers, {"ready": True, "official": problem.official()})
    for line in sys.stdin:
        request = json.loads(line)
        if "hand" in request:
            try:
                problem.hand(str(request["hand"]))
            except Refused as exc:
                _answer(answers, {"error": str(exc), "refused": True})
            except Exception as exc:
                _answer(answers, {"error": f"cannot hand the data over: {_line(exc)}"})
            else:
                _answer(answers, {"handed": True})
            continue
        try:
            scores = problem.score(str(request["folder"]), int(request["max_bytes"]))
        except Refused as exc:
            _answer(answers, {"error": str(exc)})
        except Exception as exc:  # the problem's own code failed on these predictions
            _answer(answers, {"error": f"scoring failed: {_line(exc)}"})
        else:
            _answer(answers, {"scores": scores})
    return 0


class Problem:
    """``problem.py`` with its data and folds, loaded once."""

    def __init__(self, kit: str, data: str):
        external = os.path.join(kit, "external_imports")
        if os.path.isdir(external) and external not in sys.path:
            sys.path.append(external)
        from rampwf.utils.importing import import_module_from_source

        self.data = data
        self.module: Any = import_module_from_source(os.path.join(kit, "problem.py"), "problem")
        self.X_train, self.y_train = self.module.get_train_data(path=data)
        self.X_test, self.y_test = self.module.get_test_data(path=data)
        self.cv = list(self.module.get_cv(self.X_train, self.y_train))
        if not _same_folds(self.cv, list(self.module.get_cv(self.X_train, self.y_train))):
            raise Refused("problem.get_cv gives other folds each time it is called: the trusted "
                          "scorer needs the folds the run used (seed its splitter)")

    def hand(self, path: str) -> None:
        """Write what a sandbox with hidden labels is given (see the module docstring), or
        :class:`Refused` when the data holds paths into the data folder."""
        import pickle

        for name, value in (("X_train", self.X_train), ("X_test", self.X_test)):
            found = path_into(value, self.data)
            if found is not None:
                raise Refused(f"{name} holds a path into the data folder ({found}): the kit's "
                              f"workflow reads files there while it trains or predicts, and "
                              f"labels: hidden keeps that folder out of the run's view; use "
                              f"labels: visible for this kit")
        _remove_leftovers(path)
        staging = _staging(path, os.getpid())
        try:
            with open(staging, "wb") as out:
                pickle.dump({"X_train": _loaded(self.X_train), "y_train": self.y_train,
                             "X_test": _loaded(self.X_test),
                             "cv": self.cv, "has_test": self.y_test is not None},
                            out, protocol=pickle.HIGHEST_PROTOCOL)
            os.chmod(staging, 0o644)
            os.replace(staging, path)
        except BaseException:
            os.unlink(staging)
            raise

    def official(self) -> dict[str, object]:
        first = self.module.score_types[0]
        return {"name": str(first.name), "lower_is_better": bool(first.is_lower_the_better),
                "precision": int(getattr(first, "precision", 2))}

    def score(self, folder: str, max_bytes: int) -> dict[str, Any]:
        from rampwf.utils.scoring import score_matrix
        from rampwf.utils.submission import bag_submissions

        score_types = self.module.score_types
        names = [str(score_type.name) for score_type in score_types]
        valid_list, test_list, folds, times = [], [], [], []
        for index, (train_is, valid_is) in enumerate(self.cv):
            fold = os.path.join(folder, f"fold_{index}")
            y_train = self._predictions(fold, "train", len(self.y_train), max_bytes)
            predicted = OrderedDict([
                ("train", self.module.Predictions(y_pred=y_train, fold_is=train_is)),
                ("valid", self.module.Predictions(y_pred=y_train, fold_is=valid_is))])
            truth = OrderedDict([
                ("train", self.module.Predictions(y_true=self.y_train, fold_is=train_is)),
                ("valid", self.module.Predictions(y_true=self.y_train, fold_is=valid_is))])
            if self.y_test is not None:
                y_test = self._predictions(fold, "test", len(self.y_test), max_bytes)
                predicted["test"] = self.module.Predictions(y_pred=y_test)
                truth["test"] = self.module.Predictions(y_true=self.y_test)
            table = score_matrix(score_types, ground_truth=truth, predictions=predicted)
            fold_times = [_time(fold, name, index) for name in TIMES[:len(predicted)]]
            table["time"] = fold_times
            scores = {step: {name: _finite(table.loc[step, name], f"{name} of fold {index} "
                                                                  f"({step})") for name in names}
                      for step in predicted}
            table.to_csv(os.path.join(fold, "scores.csv"))  # over the run's: as ramp-test writes it
            with open(os.path.join(fold, "state.txt"), "w") as state:
                state.write("scored")  # ramp-test's last word on the fold, also where it did not score
            folds.append(scores)
            times.append(dict(zip(predicted, fold_times, strict=True)))
            valid_list.append(predicted["valid"])
            test_list.append(predicted.get("test"))
        bag_submissions(self.module, self.cv, self.y_train, self.y_test, valid_list, test_list,
                        folder, ramp_data_dir=self.data, score_type_index=None, save_output=True)
        return {"folds": folds, "bagged": _bagged(os.path.join(folder, "bagged_scores.csv"), names),
                "times": times}

    def _predictions(self, fold: str, suffix: str, rows: int, max_bytes: int) -> Any:
        if not os.path.isdir(fold):
            raise Refused(f"training_output has no {os.path.basename(fold)}: the run did not finish it")
        loader = getattr(self.module, "load_y_pred", None)
        if loader is not None:  # the organiser's own format
            y_pred = loader(self.data, fold, suffix)
        else:
            y_pred = load_npz(os.path.join(fold, f"y_pred_{suffix}.npz"), "y_pred", max_bytes)
        if len(y_pred) != rows:
            raise Refused(f"{os.path.basename(fold)}/y_pred_{suffix} has {len(y_pred)} rows, "
                          f"the data {rows}")
        return y_pred


def _staging(path: str, pid: int) -> str:
    """Where scorer ``pid`` writes ``path`` before renaming it in: a name of its own, as
    another scorer of the event may be writing at once, that says whose it is."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{pid}.part")


def _remove_leftovers(path: str) -> None:
    """Remove what scorers killed while writing ``path`` left (the dispatcher stops its
    scorer at once, even mid-write): the staging files of processes no longer running."""
    folder, name = os.path.split(path)
    prefix, suffix = f".{name}.", ".part"
    for entry in os.listdir(folder):
        pid = entry[len(prefix):-len(suffix)]
        if (entry.startswith(prefix) and entry.endswith(suffix) and pid.isdigit()
                and not _running(int(pid))):
            with contextlib.suppress(FileNotFoundError):  # another scorer removed it first
                os.unlink(os.path.join(folder, entry))


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _loaded(value: Any) -> Any:
    """An xarray object opened lazily (``xr.open_dataset``) with its data read: pickled as
    it is, it would name its file, which the sandbox does not see."""
    if type(value).__module__.split(".")[0] == "xarray" and hasattr(value, "load"):
        return value.load()
    return value


def path_into(value: Any, data: str, depth: int = 0) -> str | None:
    """A string in ``value`` naming something in the ``data`` folder, if any: an image kit's
    ``X`` is ``(folder, ids)`` with ``folder`` in it. Containers and text columns are
    sampled (their first items), not read whole."""
    if isinstance(value, str | bytes | os.PathLike):
        text = os.fsdecode(value)
        if os.sep not in text or len(text) > 4096:
            return None
        top = os.path.realpath(data)
        for candidate in (text, os.path.join(data, text)):  # "./data/x" is the data's own
            try:
                real = os.path.realpath(candidate)
            except (OSError, ValueError):
                continue
            inside = real == top or real.startswith(top.rstrip(os.sep) + os.sep)
            if inside and os.path.exists(real):
                return text
        return None
    if depth >= 3:
        return None
    items: list[Any]
    if isinstance(value, dict):
        items = list(value.values())[:16]
    elif isinstance(value, tuple | list):
        items = list(value[:16])
    elif hasattr(value, "columns") and hasattr(value, "dtypes"):  # a DataFrame: its text columns
        items = [value[column] for column, dtype in list(value.dtypes.items())[:256]
                 if getattr(dtype, "kind", "") in "OSU"]
    elif getattr(getattr(value, "dtype", None), "kind", "") in "OSU":  # text arrays, Series
        import numpy as np

        items = list(np.asarray(value).ravel()[:16])
    else:
        return None
    for item in items:
        found = path_into(item, data, depth + 1)
        if found is not None:
            return found
    return None


def load_npz(path: str, name: str, max_bytes: int) -> Any:
    """Array ``name`` of the ``.npz`` at ``path``: plain numbers only (never a pickle), and
    sizes checked before anything is allocated."""
    from numpy.lib import format as npy

    shown = os.path.join(*path.split(os.sep)[-2:])
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise Refused(f"{shown} is missing or not an .npz file ({_line(exc)})") from None
    with archive:
        try:
            member = archive.getinfo(f"{name}.npy")
        except KeyError:
            raise Refused(f"{shown} holds no array {name!r}") from None
        if member.file_size > max_bytes:
            raise Refused(f"{shown}: {name} is {member.file_size} bytes, more than {max_bytes}")
        with archive.open(member) as stream:
            read_header = {(1, 0): npy.read_array_header_1_0,
                           (2, 0): npy.read_array_header_2_0}.get(npy.read_magic(stream))
            if read_header is None:
                raise Refused(f"{shown}: {name} is in a .npy version numpy does not write")
            shape, _, dtype = read_header(stream)
            if dtype.hasobject:
                raise Refused(f"{shown}: {name} holds Python objects (a pickle): refused")
            if math.prod(shape) * dtype.itemsize > member.file_size:
                raise Refused(f"{shown}: {name} declares more data than it holds")
        with archive.open(member) as stream:
            return npy.read_array(stream, allow_pickle=False)


def _bagged(path: str, names: list[str]) -> dict[str, dict[str, float]]:
    """The bagged scores of each step at its largest ``n_bag`` (all folds), as written."""
    import pandas as pd

    table = pd.read_csv(path, index_col=[0, 1])
    bagged: dict[str, dict[str, float]] = {}
    for step in dict.fromkeys(table.index.get_level_values(0)):
        rows = table.loc[step]
        last = rows.loc[rows.index.max()]
        bagged[str(step)] = {name: _finite(last[name], f"bagged {name} ({step})")
                             for name in names}
    return bagged


def _time(fold: str, name: str, index: int) -> float:
    """A duration ramp-test wrote (participant's numbers, but not scores): sane or refused."""
    try:
        with open(os.path.join(fold, name), encoding="ascii") as text:
            value = float(text.read(64).strip())
    except (OSError, ValueError, UnicodeDecodeError):
        raise Refused(f"fold {index} has no readable {name}") from None
    if not math.isfinite(value) or value < 0:
        raise Refused(f"{name} of fold {index} is {value}, not a duration")
    return value


def _finite(value: Any, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise Refused(f"the score {what} is {number}, not a finite number: refused")
    return number


def _same_folds(first: list[Any], second: list[Any]) -> bool:
    import numpy as np

    return len(first) == len(second) and all(
        len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y))
                                 for x, y in zip(a, b, strict=True))
        for a, b in zip(first, second, strict=True))


def _answer(out: TextIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message, allow_nan=False) + "\n")
    out.flush()


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
