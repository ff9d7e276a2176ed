"""Faces: detection, 68 landmarks and identity descriptors behind one backend interface.

``fomm_core.faces`` is a plain library (no pipeline imports). The default backend is dlib
(``dlib-bin`` wheels with the model files of ``face-recognition-models``): fully offline,
CPU only. Other backends (a GPU detector, say) implement :class:`FaceBackend`.

- :mod:`.backend`: the interface and the per-frame result types.
- :mod:`.dlib_backend`: dlib's HOG or CNN detector, the iBUG 68-point predictor, the 128-D
  ResNet descriptor.
- :mod:`.boxes`: box arithmetic (IoU, union, enlarge, square).
- :mod:`.tubes`: detections over time to face tubes (tracking, IoU chunking, filters).
- :mod:`.distances`: AKD / AED and the detection rate (the FOMM paper's face metrics).
- :mod:`.layout`: where the face sits in a training crop, and crop boxes for user media.
"""

from .backend import FaceBackend, FaceFrame, largest_face
from .boxes import iou, square_box, union_box
from .dlib_backend import DlibBackend, load_backend

__all__ = ["DlibBackend", "FaceBackend", "FaceFrame", "iou", "largest_face", "load_backend", "square_box",
           "union_box"]
