"""The built-in synthetic talking-head set: procedurally drawn faces that speak.

Modules: ``config`` (settings), ``plan`` (ids, partitions, clip layout), ``identity``
(per-person look and voice, backgrounds), ``motion`` (head pose, blinks), ``speech``
(audio and mouth opening), ``face`` (drawing and landmarks), ``writer`` (ffmpeg muxing),
``render`` (one video), ``dataset`` (the whole set and its CSV).
"""
