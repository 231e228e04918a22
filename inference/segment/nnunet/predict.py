"""The ``nnunet`` segmentation backend: a trained nnU-Net v2 model run through nnU-Net's own predictor."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from inference.results import LevelAnchor
from inference.segment.api import BackendOutput
from inference.segment.bodies import bodies_from_vertebrae
from inference.segment.network_labels import order_warnings, relabel_to_lowest
from inference.segment.nnunet.model_folder import NnUNetModelError
from inference.segment.nnunet.predictor import LoadedNnUNet, load_nnunet
from inference.segment.unet.predict import keep_largest_component_per_label, labels_to_input_grid
from inference.segment.unet.preprocess import model_grid, resample_image

MODEL_ORIENTATION = "RAS"
"""Axis directions of the image nnU-Net is given: nibabel's closest canonical orientation, in which
TotalSegmentator (and nnU-Net data sets converted from NIfTI) train and predict. A CNN is not
orientation invariant, so every input, whatever its own orientation, is turned to this one first."""


def segment_nnunet(
    image: sitk.Image, *, device: str = "auto", model_dir: Path | None = None, lowest_level: str | None = None
) -> BackendOutput:
    """Label whole vertebrae (VerSe ids) with a trained nnU-Net v2 model; derive their bodies.

    The CT is resampled onto an axis-aligned grid at the model's spacing
    (linear, air outside the field of view), turned to :data:`MODEL_ORIENTATION`,
    and handed to ``nnUNetPredictor`` through the image reader/writer named in
    ``plans.json``, so the network sees its input exactly as in training
    (nnU-Net's own normalisation, sliding window and Gaussian blending, on CUDA
    when ``device`` allows and a GPU is present). Predicting at the model's
    spacing rather than the CT's keeps nnU-Net from resampling the logits of
    every class to the full CT grid (tens of GB for a 100-class model). The
    labels are mapped to VerSe ids (:mod:`inference.segment.nnunet.label_map`),
    each vertebra keeps its largest connected piece, and they are resampled
    onto the input grid one smooth label at a time. The model labels whole
    vertebrae only: the bodies are cut from them at the spinal canal
    (:func:`inference.segment.bodies.bodies_from_vertebrae`).

    The labels rest on the model's reading of the image, not on counted
    anchors: labels out of cranio-caudal order mark the study for review, and
    ``[pipeline] segmentation_check_backend`` can check them against a second
    backend. nnU-Net is asked for labels, not class probabilities (those would
    cost as much memory as the logits), so no per-level confidence is reported.
    ``lowest_level``, when given, renames the labels so that the most caudal
    vertebra found is that level.

    Raises:
        NnUNetModelError: no, or an unusable, model folder.
        ValueError: ``device="cuda"`` without a GPU.
    """
    if model_dir is None:
        raise NnUNetModelError(
            "the nnunet backend needs an nnU-Net trained-model folder (dataset.json, plans.json, "
            "fold_N/checkpoint_final.pth; set [pipeline] segmentation_model_dir or pass --model-dir)"
        )
    model = load_nnunet(model_dir, device)
    reference = model_grid(image, model.spacing_xyz)
    values = predict_label_values(model, resample_image(image, reference))
    verse = model.labels.lookup_table(int(values.max()))[values]
    verse = keep_largest_component_per_label(verse)
    vertebrae = _as_image(labels_to_input_grid(verse, reference, image), image)
    bodies = bodies_from_vertebrae(vertebrae)
    found = [int(v) for v in np.unique(verse) if v]
    warnings = order_warnings(verse, reference, "nnU-Net")
    if not found:
        warnings.append("the nnU-Net model found no vertebra in this image")
    anchors: list[LevelAnchor] = []
    if lowest_level is not None and found:
        given = relabel_to_lowest(vertebrae, bodies, lowest_level)
        vertebrae, bodies, anchors = given.vertebrae, given.bodies, [given.anchor]
        warnings += given.warnings
    return BackendOutput(
        vertebrae=vertebrae,
        bodies=bodies,
        version=f"{model.version} labels:{model.labels.source}",
        labelling_confidence=1.0 if found else 0.0,
        needs_review=bool(warnings) and bool(found) and not anchors,
        warnings=warnings,
        anchors=anchors,
        level_anchors={verse_id: ("given",) for verse_id in _ids(vertebrae)} if anchors else {},
    )


def predict_label_values(model: LoadedNnUNet, ct: sitk.Image) -> np.ndarray:
    """nnU-Net label values (array z, y, x) on the grid of ``ct``, an axis-aligned LPS image at the model's spacing.

    The image goes to nnU-Net as a file read by the model's own reader/writer and
    the labels come back through its writer, so nnU-Net's axis conventions
    (SimpleITK or nibabel order, reorientation) are its own; the files are
    NIfTI without any patient identifier, in a private temporary folder that is
    removed at once.
    """
    oriented = sitk.DICOMOrient(ct, MODEL_ORIENTATION)
    reader_writer = model.reader_writer
    with tempfile.TemporaryDirectory(prefix="scpnode-nnunet-") as scratch:
        ct_path, labels_path = Path(scratch) / "ct_0000.nii", Path(scratch) / "labels.nii"
        sitk.WriteImage(oriented, str(ct_path))
        data, properties = reader_writer.read_images([str(ct_path)])
        values = model.predictor.predict_single_npy_array(data, properties, None, None, False)
        reader_writer.write_seg(np.asarray(values), str(labels_path), properties)
        labels = sitk.ReadImage(str(labels_path))
    if labels.GetSize() != oriented.GetSize():
        raise NnUNetModelError(f"nnU-Net returned labels of size {labels.GetSize()} for an image of {oriented.GetSize()}")
    labels.CopyInformation(oriented)  # NIfTI stores the geometry in single precision
    return sitk.GetArrayFromImage(sitk.DICOMOrient(labels, "LPS"))


def _ids(labels: sitk.Image) -> list[int]:
    return [int(v) for v in np.unique(sitk.GetArrayViewFromImage(labels)) if v]


def _as_image(array: np.ndarray, image: sitk.Image) -> sitk.Image:
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(image)
    return labels
