"""Call archiver: moves provider transcripts and recordings into your own storage, verified, then
has the provider delete them."""

__version__ = "0.1.0"
