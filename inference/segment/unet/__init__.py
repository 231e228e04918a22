"""MONAI 3D U-Net segmentation backend (``backend="unet"``) and its training loop.

- :mod:`~inference.segment.unet.spec`: the model directory format (``model.json``).
- :mod:`~inference.segment.unet.network`: building the network, loading weights, devices.
- :mod:`~inference.segment.unet.preprocess`: the resampling and windowing training and inference share.
- :mod:`~inference.segment.unet.predict`: :func:`segment_unet`, the backend.
- :mod:`~inference.segment.unet.train`: :func:`train_model` (``scpnode segment-train``).
"""

from inference.segment.unet.network import LoadedModel, load_model
from inference.segment.unet.predict import segment_unet
from inference.segment.unet.spec import Architecture, ModelDirError, ModelSpec, read_spec

__all__ = [
    "Architecture",
    "LoadedModel",
    "ModelDirError",
    "ModelSpec",
    "load_model",
    "read_spec",
    "segment_unet",
]
