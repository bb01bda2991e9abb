"""Where an event's state lives: submissions, their states, scores."""

from ramp_fleet.store.db import Store, Submission
from ramp_fleet.store.lock import DispatcherLock
from ramp_fleet.store.states import IllegalStateChange, State

__all__ = ["DispatcherLock", "IllegalStateChange", "State", "Store", "Submission"]
