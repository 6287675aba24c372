"""MP4 (and WebM) video through PyAV: encode RGB frames, decode frames by timestamp as LeRobot does.

The pinned PyAV wheel (av 18.1.0) bundles an ffmpeg with the decoders `libdav1d` and `av1` (AV1), `h264`, `hevc`,
`vp9`/`libvpx-vp9` and `mpeg4`, and the encoders `libsvtav1` (AV1), `libx264`, `libx265`, `libvpx-vp9` and `mpeg4`;
it has no `libaom`. LeRobot writes AV1 (libsvtav1, yuv420p, GOP 2, CRF 30) by default and H.264 on request.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

# LeRobot looks frames up by timestamp and accepts the nearest one within this many seconds (tolerance_s).
TIMESTAMP_TOLERANCE_S = 1e-4
# Writer presets: the codec name PyAV encodes with, and the name LeRobot records in features[k].info.video.codec.
VIDEO_CODECS = {"av1": "libsvtav1", "h264": "libx264"}
DEFAULT_VIDEO_CODEC = "av1"
# SVT-AV1 prints its whole configuration at info level for every file; errors are enough.
os.environ.setdefault("SVT_LOG", "1")


class VideoError(Exception):
    """A video that cannot be opened or decoded, or lacks a frame that was asked for; the caller adds where.
    `index` is the position (in the caller's timestamps) of the frame concerned, when one is."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.message = message
        self.index = index


def encode_video(
    path: Path, frames: Iterable[np.ndarray], fps: int, codec: str = DEFAULT_VIDEO_CODEC, *, gop: int = 2, crf: int = 30
) -> None:
    """Write (H, W, 3) uint8 frames as one video stream; frame i gets pts i (time i / fps). `codec` is a key of
    VIDEO_CODECS or "vp9" (WebM). Odd sizes are refused: yuv420p needs even width and height."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    container_format = "webm" if codec == "vp9" else "mp4"
    encoder = "libvpx-vp9" if codec == "vp9" else VIDEO_CODECS[codec]
    with av.open(str(path), "w", format=container_format) as container:
        stream: av.video.stream.VideoStream | None = None
        for index, frame in enumerate(frames):
            if stream is None:
                height, width = frame.shape[:2]
                if height % 2 or width % 2:
                    raise ValueError(f"video frames must have even width and height for yuv420p, got {width}x{height}")
                options = {"crf": str(crf)}
                if codec == "vp9":
                    options["b"] = "0"  # constant quality
                added = container.add_stream(encoder, rate=fps, options=options)
                assert isinstance(added, av.video.stream.VideoStream)
                stream = added
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.codec_context.gop_size = gop
                stream.codec_context.time_base = Fraction(1, fps)
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame, dtype=np.uint8), format="rgb24")
            video_frame.pts = index
            video_frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(video_frame))
        if stream is None:
            raise ValueError("a video needs at least one frame")
        container.mux(stream.encode())


@dataclass(frozen=True)
class DecodedFrame:
    time: float
    width: int
    height: int
    image: np.ndarray  # (H, W, 3) uint8 at the requested size


def iter_frames(path: Path, size: tuple[int, int] | None = None) -> Iterator[DecodedFrame]:
    """Every frame of the file's first video stream in presentation order, as RGB, resized to `size` (h, w) by
    ffmpeg's scaler when given. VideoError when the file cannot be opened or decoded."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise VideoError(f"cannot open the video ({error})") from None
    try:
        if not container.streams.video:
            raise VideoError("the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    raise VideoError("a frame has no presentation timestamp")
                assert stream.time_base is not None
                time = float(frame.pts * stream.time_base)
                if size is None:
                    image = frame.to_ndarray(format="rgb24")
                else:
                    image = frame.to_ndarray(format="rgb24", width=size[1], height=size[0])
                yield DecodedFrame(time=time, width=frame.width, height=frame.height, image=image)
        except av.error.FFmpegError as error:
            raise VideoError(f"the video is corrupt ({error})") from None
    finally:
        container.close()


def decode_at_timestamps(
    path: Path,
    timestamps: np.ndarray,
    expected_hw: tuple[int, int],
    out: np.ndarray,
    size: tuple[int, int],
    tolerance_s: float = TIMESTAMP_TOLERANCE_S,
) -> None:
    """Decode `path` once, front to back, and write into out[i] (C, h, w uint8) the frame whose time is within
    `tolerance_s` of timestamps[i] (timestamps ascending). VideoError names the first timestamp with no such
    frame, or a frame whose size is not `expected_hw`."""
    order = np.argsort(timestamps, kind="stable")
    wanted = timestamps[order]
    position = 0
    last_time = None
    for frame in iter_frames(path, size):
        if position >= len(wanted):
            break
        if (frame.height, frame.width) != tuple(expected_hw):
            raise VideoError(
                f"frame at {frame.time:.4f} s is {frame.height}x{frame.width}, "
                f"meta/info.json declares {expected_hw[0]}x{expected_hw[1]}",
                int(order[position]),
            )
        if wanted[position] < frame.time - tolerance_s:
            raise VideoError(
                f"no frame within {tolerance_s} s of timestamp {wanted[position]:.4f} s", int(order[position])
            )
        while position < len(wanted) and abs(wanted[position] - frame.time) <= tolerance_s:
            out[order[position]] = frame.image.transpose(2, 0, 1)
            position += 1
        last_time = frame.time
    if position < len(wanted):
        end = "the file has no frames" if last_time is None else f"its last frame is at {last_time:.4f} s"
        raise VideoError(f"timestamp {wanted[position]:.4f} s is outside the file ({end})", int(order[position]))
