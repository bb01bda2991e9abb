"""The event config: one loader for the runtime and the Pulumi program."""

from ramp_fleet.config.event import EventConfig
from ramp_fleet.config.loader import load_event_config, mask_secrets

__all__ = ["EventConfig", "load_event_config", "mask_secrets"]
