"""An SSH host key made for one instance, handed to it at launch through user-data.

The fleet never has to trust a key it sees for the first time: it generates
an Ed25519 key pair per instance, passes the private half to the instance's
cloud-init (``ssh_keys`` in the cloud-config, which replaces the image's own
keys and generates no others), and records the public half under the
instance id before connecting. The private half lives only in the launch
request and on the instance; it is never written here, logged, or kept.

Seen from the instance, the key is in its user-data, which any process there
that can reach the metadata service can read. A submission in the sandbox
(``worker.isolation.network: none``) cannot; with isolation off it could, and
would hold the key of that one instance only — it still could not intercept
the dispatcher's connections without a place on the network path.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import paramiko
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class InstanceHostKey:
    """One instance's host key: the cloud-config that installs it, and its public half."""

    user_data: str
    public_key: paramiko.PKey

    def __repr__(self) -> str:  # the user-data holds the private key: never shown
        return f"InstanceHostKey({self.public_key.get_name()} {self.public_key.fingerprint})"

    @classmethod
    def generate(cls) -> InstanceHostKey:
        private = Ed25519PrivateKey.generate()
        private_text = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption()).decode()
        public_line = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        blob = base64.b64decode(public_line.split()[1])
        return cls(cloud_config(private_text, public_line), paramiko.Ed25519Key(data=blob))


def cloud_config(private_key: str, public_key: str) -> str:
    """cloud-init user-data installing exactly this Ed25519 host key."""
    document = {
        "ssh_deletekeys": True,   # the keys baked into the image go
        "ssh_genkeytypes": [],    # and no other type is generated
        "ssh_keys": {"ed25519_private": private_key, "ed25519_public": public_key},
    }
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False)
