"""Synthetic phantoms: labels, compartments and truth agree with the image; variants and determinism."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from inference.levels import TARGET_LEVELS, Compartment, verse_id
from inference.phantom import (
    PhantomSpec,
    abdominal_ct,
    chest_ct,
    generate_phantom,
    hu_from_vbmd,
    neck_ct,
    vbmd_from_hu,
)
from inference.phantom.spec import GENANT_HEIGHT_LOSS

GENANT_BANDS = {1: (0.20, 0.25), 2: (0.25, 0.40), 3: (0.40, 1.0)}
"""Height reduction of each Genant grade (Genant et al., J Bone Miner Res 1993)."""
VBMD = {"T10": 150.0, "T11": 90.0, "T12": 120.0, "L1": 60.0, "L2": 180.0, "L3": 140.0}


@pytest.fixture(scope="module")
def fine_phantom():
    """T11-L2 at 1 mm slices, 1.25 mm pixels, two fractures, low noise (about 4 M voxels)."""
    spec = PhantomSpec(seed=21, top_level="T11", bottom_level="L2", shape=(176, 176, 164), pixel_spacing_mm=1.25,
                       slice_thickness_mm=1.0, slice_spacing_mm=1.0, vbmd_mg_cm3=VBMD, noise_hu=8.0,
                       fractures={"T12": (3, "biconcave"), "L1": (2, "wedge")})
    return generate_phantom(spec)


@pytest.fixture(scope="module")
def abdomen():
    return generate_phantom(abdominal_ct(seed=4, shape=(128, 128, 96)))


def arrays(phantom):
    return {name: sitk.GetArrayFromImage(getattr(phantom, name))
            for name in ("image", "vertebrae", "bodies", "compartments")}


def test_all_images_share_one_grid(fine_phantom):
    reference = fine_phantom.image
    assert reference.GetPixelID() == sitk.sitkFloat32
    for name in ("vertebrae", "bodies", "compartments", "tissues"):
        image = getattr(fine_phantom, name)
        assert image.GetSize() == reference.GetSize(), name
        assert image.GetSpacing() == reference.GetSpacing()
        assert image.GetOrigin() == reference.GetOrigin()
        assert image.GetDirection() == reference.GetDirection()
    assert reference.GetSize() == (176, 176, 164)
    assert np.allclose(reference.GetSpacing(), (1.25, 1.25, 1.0))


def test_labels_compartments_and_truth_agree(fine_phantom):
    a = arrays(fine_phantom)
    truth = fine_phantom.truth
    for level in TARGET_LEVELS:
        entry = truth["levels"][level]
        label = verse_id(level)
        assert entry["id"] == label
        assert entry["complete_in_view"], level
        body = a["bodies"] == label
        assert body.sum() == entry["voxels"]["body"] > 0
        assert (a["vertebrae"] == label).sum() == entry["voxels"]["vertebra"] > body.sum()  # arch is labelled too
        assert np.all(a["vertebrae"][body] == label)
        cortical = body & (a["compartments"] == Compartment.CORTICAL)
        cancellous = body & (a["compartments"] == Compartment.CANCELLOUS)
        assert cortical.sum() == entry["voxels"]["cortical"] > 0
        assert cancellous.sum() == entry["voxels"]["cancellous"] > cortical.sum() / 3
        assert cortical.sum() + cancellous.sum() == body.sum()
        # the shell encloses the core: no cancellous voxel touches anything outside its body
        assert not (ndimage.binary_dilation(cancellous) & ~body).any()
    # compartments exist inside bodies only
    assert np.array_equal(a["compartments"] > 0, a["bodies"] > 0)


def test_cancellous_hu_follows_vbmd_and_shell_is_brighter(fine_phantom):
    a = arrays(fine_phantom)
    for level in TARGET_LEVELS:
        entry = fine_phantom.truth["levels"][level]
        assert entry["expected_cancellous_hu"] == pytest.approx(hu_from_vbmd(VBMD[level]), abs=0.01)
        cancellous = (a["bodies"] == entry["id"]) & (a["compartments"] == Compartment.CANCELLOUS)
        core = ndimage.binary_erosion(cancellous, iterations=2)  # away from the shell's partial volume
        measured = float(a["image"][core].mean())
        assert measured == pytest.approx(entry["expected_cancellous_hu"], abs=12.0), level
        assert vbmd_from_hu(measured) == pytest.approx(VBMD[level], abs=10.0)
        shell = (a["bodies"] == entry["id"]) & (a["compartments"] == Compartment.CORTICAL)
        assert a["image"][shell].mean() > measured + 60.0, level


def _label_height(bodies: np.ndarray, label: int, image: sitk.Image, centre: np.ndarray, axis: np.ndarray,
                  offset_v: float) -> float:
    """Length (mm) of the body label along the spine axis through a point ``offset_v`` mm posterior of the centre."""
    posterior = np.array([0.0, axis[2], -axis[1]])
    steps = np.arange(-30.0, 30.0, 0.1)
    points = centre + offset_v * posterior + steps[:, None] * axis
    index = np.rint((points - np.array(image.GetOrigin())) / np.array(image.GetSpacing())).astype(int)
    inside = bodies[index[:, 2], index[:, 1], index[:, 0]] == label
    return float(inside.sum() * 0.1)


def test_heights_in_truth_match_the_labels(fine_phantom):
    from inference.phantom.anatomy import LEVEL_SIZES
    from inference.phantom.spine import measurement_points

    bodies = sitk.GetArrayFromImage(fine_phantom.bodies)
    for level in TARGET_LEVELS:
        entry = fine_phantom.truth["levels"][level]
        points = measurement_points(LEVEL_SIZES[level])
        centre, axis = np.array(entry["centre_lps"]), np.array(entry["superior_axis_lps"])
        for where, truth_height in entry["heights_mm"].items():
            measured = _label_height(bodies, entry["id"], fine_phantom.bodies, centre, axis, points[where])
            assert measured == pytest.approx(truth_height, abs=2.0), (level, where)


def test_fractures_show_their_genant_grade(fine_phantom):
    levels = fine_phantom.truth["levels"]
    wedge = levels["L1"]["heights_mm"]
    assert levels["L1"]["fracture"] == {"grade": 2, "type": "wedge"}
    assert 1 - wedge["anterior"] / wedge["posterior"] == pytest.approx(GENANT_HEIGHT_LOSS[2], abs=0.02)
    biconcave = levels["T12"]["heights_mm"]
    assert 1 - biconcave["middle"] / biconcave["posterior"] == pytest.approx(GENANT_HEIGHT_LOSS[3], abs=0.02)
    normal = levels["L2"]["heights_mm"]
    assert levels["L2"]["fracture"]["grade"] == 0
    assert 1 - normal["anterior"] / normal["posterior"] < 0.05
    assert 1 - normal["middle"] / normal["posterior"] < 0.1


@pytest.mark.parametrize("grade", [1, 2, 3])
def test_crush_fracture_lowers_every_height(grade):
    from inference.phantom.anatomy import LEVEL_SIZES
    from inference.phantom.spine import Fracture, body_heights

    normal = body_heights(LEVEL_SIZES["L1"], None)
    crushed = body_heights(LEVEL_SIZES["L1"], Fracture(grade, "crush"))
    low, high = GENANT_BANDS[grade]
    for where in ("anterior", "middle", "posterior"):
        assert low <= 1 - crushed[where] / normal[where] <= high, where


def test_same_seed_same_study_other_seed_other_texture():
    spec = abdominal_ct(seed=9, shape=(64, 64, 48))
    first, again = generate_phantom(spec), generate_phantom(spec)
    assert np.array_equal(sitk.GetArrayViewFromImage(first.image), sitk.GetArrayViewFromImage(again.image))
    assert first.truth == again.truth
    other = generate_phantom(spec.with_changes(seed=10))
    assert not np.array_equal(sitk.GetArrayViewFromImage(first.image), sitk.GetArrayViewFromImage(other.image))
    assert np.array_equal(sitk.GetArrayViewFromImage(first.vertebrae), sitk.GetArrayViewFromImage(other.vertebrae))


def test_abdominal_preset_covers_t10_to_sacrum_with_air_fat_muscle_and_bone(abdomen):
    levels = abdomen.truth["levels"]
    for level in ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"):
        assert levels[level]["complete_in_view"], level
    assert levels["S"]["in_view"]
    image = sitk.GetArrayFromImage(abdomen.image)
    assert image.min() == -1024.0
    assert np.median(image[:, :4, :4]) < -950  # air in the corners
    assert image.max() > 400
    hist, _ = np.histogram(image, bins=[-1100, -900, -150, -50, 20, 80, 300, 3000])
    assert all(hist > 0)


def test_chest_preset_has_lungs_and_twelve_rib_pairs():
    phantom = generate_phantom(chest_ct(seed=2, shape=(96, 96, 96)))
    truth = phantom.truth
    assert truth["rib_pairs"] == 12
    assert truth["ribbed_levels"] == [f"T{i}" for i in range(1, 13)]
    assert truth["levels"]["T3"]["complete_in_view"] and truth["levels"]["L2"]["complete_in_view"]
    image = sitk.GetArrayFromImage(phantom.image)
    assert ((image > -950) & (image < -700)).mean() > 0.05  # aerated lung


def _lateral_bone_voxels(phantom, level: str) -> int:
    """Rib voxels beside the spine (where a rib leaves its vertebra) in the slab of one vertebra.

    Only the first few centimetres lateral of the transverse processes count: the steep
    floating ribs of the vertebra above run down through the slab farther out."""
    from inference.phantom.physics import Tissue

    entry = phantom.truth["levels"][level]
    tissue = sitk.GetArrayFromImage(phantom.tissues)
    z = np.array([phantom.image.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(tissue.shape[0])])
    x = np.array([phantom.image.TransformIndexToPhysicalPoint((i, 0, 0))[0] for i in range(tissue.shape[2])])
    slab = np.abs(z - entry["centre_lps"][2]) < entry["body_size_mm"]["height"] / 2
    beside = (np.abs(x) > 30) & (np.abs(x) < 55)
    rib = np.isin(tissue[slab][:, :, beside], (Tissue.RIB_CORTEX, Tissue.RIB_MARROW))
    return int(rib.sum())


def test_rib_variants_eleven_thirteen_and_lumbar_rib():
    base = abdominal_ct(seed=3, shape=(112, 112, 96), noise_hu=0.0)
    eleven, twelve = generate_phantom(base.with_changes(rib_pairs=11)), generate_phantom(base)
    assert eleven.truth["ribbed_levels"][-1] == "T11" and twelve.truth["ribbed_levels"][-1] == "T12"
    assert _lateral_bone_voxels(eleven, "T12") < _lateral_bone_voxels(twelve, "T12")
    thirteen = generate_phantom(base.with_changes(rib_pairs=13, lumbar_rib=True))
    assert thirteen.truth["ribbed_levels"][-2:] == ["T13", "L1"]
    assert thirteen.truth["levels"]["T13"]["id"] == 28
    assert (sitk.GetArrayViewFromImage(thirteen.vertebrae) == 28).any()
    assert _lateral_bone_voxels(thirteen, "L1") > _lateral_bone_voxels(twelve, "L1")


def test_neck_ct_does_not_reach_the_thoracolumbar_junction():
    phantom = generate_phantom(neck_ct(seed=1, shape=(64, 64, 64)))
    labels = np.unique(sitk.GetArrayViewFromImage(phantom.vertebrae))
    assert not set(labels) & {verse_id(level) for level in TARGET_LEVELS}
    assert phantom.truth["levels"]["C5"]["complete_in_view"]
    assert not any(phantom.truth["levels"].get(level, {}).get("in_view") for level in TARGET_LEVELS)


def test_contrast_and_beam_hardening_change_what_they_should():
    spec = abdominal_ct(seed=5, shape=(96, 96, 64), noise_hu=0.0)
    plain, enhanced = generate_phantom(spec), generate_phantom(spec.with_changes(contrast=True))
    from inference.phantom.physics import Tissue

    aorta = sitk.GetArrayViewFromImage(plain.tissues) == Tissue.AORTA
    assert sitk.GetArrayViewFromImage(enhanced.image)[aorta].mean() > sitk.GetArrayViewFromImage(plain.image)[aorta].mean() + 100
    cupped = generate_phantom(spec.with_changes(beam_hardening_hu=30.0))
    difference = sitk.GetArrayViewFromImage(cupped.image) - sitk.GetArrayViewFromImage(plain.image)
    assert difference.min() < -20 and difference.max() <= 0.01


@pytest.mark.parametrize("changes, message", [
    ({"top_level": "X9"}, "unknown level"),
    ({"top_level": "L3", "bottom_level": "T11"}, "lies below"),
    ({"fractures": {"L1": (4, "wedge")}}, "grade 1-3"),
    ({"fractures": {"L1": (2, "burst")}}, "wedge/biconcave/crush"),
    ({"rib_pairs": 14}, "rib_pairs"),
    ({"patient_position": "HFP"}, "HFS or FFS"),
    ({"vbmd_mg_cm3": -5.0}, "vBMD"),
])
def test_bad_specs_are_refused_clearly(changes, message):
    with pytest.raises(ValueError, match=message):
        PhantomSpec(**changes)
