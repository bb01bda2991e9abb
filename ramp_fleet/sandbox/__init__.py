"""Submissions run isolated: a participant's code sees its kit, its data and its own folder.

Every backend runs ``ramp-test`` through the sandbox built here, on the
machine of the run, with bubblewrap (``bwrap``: unprivileged user
namespaces, no daemon, milliseconds to start):

* :mod:`~ramp_fleet.sandbox.view` — what a run sees: the bwrap command line;
* :mod:`~ramp_fleet.sandbox.probe` — whether bwrap works here (a real try, cached);
* :mod:`~ramp_fleet.sandbox.limits` — memory and process caps (cgroup v2 or rlimits);
* :mod:`~ramp_fleet.sandbox.spec` — what a run asks for, what its launcher reports;
* :mod:`~ramp_fleet.sandbox.command` — the command a backend starts, built where it runs;
* :mod:`~ramp_fleet.sandbox.launch` — the process that applies limits and reports;
* :mod:`~ramp_fleet.sandbox.zipapp` — the same package as ``sandbox.pyz`` for AWS instances.

The package uses the standard library only (Python 3.10+) so that it can
be shipped to an instance as it is. :mod:`ramp_fleet.ramp_test` is where the
dispatcher side meets it.
"""
