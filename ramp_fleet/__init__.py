"""ramp-fleet: worker fleets for RAMP data-challenge events.

Kept import-light on purpose: ``ramp-fleet --help`` must not pay for boto3,
dask or pandas.
"""

__version__ = "0.1.0"
