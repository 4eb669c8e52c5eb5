"""Real clips served on 127.0.0.1 for the RTSP tests (the ``served`` fixture's value)."""

from __future__ import annotations

from dataclasses import dataclass

from panoptes.media.rtsp import FileFeeder, H264Mount, RtspServer


@dataclass
class ServedClips:
    """``/hall``: the one-by-one clip (H.264 with B-frames, 10 fps, a key frame each second);
    ``/parking``: the parking-lot clip (H.264 baseline, 12 fps, a key frame each 5 s)."""

    server: RtspServer
    feeders: dict[str, FileFeeder]

    def url(self, path: str) -> str:
        return self.server.url(path, host="127.0.0.1")

    def mount(self, path: str) -> H264Mount:
        return self.feeders[path].mount
