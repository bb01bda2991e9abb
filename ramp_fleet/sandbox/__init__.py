"""Submissions run isolated: a participant's code sees its kit, its data and its own folder.

Every backend runs ``ramp-test`` through the sandbox built here, on the
machine of the run, with bubblewrap (``bwrap``: unprivileged user
namespaces, no daemon, milliseconds to start):

* :mod:`~ramp_fleet.sandbox.runner` — the whole run on its host: limits, start, deadline,
  collection, report (the one program every backend starts);
* :mod:`~ramp_fleet.sandbox.inner` — the sandbox's first process (prepare, start, end);
* :mod:`~ramp_fleet.sandbox.view` — what a run sees: the bwrap command line;
* :mod:`~ramp_fleet.sandbox.seccomp` — the system calls a run may not make;
* :mod:`~ramp_fleet.sandbox.cgroups`, :mod:`~ramp_fleet.sandbox.watchdog` — memory and
  processes capped and measured (cgroup v2, v1, else a resident-memory watchdog);
* :mod:`~ramp_fleet.sandbox.probe` — whether bwrap works here (a real try, cached);
* :mod:`~ramp_fleet.sandbox.command` — the decision (``mode``) and the runner's command line;
* :mod:`~ramp_fleet.sandbox.spec` — what a run asks for, what the runner reports;
* :mod:`~ramp_fleet.sandbox.tree`, :mod:`~ramp_fleet.sandbox.tar` — what a run made, read
  without following anything and capped, packed and parsed;
* :mod:`~ramp_fleet.sandbox.zipapp` — the same package as ``sandbox.pyz`` for AWS instances.

The package uses the standard library only (Python 3.10+) so that it can
be shipped to an instance as it is. :mod:`ramp_fleet.ramp_test` is where the
dispatcher side meets it.
"""
