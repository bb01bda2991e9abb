"""What the AWS worker needs from AWS, one module per concern.

* :mod:`~ramp_fleet.aws.session` — credentials, region, the EC2 client;
* :mod:`~ramp_fleet.aws.ami` — which image to boot (newest version of a name);
* :mod:`~ramp_fleet.aws.instances` — launch (spot or on-demand), watch, terminate, reap;
* :mod:`~ramp_fleet.aws.ssh` — one persistent, host-key-checked SSH connection per instance;
* :mod:`~ramp_fleet.aws.remote` — the command lines run on an instance (from ``templates/``);
* :mod:`~ramp_fleet.aws.fleet` — what one dispatcher shares: the image, the instance pool.

boto3 and fabric are imported here and nowhere else in the runtime.
"""
