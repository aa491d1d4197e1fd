"""tarexport: container images to one reproducible docker-save or OCI archive, daemonless."""

__version__ = "0.1.0"
