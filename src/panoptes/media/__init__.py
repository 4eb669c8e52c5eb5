"""Media sources: decoding files, network streams, image folders and test patterns into frames."""

from panoptes.media.reader import DecodedFrame, FrameReader, RealTimePacer, open_reader
from panoptes.media.samples import default_sample_sources, make_sample_clips

__all__ = [
    "DecodedFrame",
    "FrameReader",
    "RealTimePacer",
    "default_sample_sources",
    "make_sample_clips",
    "open_reader",
]
