"""streamret: embeddings and summaries of arbitrarily long text streams with a RetNet."""

__version__ = "0.1.0"
