"""The Pulumi program of a RAMP event: read the event config, compose the components.

    pulumi config set ramp-fleet:eventConfig path/to/config.yml
    pulumi up
"""

import pulumi
from event_stack import StackSettings, provision

from ramp_fleet.errors import RampFleetError

try:
    outputs = provision(StackSettings.from_pulumi_config())
except RampFleetError as exc:
    raise pulumi.RunError(str(exc)) from None
for name, value in outputs.items():
    pulumi.export(name, value)
