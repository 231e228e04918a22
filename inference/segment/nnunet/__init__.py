"""nnU-Net v2 segmentation backend (``backend="nnunet"``): a site's trained model, e.g. TotalSegmentator's.

- :mod:`~inference.segment.nnunet.model_folder`: the trained-model folder and its checks.
- :mod:`~inference.segment.nnunet.label_map`: nnU-Net label values -> VerSe ids.
- :mod:`~inference.segment.nnunet.predictor`: loading the folder into ``nnUNetPredictor``.
- :mod:`~inference.segment.nnunet.predict`: :func:`segment_nnunet`, the backend.

``nnunetv2`` is imported only when a model is loaded.
"""

from inference.segment.nnunet.label_map import LabelMap, read_label_map
from inference.segment.nnunet.model_folder import ModelFolder, NnUNetModelError, read_model_folder
from inference.segment.nnunet.predict import segment_nnunet
from inference.segment.nnunet.predictor import LoadedNnUNet, load_nnunet

__all__ = [
    "LabelMap",
    "LoadedNnUNet",
    "ModelFolder",
    "NnUNetModelError",
    "load_nnunet",
    "read_label_map",
    "read_model_folder",
    "segment_nnunet",
]
