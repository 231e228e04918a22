"""The radiologist's view: our SEG, SR and visual report opened in a real OHIF viewer.

The pinned prebuilt OHIF release (``deploy/install.sh --test`` fetches it from
npm) is served on loopback with a real Orthanc as its DICOMweb source
(:mod:`tests.ohif_viewer`), and Debian's Chromium drives it headless with
SwiftShader WebGL. Each test opens a study as a radiologist would, steps
through the SR's findings with the viewport's arrows, and fails on any page
error or console error. Screenshots are kept under tests/output/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from dicom_sr import AlgorithmInfo, encode_results
from dicom_sr.readers import read_sr
from inference.measure import measure_study
from inference.models import load_model
from inference.phantom import abdominal_ct, generate_phantom, write_phantom_study
from inference.results import SegmentationResult
from inference.segment.api import segment_volume
from inference.segment.levels import describe_levels
from inference.volume import load_volume
from scpnode.delivery.orthanc import LocalOrthanc, free_port
from scpnode.web.server import WebServer
from tests.conftest import CHROMIUM_ARGS, _missing, chromium
from tests.ohif_viewer import OHIF_DIST, OHIF_VERSION, ohif_app

pytestmark = pytest.mark.integration

ALGORITHM = AlgorithmInfo(name="scpnode anatomical", version="0.3.1", model_id="anatomical-rules-2")

OHIF_CHROMIUM_ARGS = [arg for arg in CHROMIUM_ARGS if arg != "--disable-gpu"] + [
    "--use-gl=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
"""OHIF renders with WebGL: software (SwiftShader) WebGL instead of no GPU at all."""

SR_DESCRIPTION = "Osteoporosis screening SR"
SEG_DESCRIPTION = "T11-L2 compartments SEG"
REPORT_DESCRIPTION = "Osteoporosis screening report"


@dataclass(frozen=True)
class Case:
    """A CT study with our three result objects, as files."""

    study_uid: str
    files: list[Path]
    sr: Path

    def expected_findings(self) -> dict[str, tuple[str, int]]:
        """Tracking Identifier -> (text a viewer must show, Instance Number of the image it is drawn on)."""
        sr = read_sr(self.sr)
        instance_numbers = {}
        for path in self.files:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if ds.Modality == "CT":
                instance_numbers[ds.SOPInstanceUID] = int(ds.InstanceNumber)
        (container,) = [item for item in sr.dataset.ContentSequence
                        if item.ConceptNameCodeSequence[0].CodeValue == "126010"]
        found = {}
        for group_item, group in zip(container.ContentSequence, sr.groups, strict=True):
            region = next(item for item in group_item.ContentSequence if item.ValueType == "SCOORD")
            image = region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            first = group.measurements[0] if group.measurements else None
            # OHIF writes "<concept>: <value to 2 decimals> <UCUM code>" per number, then the finding site.
            shown = (f"{first.name.meaning}: {first.value:.2f} {first.unit.value}" if first is not None
                     else group.finding_sites[0].meaning)
            found[group.tracking_id] = (shown, instance_numbers[image])
        return found


def _write(objects, folder: Path) -> list[Path]:
    paths = []
    for kind, dataset in (("seg", objects.seg), ("sr", objects.sr), ("report", objects.report)):
        paths.append(folder / f"{kind}.dcm")
        dataset.save_as(paths[-1], enforce_file_format=True)
    return paths


@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """An abdominal phantom measured on its true segmentation (all four levels complete)."""
    folder = tmp_path_factory.mktemp("ohif_phantom")
    phantom = generate_phantom(abdominal_ct(11, shape=(200, 200, 120)))
    written = write_phantom_study(phantom, folder / "study")
    volume = load_volume(written.dicom_folder)
    levels = describe_levels(phantom.vertebrae, phantom.bodies).levels
    segmentation = SegmentationResult(vertebrae=phantom.vertebrae, bodies=phantom.bodies,
                                      compartments=phantom.compartments, levels=levels, backend="phantom-truth")
    measurements = measure_study(volume, segmentation, load_model("che2025-published"))
    ct_files = sorted(written.dicom_folder.iterdir())
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in ct_files]
    objects = encode_results(headers, segmentation, measurements, ALGORITHM, ct=volume)
    return Case(written.series.study.study_uid, ct_files + _write(objects, folder), folder / "sr.dcm")


@pytest.fixture(scope="module")
def real_case(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Case:
    """The real arterial-phase chest-abdomen CT (TCIA), segmented and measured by the node's default backend."""
    folder = tmp_path_factory.mktemp("ohif_real")
    source = shared_data / "real_ct" / "tcia_chest_abdomen_dicom"
    ct_files = sorted(source.glob("*.dcm"))
    volume = load_volume(source)
    segmentation = segment_volume(volume, "anatomical")
    measurements = measure_study(volume, segmentation, load_model("che2025-published"))
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in ct_files]
    objects = encode_results(headers, segmentation, measurements, ALGORITHM, ct=volume)
    return Case(str(headers[0].StudyInstanceUID), ct_files + _write(objects, folder), folder / "sr.dcm")


