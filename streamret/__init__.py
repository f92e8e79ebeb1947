"""streamret: embeddings and summaries of arbitrarily long text streams with a RetNet."""

from importlib.metadata import PackageNotFoundError, version

try:  # the one version source is pyproject.toml's [project] version, read back from the installed metadata
    __version__ = version("streamret")
except PackageNotFoundError:  # a source tree that was never installed (pip install -e . fixes it)
    __version__ = "0+unknown"
