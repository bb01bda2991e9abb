"""Workers: one module per backend, and the public ``BaseWorker`` API.

``from ramp_fleet.workers import BaseWorker`` is the import a custom worker
written after the RAMP guide needs. Backends are imported only when chosen.
"""

from ramp_fleet.workers.base import BaseWorker
from ramp_fleet.workers.registry import worker_class
from ramp_fleet.workers.status import IllegalTransition, WorkerStatus

__all__ = ["BaseWorker", "IllegalTransition", "WorkerStatus", "worker_class"]
