"""The exception hierarchy.

Every error panoptes raises derives from :class:`PanoptesError` and also from the builtin it is
closest to, so ``except ValueError`` keeps working for callers who do not know panoptes.
Messages name the place (a config path such as ``sources[1].uri``, a model file, a stream) and,
where there is one, the fix.
"""

from __future__ import annotations


class PanoptesError(Exception):
    """Base of every panoptes error."""


class ConfigError(PanoptesError, ValueError):
    """A configuration is malformed; ``place`` is its path in the config (``sources[1].uri``)."""

    def __init__(self, message: str, place: str | None = None) -> None:
        self.place = place
        self.places: list[str] = [place] if place else []
        self.reason = message
        super().__init__(f"{place}: {message}" if place else message)


class ModelError(PanoptesError, ValueError):
    """A model cannot be loaded or does not fit what was asked of it."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """A model file is missing and cannot be downloaded."""


class SourceError(PanoptesError, OSError):
    """A source cannot be opened or read. ``source`` names it (its name or URI)."""

    def __init__(self, message: str, source: str | None = None) -> None:
        self.source = source
        self.reason = message
        super().__init__(f"{source}: {message}" if source else message)


class LinkError(PanoptesError, TypeError):
    """Two elements cannot be linked (what one produces is not what the next takes)."""


class PipelineError(PanoptesError, RuntimeError):
    """The pipeline cannot be built or run as asked."""
