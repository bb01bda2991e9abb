"""The Pulumi program of a RAMP event: read the event config, compose the components.

    pulumi config set ramp-fleet:eventConfig path/to/config.yml
    pulumi up
"""

import sys

from ramp_fleet.errors import RampFleetError
from ramp_fleet.extras import MissingExtra, require

try:
    require("infra", "the Pulumi program")
except MissingExtra as missing:
    try:  # under `pulumi up` pulumi itself imports: its error shows the one line
        import pulumi
    except ImportError:  # run by hand without pulumi: the line, exit status 2
        print(f"error: {missing}", file=sys.stderr)
        sys.exit(missing.exit_code)
    raise pulumi.RunError(str(missing)) from None

import pulumi  # only once the infra extra is known to be installed
from event_stack import StackSettings, provision

try:
    outputs = provision(StackSettings.from_pulumi_config())
except RampFleetError as exc:
    raise pulumi.RunError(str(exc)) from None
for name, value in outputs.items():
    pulumi.export(name, value)
