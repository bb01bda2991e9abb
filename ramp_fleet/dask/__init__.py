"""What the Dask backend runs on the Dask worker hosts, and the local-cluster helper.

Kept free of dispatcher code: a Dask worker imports ``ramp_fleet.dask.task``
(and through it ``archive`` and ``ramp_fleet.process``) and nothing else of
ramp-fleet. The dispatcher's side is :mod:`ramp_fleet.workers.dask`.
"""
