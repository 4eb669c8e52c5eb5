"""An RTSP server of live H.264 streams, written for panoptes, and what feeds it.

- :class:`RtspServer` serves paths (:class:`H264Mount`) that H.264 access units are pushed into,
  to RTSP 1.0 clients over RTP (TCP interleaved or UDP unicast), with RTCP sender reports;
  :func:`shared_server` is the one server of a process on a given address.
- :class:`H264Encoder` turns BGR images or decoded frames into access units to push.
- :func:`serve_files` serves video files looped at their real speed (``panoptes serve``),
  through :class:`FileFeeder`.

::

    server = RtspServer(host="0.0.0.0", port=8554)
    server.start()
    mount = server.mount("/cam1")
    encoder = H264Encoder(1280, 720, 30)
    for access_unit, keyframe in encoder.encode(image_bgr):
        mount.push(access_unit, pts_s=frame_index / 30, keyframe=keyframe)
"""

from panoptes.media.rtsp.encoder import H264Encoder
from panoptes.media.rtsp.files import Clip, FileFeeder, probe_clip, serve_files
from panoptes.media.rtsp.server import H264Mount, RtspServer, RtspServerError, shared_server

__all__ = [
    "Clip",
    "FileFeeder",
    "H264Encoder",
    "H264Mount",
    "RtspServer",
    "RtspServerError",
    "probe_clip",
    "serve_files",
    "shared_server",
]
