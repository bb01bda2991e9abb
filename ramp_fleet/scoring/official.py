"""The event's official score: the first score type of the kit's ``problem.py``.

One place decides it. The dispatcher records it in the store at the first
scored result, as its trusted scorer read it; a leaderboard reads the store and
never imports the kit — only a store from before the score was recorded asks
``problem.py`` once, here, and records the answer.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

from ramp_fleet.errors import UsageError
from ramp_fleet.scoring.files import ScoreType
from ramp_fleet.store import Store


def official_score(store: Store, kit_dir: Path,
                   ask: Callable[[], ScoreType] | None = None) -> tuple[str, bool]:
    """``(name, lower_is_better)`` of the event's official score, as the store recorded it;
    else asked of ``ask`` (the trusted scorer) or of the kit's ``problem.py``, and recorded."""
    recorded = store.official_score()
    if recorded is not None:
        return recorded
    score_type = ask() if ask is not None else official_score_type(kit_dir)
    return store.record_official_score(score_type.name, score_type.lower_is_better)


def official_score_type(kit_dir: Path) -> ScoreType:
    """The first score type of the kit's ``problem.py``: the event's official score.

    ``problem.py`` is executed as rampwf executes it, without registering a
    module or leaving its ``external_imports`` folder on ``sys.path``; the
    result is cached until the file changes.
    """
    problem = Path(kit_dir).resolve() / "problem.py"
    try:
        mtime_ns = problem.stat().st_mtime_ns
    except OSError as exc:
        raise UsageError(f"{problem}: cannot read the problem ({exc.strerror})") from None
    return _load_official_score_type(str(problem), mtime_ns)


@functools.lru_cache(maxsize=32)
def _load_official_score_type(problem: str, mtime_ns: int) -> ScoreType:
    """Execute ``problem`` and describe its first score type (cached per mtime)."""
    from rampwf.utils.importing import import_module_from_source

    external = str(Path(problem).parent / "external_imports")
    saved_path = list(sys.path)
    if Path(external).is_dir():
        sys.path.append(external)
    try:
        module = import_module_from_source(problem, "problem")
    except Exception as exc:
        raise UsageError(f"{problem}: loading failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path[:] = saved_path
    score_types = getattr(module, "score_types", None)
    if not score_types:
        raise UsageError(f"{problem}: defines no score_types")
    first = score_types[0]
    try:
        return ScoreType(
            name=str(first.name),
            lower_is_better=bool(first.is_lower_the_better),
            precision=int(getattr(first, "precision", 2)),
        )
    except AttributeError as exc:
        raise UsageError(f"{problem}: score_types[0] is not a rampwf score type ({exc})") from None
