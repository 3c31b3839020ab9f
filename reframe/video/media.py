"""The one way an input file is opened for reading: local file protocol, ordinary containers.

FFmpeg's defaults include demuxers that read further files or URLs named inside the input
(HLS and DASH playlists, ffconcat lists, image sequences, tee, SDP/RTP descriptions). A file
that is one of those makes FFmpeg read something else as if it were the upload: another
customer's clip on the same disk, a network address. The probe refused them from the start;
every other open of an input (decode, scene analysis, the keyframe scan, the source audio of an
encode or a stitch) goes through `open_media` too, so the renderer applies the same rules.

`demuxer` forces the container format the probe found (`VideoProbe.container`): a render then
reads the file the way it was priced, and bytes swapped for another kind of file afterwards are
refused instead of being read as whatever they now claim to be.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reframe.errors import InvalidMedia

# Demuxers a user's video can reasonably arrive in. Excludes hls, dash, concat, image2, tee and
# other formats that read further files or URLs named inside the input.
ALLOWED_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "mpegts",
    "mpeg",
    "flv",
    "ogg",
    "asf",
    "h264",
    "hevc",
    "m4v",
    "ivf",
    "yuv4mpegpipe",
    "gif",
    # Probing a plain audio file must say "audio-only", not "unrecognised"; these are harmless.
    "mp3",
    "wav",
    "aac",
    "flac",
)

_ALLOWED_NAMES = frozenset(name for group in ALLOWED_FORMATS for name in group.split(","))

PLAYLIST_REFUSED = (
    "this is not a video file we can read: playlists, stream descriptions and other formats "
    "that point at further files are not accepted; upload an MP4, MOV, MKV or WebM video"
)


def input_options() -> dict[str, str]:
    """FFmpeg options that confine an open to one local file in an ordinary container."""
    return {"protocol_whitelist": "file", "format_whitelist": ",".join(ALLOWED_FORMATS)}


def open_media(
    path: Path | str,
    *,
    demuxer: str | None = None,
    options: dict[str, str] | None = None,
) -> Any:
    """Open `path` for reading under the whitelists; an `av` input container.

    `demuxer`: a container format name as FFmpeg reports it ("mov,mp4,m4a,3gp,3g2,mj2" or
    just "mov"); the file must be that kind. `options` add to (never replace) the
    whitelists. Raises InvalidMedia with a reason that names the file, not its folder.
    """
    import av

    path = Path(path)
    shown = path.name
    forced: str | None = None
    if demuxer is not None:
        forced = demuxer.split(",")[0]
        if forced not in _ALLOWED_NAMES:
            raise InvalidMedia(PLAYLIST_REFUSED)
    if not path.exists():
        raise InvalidMedia(f"{shown}: no such file")
    if path.is_dir():
        raise InvalidMedia(f"{shown}: is a directory, not a video file")
    settings = {**(options or {}), **input_options()}
    try:
        return av.open(
            str(path), mode="r", format=forced, options=settings, metadata_errors="ignore"
        )
    except av.error.EOFError:
        raise InvalidMedia(
            f"{shown}: the file ends before any video data; it is empty or the upload was cut short"
        ) from None
    except av.error.InvalidDataError:
        if forced is not None:
            raise InvalidMedia(
                f"{shown}: this is not the kind of file that was checked ({demuxer}); it was "
                "replaced or damaged after upload, upload it again"
            ) from None
        raise InvalidMedia(
            f"{shown}: this is not a video file we can read: the container is unrecognised or "
            "damaged (a truncated MP4 looks like this); upload an MP4, MOV, MKV or WebM video"
        ) from None
    except av.error.FFmpegError as exc:
        # A demuxer or protocol outside the whitelists fails the open with EINVAL (the
        # "not on whitelist" text only shows when FFmpeg's log is captured); nothing else in
        # these fixed options is invalid, so EINVAL here means "a kind of file we refuse".
        if isinstance(exc, av.error.ArgumentError) or "not on whitelist" in str(exc):
            raise InvalidMedia(PLAYLIST_REFUSED) from None
        # FFmpeg's messages quote the full path; the user only knows their file's name.
        reason = str(exc).replace(str(path), shown)
        raise InvalidMedia(f"{shown}: the file could not be opened as a video ({reason})") from None
    except OSError as exc:
        raise InvalidMedia(f"{shown}: cannot open ({exc.strerror or exc})") from None
