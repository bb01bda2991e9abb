"""The Dask backend's side in the dispatcher and on the organiser's machine: the client
connection (TLS, no pickles), certificates, the hosts' settings, a local cluster, and the
elastic cluster on EC2. What runs on a Dask worker host is :mod:`ramp_fleet.host.dask_task`.
"""
