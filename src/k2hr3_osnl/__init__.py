"""k2hr3-osnl: removes deleted OpenStack VMs from K2HR3 roles, from their notifications."""

from importlib import metadata

try:
    __version__ = metadata.version("k2hr3-osnl")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"
