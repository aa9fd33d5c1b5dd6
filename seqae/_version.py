"""The installed version, in a module of its own so that seqae's modules can import it without
importing the package's ``__init__`` (which would make an import cycle with ``seqae.load_model``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("seqae")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
