"""Submissions run isolated: a participant's code sees its kit, its data and its own folder.

Every backend runs ``ramp-test`` through the sandbox built here, on the
machine of the run, with bubblewrap (``bwrap``: unprivileged user
namespaces, no daemon, milliseconds to start):

* :mod:`~ramp_fleet.sandbox.runner` — the one program every backend starts: a run folder's
  inputs in, its log, results and report out;
* :mod:`~ramp_fleet.sandbox.run` — the run itself: limits, start, deadline, the kill of the
  whole tree, collection, measure (:mod:`~ramp_fleet.sandbox.verdict` says what ended it,
  :mod:`~ramp_fleet.sandbox.logs` bounds its log, :mod:`~ramp_fleet.sandbox.programs`
  finds ``ramp-test`` and its variables);
* :mod:`~ramp_fleet.sandbox.inner` — the sandbox's first process (prepare, start, end);
* :mod:`~ramp_fleet.sandbox.guard` — bwrap's parent: the sandbox ends whole, whoever is
  killed first (the runner SIGKILLed during the sandbox's setup included);
* :mod:`~ramp_fleet.sandbox.view` — what a run sees: the bwrap command line;
* :mod:`~ramp_fleet.sandbox.seccomp` — the system calls a run may not make;
* :mod:`~ramp_fleet.sandbox.cgroups`, :mod:`~ramp_fleet.sandbox.watchdog` — memory and
  processes capped and measured (cgroup v2, v1, else a resident-memory watchdog);
* :mod:`~ramp_fleet.sandbox.probe` — whether bwrap works here (a real try, cached);
* :mod:`~ramp_fleet.sandbox.command` — the decision (``mode``) and the sandbox's view;
* :mod:`~ramp_fleet.sandbox.spec` — what a run asks for, what the runner reports;
* :mod:`~ramp_fleet.sandbox.tree`, :mod:`~ramp_fleet.sandbox.tar` — what a run made, read
  without following anything and capped, packed and parsed;
* :mod:`~ramp_fleet.sandbox.zipapp` — the same package as ``runner.pyz`` for AWS instances.

The package uses the standard library only (Python 3.10+) so that it can
be shipped to an instance as it is; it is the lowest layer of the house
(docs/architecture.md). :mod:`ramp_fleet.workers.inputs` is where the
dispatcher's side writes a run folder for it, :mod:`ramp_fleet.results` where
its outputs are received.
"""
