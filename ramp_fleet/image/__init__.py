"""The event's AMI: the build document (from pipelines/ and templates/) and build-ami."""
