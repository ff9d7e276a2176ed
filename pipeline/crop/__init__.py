"""The crop stage: face boxes of a clips table to 256x256 25 fps clips plus 16 kHz WAVs.

``geometry`` scales and squares boxes, ``probe`` reads source facts with ffprobe,
``ffmpeg_job`` builds and runs the one ffmpeg pass per clip, ``table`` reads the clips
table and writes the manifest, ``run`` ties them together over parallel workers.
"""
