"""Code that runs on worker hosts, never in the dispatcher: the Dask task.

It starts the runner (:mod:`ramp_fleet.sandbox.runner`) on its host and
imports nothing of the dispatcher's side; a Dask worker imports it by name
when it runs a task.
"""
