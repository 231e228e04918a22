"""``scpnode demo``: the first run a newcomer gets from the README.

It makes a synthetic abdominal CT (a phantom with a known L1 fracture and low
bone density), starts a node with a temporary store, starts Orthanc as the
PACS when it is installed (otherwise a local results folder stands in, and the
demo says so), sends the study to the node over DICOM exactly as a PACS would,
waits for the node to process it, and prints what came out.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from inference.phantom import abdominal_ct, generate_phantom, write_phantom_study
from scpnode.assembly import assemble_node
from scpnode.config import Settings, settings_from_dict
from scpnode.delivery import outbox
from scpnode.delivery.orthanc import LocalOrthanc, free_port, orthanc_available
from scpnode.errors import UsageError
from scpnode.logs import configure_logging
from scpnode.pipeline.jobs import FINAL_STATES, Job, JobQueue
from scpnode.schema import open_node_database

SIZES = {"small": (320, 320, 200), "full": (512, 512, 300)}
DEMO_AET, PACS_AET, NODE_AET = "DEMOSCU", "DEMOPACS", "SCPNODE"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="first run: make a synthetic study, send it to a temporary node over DICOM, show the result",
        description="Make a synthetic CT study, send it over DICOM to a temporary node (with Orthanc as the PACS "
                    "when installed), wait for the results and show them.")
    parser.add_argument("--workdir", type=Path, help="folder for everything the demo makes (default: a new temp folder)")
    parser.add_argument("--size", choices=SIZES, default="small",
                        help="phantom matrix: small 320x320x200 (default) or full 512x512x300")
    parser.add_argument("--seed", type=int, default=11, help="phantom seed (default 11)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the results (default 900)")
    parser.add_argument("--no-orthanc", action="store_true", help="do not start Orthanc even if it is installed")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # The demo talks to the user on stdout; the node's event log would drown it.
    configure_logging(args.log_level or "WARNING")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="scpnode-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"scpnode demo: working in {workdir}")

    print(f"[1/4] making a synthetic abdominal CT {'x'.join(map(str, SIZES[args.size]))} "
          "(phantom: L1 wedge fracture grade 2, low bone density)")
    spec = abdominal_ct(args.seed, shape=SIZES[args.size], vbmd_mg_cm3=75.0, fractures={"L1": (2, "wedge")})
    study = write_phantom_study(generate_phantom(spec), workdir / "phantom")
    files = study.series.files

    use_orthanc = orthanc_available() and not args.no_orthanc
    node_port = free_port()
    pacs = LocalOrthanc(workdir / "orthanc", aet=PACS_AET, modalities={"scpnode": (NODE_AET, "127.0.0.1", node_port)})
    if use_orthanc:
        pacs.start()
        print(f"[2/4] PACS: Orthanc {pacs.aet} on DICOM port {pacs.dicom_port}, web {pacs.url}")
    elif args.no_orthanc:
        print("[2/4] PACS: none (--no-orthanc); results stay in a local folder")
    else:
        print("[2/4] PACS: Orthanc is not installed; results stay in a local folder instead "
              "(install the Debian package 'orthanc' to see them arrive in a PACS)")
    settings = demo_settings(workdir, node_port, pacs if use_orthanc else None)
    node = assemble_node(settings, web=False, poll_seconds=0.5, sender_options={"poll_seconds": 0.5})
    node.start()
    try:
        if use_orthanc:
            print(f"[3/4] storing {len(files)} slices in Orthanc, which sends the study to the node (C-STORE)")
            for path in files:
                pacs.upload(path)
            pacs.post("/modalities/scpnode/store", {"Resources": [pacs.find_study(study.series.study.study_uid)],
                                                     "Synchronous": True})
        else:
            print(f"[3/4] sending {len(files)} slices to the node over DICOM (C-STORE)")
            send_files(files, node_port)
        job = wait_for_job(settings, study.series.series.series_uid, args.timeout)
        if use_orthanc and job.state == "done":
            wait_for_outbox(settings, timeout=120)
    finally:
        node.stop()
        if use_orthanc:
            pacs_series = series_in_pacs(pacs, study.series.study.study_uid)
            pacs.stop()
    print(f"[4/4] job {job.id}: {job.state} after {time.monotonic() - started:.0f} s in all")
    print()
    print_summary(job, pacs_series if use_orthanc else None)
    return 0 if job.state == "done" else 1


def demo_settings(workdir: Path, port: int, pacs: LocalOrthanc | None) -> Settings:
    """A node on loopback with a temporary store that trusts the demo's sender and PACS."""
    destinations = ([{"name": "pacs", "ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.dicom_port}]
                    if pacs else [])
    return settings_from_dict({
        "node": {"ae_title": NODE_AET, "host": "127.0.0.1", "port": port,
                 "storage_dir": str(workdir / "node" / "store"), "database": str(workdir / "node" / "scpnode.db"),
                 "results_dir": str(workdir / "node" / "results")},
        "peers": [{"ae_title": DEMO_AET, "host": "127.0.0.1"}, {"ae_title": PACS_AET, "host": "127.0.0.1"}],
        "destinations": destinations,
        "completion": {"quiet_seconds": 3, "check_interval_seconds": 0.5},
        "logging": {"level": "WARNING"},
    }, source="demo")


def send_files(files: list[Path], port: int) -> None:
    """C-STORE files to the node as a modality would (used when no Orthanc is installed)."""
    ae = AE(ae_title=DEMO_AET)
    ae.add_requested_context(CTImageStorage, [pydicom.dcmread(files[0], stop_before_pixels=True).file_meta.TransferSyntaxUID])
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
    if not assoc.is_established:
        raise UsageError("the node refused the demo's association")
    try:
        for path in files:
            status = assoc.send_c_store(pydicom.dcmread(path))
            if getattr(status, "Status", None) != 0:
                raise UsageError(f"the node did not store {path.name} (status {status})")
    finally:
        assoc.release()


def wait_for_job(settings: Settings, series_uid: str, timeout: float) -> Job:
    """Poll the job table until the series' job ends, printing each new stage."""
    queue = JobQueue(open_node_database(settings.node.database))
    deadline = time.monotonic() + timeout
    shown = ""
    while time.monotonic() < deadline:
        jobs = [j for j in queue.recent(50) if j.series_uid == series_uid]
        if jobs:
            job = jobs[0]
            if job.stage and job.stage != shown:
                shown = job.stage
                print(f"      node: {job.state}, stage {job.stage}")
            if job.state in FINAL_STATES:
                return job
        elif not shown:
            shown = "waiting"
            print(f"      node: series received, waiting {settings.completion.quiet_seconds:g} s for it to be complete")
        time.sleep(0.5)
    raise UsageError(f"no result within {timeout:.0f} s; see 'scpnode status' with the demo's database")


def wait_for_outbox(settings: Settings, timeout: float) -> None:
    db = open_node_database(settings.node.database)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(item.state == outbox.OutboxState.SENT for item in outbox.items(db)):
            return
        time.sleep(0.5)


def series_in_pacs(pacs: LocalOrthanc, study_uid: str) -> list[tuple[str, str, int]]:
    """(modality, series description, instances) of every series of the study in Orthanc."""
    orthanc_id = pacs.find_study(study_uid)
    if orthanc_id is None:
        return []
    return [(s["MainDicomTags"].get("Modality", ""), s["MainDicomTags"].get("SeriesDescription", ""),
             len(s["Instances"])) for s in pacs.get(f"/studies/{orthanc_id}/series?expand")]


def print_summary(job: Job, pacs_series: list[tuple[str, str, int]] | None) -> None:
    result_dir = Path(job.result_dir)
    if job.state != "done":
        print(f"the study was not scored: {job.reason or job.error}")
        return
    m = json.loads((result_dir / "measurements.json").read_text())
    print(f"{'level':<6}{'mean HU':>9}{'vBMD':>8}{'ant/mid/post height mm':>25}{'Genant':>8}{'radscore cort/canc':>21}")
    for name, level in m["levels"].items():
        canc = level.get("cancellous") or {}
        h = level.get("heights") or {}
        rs = level.get("radscores") or {}
        heights = "/".join(f"{h[k]:.1f}" for k in ("anterior_mm", "middle_mm", "posterior_mm")) if h else "-"
        print(f"{name:<6}{_num(canc.get('mean_hu'), 9, 0)}{_num(level.get('vbmd_mg_cm3'), 8, 0)}{heights:>25}"
              f"{_num(level.get('genant_grade'), 8, 0)}"
              f"{(_num(rs.get('cortical'), 10, 2) + _num(rs.get('cancellous'), 11, 2)) if rs else '-':>21}")
    score = m.get("score") or {}
    print()
    print(f"L1 attenuation {_num(m.get('l1_attenuation_hu'), 0, 0).strip()} HU ({m.get('l1_attenuation_category')}); "
          f"vBMD {_num(m.get('vbmd_mg_cm3'), 0, 0).strip()} mg/cm3 ({m.get('vbmd_category')}); "
          f"worst Genant grade {m.get('max_genant_grade')}")
    if score:
        radscores = ", ".join(f"{name} {value:.2f}" for name, value in (score.get("radscores") or {}).items())
        risk = (f"risk {score['probability']:.2f} ({score['category']})" if score.get("probability") is not None
                else "no risk probability: model uncalibrated (research use)")
        print(f"model {score['model_id']} v{score['model_version']}: study radscores {radscores or '-'}; {risk}")
    print()
    print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in job.stage_seconds.items()))
    print(f"results folder: {result_dir} (seg.dcm, sr.dcm, report.dcm, overlay.png, measurements.json)")
    if pacs_series is None:
        print("no PACS: the results folder above is where a PACS would have received them")
        return
    print("in the PACS (Orthanc), same study:")
    for modality, description, count in pacs_series:
        print(f"  {modality:<4} {description:<50} {count} instance(s)")


def _num(value: object, width: int, digits: int) -> str:
    if value is None:
        return f"{'-':>{width}}"
    return f"{float(value):>{width}.{digits}f}"