@pytest.fixture
def ohif(orthanc_dicomweb: LocalOrthanc) -> Iterator[tuple[LocalOrthanc, str]]:
    """The OHIF viewer on loopback, reading from the test Orthanc; yields (orthanc, viewer URL)."""
    if not (OHIF_DIST / "index.html").is_file():
        _missing(f"OHIF {OHIF_VERSION} viewer in {OHIF_DIST} (bash deploy/install.sh --test fetches it)")
    server = WebServer(ohif_app(orthanc_dicomweb.dicomweb_url), "127.0.0.1", free_port()).start()
    try:
        yield orthanc_dicomweb, server.url
    finally:
        server.stop()


@pytest.fixture
def ohif_page(require_tool: Callable[[str], str]):
    """A Chromium page with WebGL; yields (page, problems): page errors and console errors seen."""
    with chromium(require_tool, OHIF_CHROMIUM_ARGS) as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda message: problems.append(f"console error: {message.text}")
                if message.type == "error" else None)
        yield page, problems


def _open_study(page, url: str, orthanc: LocalOrthanc, case: Case) -> None:
    for path in case.files:
        orthanc.upload(path)
    page.goto(f"{url}/viewer?StudyInstanceUIDs={case.study_uid}")
    page.get_by_text(SR_DESCRIPTION).first.wait_for(timeout=90_000)
    for button, wait_ms in (("Skip all", 15_000), ("Confirm and hide", 3_000)):  # first-visit tour and notice
        try:
            page.get_by_text(button).first.click(timeout=wait_ms)
        except PlaywrightTimeout:
            pass


def _open_series(page, description: str) -> None:
    """Double-click a series' thumbnail and answer the viewer's "load this segmentation?" prompt if it asks.

    The prompt can come late on a loaded machine (software WebGL), so it is waited for rather than looked for once.
    """
    page.get_by_text(description).first.dblclick()
    try:
        page.get_by_role("button", name="Yes").first.click(timeout=8_000)
    except PlaywrightTimeout:
        pass
    time.sleep(3)


def _annotation_text(page) -> str:
    return " | ".join(page.evaluate(
        "() => Array.from(document.querySelectorAll('svg.svg-layer text')).map(t => t.textContent)"))


def _instance_number(page) -> int:
    overlay = page.locator("[data-cy=viewport-overlay-bottom-right]").inner_text()
    return int(re.search(r"I:\s*(\d+)", overlay).group(1))


def _walk_findings(page, count: int, shots: Path, prefix: str) -> list[tuple[int, str]]:
    """Step through ``count`` findings with the viewport's arrows: (Instance Number, text drawn) of each."""
    seen = []
    page.locator("[data-cy=viewport-action-arrows-right]").wait_for(timeout=60_000)
    for step in range(count):
        deadline = time.monotonic() + 60
        while "vertebra" not in _annotation_text(page) and time.monotonic() < deadline:
            time.sleep(0.5)
        seen.append((_instance_number(page), _annotation_text(page)))
        page.screenshot(path=shots / f"{prefix}_{step + 1:02d}.png")
        page.locator("[data-cy=viewport-action-arrows-right]").click()
        time.sleep(1.0)
    return seen


def _assert_every_finding_drawn(seen: list[tuple[int, str]], expected: dict[str, tuple[str, int]]) -> None:
    for tracking_id, (text, instance) in expected.items():
        level = tracking_id.split()[0]
        assert any(number == instance and text in drawn and f"{level} vertebra" in drawn
                   for number, drawn in seen), f"{tracking_id}: {text!r} on image {instance} not seen in {seen}"


@pytest.mark.parametrize(("case_name", "levels_at_least"), [("phantom_case", 4), ("real_case", 3)])
def test_sr_alone_draws_every_finding_on_the_ct_image_it_names(
        ohif, ohif_page, case_name: str, levels_at_least: int, request: pytest.FixtureRequest, output_dir: Path
) -> None:
    """The phantom (all four levels complete) and the real CT (levels the node measured)."""
    orthanc, url = ohif
    page, problems = ohif_page
    case: Case = request.getfixturevalue(case_name)
    _open_study(page, url, orthanc, case)
    _open_series(page, SR_DESCRIPTION)
    expected = case.expected_findings()
    assert len({tracking_id.split()[0] for tracking_id in expected}) >= levels_at_least
    seen = _walk_findings(page, len(expected), output_dir, "sr_finding")
    _assert_every_finding_drawn(seen, expected)
    assert problems == []


def test_seg_then_sr_then_report_open_without_an_error(ohif, ohif_page, phantom_case: Case, output_dir: Path
                                                       ) -> None:
    orthanc, url = ohif
    page, problems = ohif_page
    _open_study(page, url, orthanc, phantom_case)
    _open_series(page, SEG_DESCRIPTION)
    page.locator("[data-cy=panelSegmentation-btn]").click()
    time.sleep(2)
    page.screenshot(path=output_dir / "seg.png")
    panel = page.evaluate("() => document.body.innerText").splitlines()
    assert [line for line in panel if re.fullmatch(r"(T11|T12|L1|L2) (cortical|cancellous)", line)] == [
        f"{level} {part}" for level in ("T11", "T12", "L1", "L2") for part in ("cortical", "cancellous")]
    _open_series(page, SR_DESCRIPTION)
    seen = _walk_findings(page, 3, output_dir, "sr_after_seg")
    assert all("vertebra" in text for _, text in seen), seen
    page.get_by_text(REPORT_DESCRIPTION).first.dblclick()
    time.sleep(4)
    page.screenshot(path=output_dir / "report.png")
    assert problems == []
