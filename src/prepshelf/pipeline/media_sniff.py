"""Audio and video containers recognised by their first bytes (sniff.py asks this first).

Kinds: mp3 (with an ID3v2 tag, or bare MPEG audio frames: two consecutive valid frame headers),
wav and avi (RIFF), m4a, mp4 and mov (an ISO base media `ftyp` box, told apart by its brand),
ogg (Ogg pages: Opus, Vorbis, FLAC or Theora inside), flac, webm and mkv (EBML, told apart by
the DocType). Whether a file really holds an audio stream is for ffprobe to say
(`media.py`); this only decides that it is media and not a document.
"""

from __future__ import annotations

AUDIO_KINDS = frozenset({"mp3", "wav", "m4a", "ogg", "flac"})
VIDEO_KINDS = frozenset({"mp4", "mov", "webm", "mkv", "avi"})
MEDIA_KINDS = AUDIO_KINDS | VIDEO_KINDS

MEDIA_LABELS = {
    "mp3": "MP3 audio",
    "wav": "WAV audio",
    "m4a": "M4A (MPEG-4) audio",
    "ogg": "Ogg audio",
    "flac": "FLAC audio",
    "mp4": "MP4 video",
    "mov": "QuickTime video",
    "webm": "WebM video",
    "mkv": "Matroska video",
    "avi": "AVI video",
}

# ISO base media brands that are still images, not media (HEIF/AVIF photos).
IMAGE_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"})
IMAGE_BRANDS |= {b"avif", b"avis"}
_AUDIO_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "})

# MPEG audio: kbit/s by [version is MPEG-1][layer][index], Hz by [version][index].
_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def media_kind(head: bytes) -> str | None:
    """The media kind of a file starting with `head` (a few KB), or None."""
    if head.startswith(b"RIFF") and head[8:12] in (b"WAVE", b"AVI "):
        return "wav" if head[8:12] == b"WAVE" else "avi"
    if head[4:8] == b"ftyp" and head[8:12] not in IMAGE_BRANDS:
        brand = head[8:12]
        if brand in _AUDIO_BRANDS:
            return "m4a"
        return "mov" if brand == b"qt  " else "mp4"
    if head.startswith(b"OggS\x00"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "webm" if b"webm" in head[:64] else "mkv"
    if _id3_tag(head) or _mpeg_frames(head):
        return "mp3"
    return None


def _id3_tag(head: bytes) -> bool:
    """An ID3v2 header: "ID3", version 2-4, revision < 0xFF, four syncsafe size bytes."""
    return (
        len(head) >= 10
        and head.startswith(b"ID3")
        and head[3] in (2, 3, 4)
        and head[4] != 0xFF
        and all(b < 0x80 for b in head[6:10])
    )


def _mpeg_frames(head: bytes) -> bool:
    """Two consecutive valid MPEG audio frame headers at the start (no tag)."""
    first = _frame_length(head, 0)
    return first is not None and _frame_length(head, first) is not None


def _frame_length(data: bytes, at: int) -> int | None:
    """The length of the MPEG audio frame whose header starts at `at`, if it is one."""
    if at + 4 > len(data) or data[at] != 0xFF or data[at + 1] & 0xE0 != 0xE0:
        return None
    version = (data[at + 1] >> 3) & 3  # 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5, 1 reserved
    layer = 4 - ((data[at + 1] >> 1) & 3)  # 4 = reserved
    bitrate_index, rate_index = data[at + 2] >> 4, (data[at + 2] >> 2) & 3
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version == 3
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_index] * 1000
    rate = _SAMPLE_RATES[version][rate_index]
    padding = (data[at + 2] >> 1) & 1
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    factor = 144 if layer == 2 or mpeg1 else 72
    return factor * bitrate // rate + padding
