"""Facts about the whole event, kept in the ``meta`` table: its official score."""

from __future__ import annotations

import json

from ramp_fleet.store.connection import Connections

#: ``meta`` key of the event's official score: ``{"name": ..., "lower_is_better": ...}``.
OFFICIAL_SCORE = "official_score"


class Meta(Connections):
    """The event's facts in ``meta``, read and recorded."""

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def official_score(self) -> tuple[str, bool] | None:
        """The event's official score as recorded: ``(name, lower_is_better)``, or None."""
        value = self.get_meta(OFFICIAL_SCORE)
        if value is None:
            return None
        data = json.loads(value)
        return str(data["name"]), bool(data["lower_is_better"])

    def record_official_score(self, name: str, lower_is_better: bool) -> tuple[str, bool]:
        """Record the official score unless one is recorded already; returns the one kept."""
        value = json.dumps({"name": name, "lower_is_better": lower_is_better})
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                       (OFFICIAL_SCORE, value))
        recorded = self.official_score()
        assert recorded is not None
        return recorded
