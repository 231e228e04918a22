"""Node configuration: a TOML file validated into typed settings.

Every key has a documented default (``deploy/scpnode.example.toml`` lists them
all). Validation is done by pydantic so that a bad file gives one line naming
the key, e.g. ``config error in node.toml: node.port: Input should be less than
or equal to 65535``, instead of a traceback.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

AE_TITLE_MAX = 16


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message is one line."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _check_ae_title(value: str) -> str:
    value = value.strip()
    if not value or len(value) > AE_TITLE_MAX or "\\" in value or not value.isprintable():
        raise ValueError(f"AE title must be 1-{AE_TITLE_MAX} printable characters without backslash")
    return value


class NodeSettings(_Section):
    """The DICOM listener and where data lives."""

    ae_title: str = "SCPNODE"
    host: str = "0.0.0.0"
    port: int = Field(11112, ge=1, le=65535)
    storage_dir: Path = Path("var/store")
    database: Path = Path("var/scpnode.db")
    results_dir: Path = Path("var/results")
    """Per-job results: SEG, SR, visual report, measurements.json, segmentation."""
    max_associations: int = Field(10, ge=1, le=200)
    """Total simultaneous associations the listener accepts."""
    require_known_peers: bool = True
    """Reject associations from calling AE titles/addresses not in [[peers]]."""
    max_pending_connections: int = Field(16, ge=1, le=1000)
    """TCP connections that have not yet sent their A-ASSOCIATE-RQ, in all; a new one beyond it closes
    the oldest (:mod:`scpnode.network.connection_guard`)."""
    max_pending_per_address: int = Field(8, ge=1, le=1000)
    """The same, from one address."""
    negotiation_timeout_seconds: float = Field(10.0, gt=0, le=300)
    """A connection that has not sent its A-ASSOCIATE-RQ this long after connecting is closed."""
    read_timeout_seconds: float = Field(60.0, gt=0, le=3600)
    """Longest wait for data on an accepted connection (mid-PDU included) before it is closed."""
    accept_mr: bool = False
    """Also accept MR images (MR and Enhanced MR Image Storage), to collect a research cohort for
    ``cohort extract --roi --modality MR``. They are stored and listed, never analysed: every
    measurement the node makes is defined on CT (HU); ``[selection] modalities`` stays CT."""
    max_inflated_mb: int = Field(512, ge=1, le=65536)
    """Largest size a received Deflated Explicit VR Little Endian data set may inflate to; beyond it
    the instance is refused (0xA700) rather than the node's memory filled (a "deflate bomb")."""
    require_called_aet: bool = True
    """Reject associations addressed to another Called AE Title than ``ae_title`` (a misrouted
    sender, or one probing for any listener)."""
    sync_writes: bool = True
    """fsync every received file before answering Success, so an acknowledged instance survives a
    power loss. False is faster on slow disks; a crash of the node (kill -9) still loses nothing."""

    _ae = field_validator("ae_title")(_check_ae_title)


class TlsSettings(_Section):
    """DICOM TLS for the listener and for sending (PS3.15 Annex B)."""

    enabled: bool = False
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    """CA bundle that signs the peers' certificates."""
    require_client_cert: bool = True


class PeerSettings(_Section):
    """A modality or PACS allowed to open associations with the node."""

    ae_title: str
    host: str
    """IP address the association must come from ("*" for any)."""
    max_associations: int = Field(4, ge=1, le=100)

    _ae = field_validator("ae_title")(_check_ae_title)


class DestinationSettings(_Section):
    """Where the results (SEG, SR, visual report) are sent: a DICOM node by C-STORE, or a DICOMweb server by STOW-RS."""

    name: str
    protocol: Literal["dimse", "stow-rs"] = "dimse"
    ae_title: str = ""
    """dimse: the destination's AE title."""
    host: str = ""
    """dimse: its host name or IP address."""
    port: int = Field(104, ge=1, le=65535)
    """dimse: its port."""
    tls: bool = False
    """dimse: DICOM TLS with the [tls] certificates (stow-rs: use an https URL)."""
    url: str = ""
    """stow-rs: the DICOMweb base URL (PS3.18), e.g. "https://pacs.example.org/dicom-web"."""
    username: str = ""
    """stow-rs: HTTP Basic user, with ``password_file``."""
    password_file: Path | None = None
    """stow-rs: file holding the Basic password (kept out of the configuration)."""
    token_file: Path | None = None
    """stow-rs: file holding an OAuth bearer token (instead of Basic)."""

    @field_validator("ae_title")
    @classmethod
    def _ae_title_if_given(cls, value: str) -> str:
        return _check_ae_title(value) if value.strip() else ""

    @model_validator(mode="after")
    def _complete_for_protocol(self) -> "DestinationSettings":
        if self.protocol == "dimse":
            if not self.ae_title or not self.host:
                raise ValueError("a dimse destination needs ae_title and host")
            if self.url or self.username or self.password_file or self.token_file:
                raise ValueError("url, username, password_file and token_file apply to protocol 'stow-rs'")
            return self
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("a stow-rs destination needs url = \"http(s)://.../dicom-web\"")
        if self.tls:
            raise ValueError("tls applies to protocol 'dimse'; for stow-rs use an https:// url")
        if bool(self.username) != (self.password_file is not None):
            raise ValueError("username and password_file go together")
        if self.username and self.token_file is not None:
            raise ValueError("use either username/password_file or token_file")
        return self


class CompletionSettings(_Section):
    """When a series counts as complete."""

    quiet_seconds: float = Field(30.0, gt=0)
    """A series is complete after this long with no new instance."""
    force_seconds: float = Field(600.0, gt=0)
    """...or this long after its first instance, whatever keeps arriving."""
    check_interval_seconds: float = Field(2.0, gt=0)


class SelectionSettings(_Section):
    """Declarative rules deciding which complete series go to inference."""

    modalities: list[str] = ["CT"]
    """Modalities analysed; the node's segmentation and measurements are CT-only, so CT is the only one."""
    require_image_type: list[str] = ["ORIGINAL", "PRIMARY", "AXIAL"]
    allow_derived: bool = False
    min_slices: int = Field(20, ge=3)
    max_slice_thickness_mm: float = Field(5.0, gt=0)
    max_slice_spacing_mm: float = Field(5.0, gt=0)
    """Largest distance between neighbouring slice centres."""
    min_pixel_spacing_mm: float = Field(0.3, gt=0)
    max_pixel_spacing_mm: float = Field(1.5, gt=0)
    max_gantry_tilt_deg: float = Field(0.5, ge=0)
    min_coverage_mm: float = Field(100.0, ge=0)
    include_keywords: list[str] = []
    """Series/study description or body part keywords of which one must be present (empty: any)."""
    exclude_keywords: list[str] = ["SCOUT", "LOCALIZER", "TOPOGRAM", "DOSE REPORT", "MIP", "MPR", "LUNG"]
    """Whole words in the series description or image type that exclude a series ("DOSE REPORT",
    not "DOSE", so that low-dose CTs stay in)."""
    allow_contrast: bool = True

    @field_validator("modalities")
    @classmethod
    def _ct_only(cls, modalities: list[str]) -> list[str]:
        other = [m for m in modalities if m.upper() != "CT"]
        if other or not modalities:
            raise ValueError(f"{', '.join(other) or 'no modality'}: the node analyses CT only (its segmentation "
                             "and measurements are defined in HU); to store MR for research set "
                             "[node] accept_mr = true")
        return modalities


class StudyChoiceSettings(_Section):
    """Which of a study's selected series is analysed (one result per study; :mod:`scpnode.pipeline.study_choice`)."""

    mode: Literal["best", "every"] = "best"
    """"best": one series per study, the first by ``order``; "every": each selected series (one
    result set per series, the behaviour before studies were chosen from)."""
    order: list[Literal["coverage", "kernel", "phase", "thickness", "images"]] = [
        "coverage", "kernel", "phase", "thickness", "images"]
    """Criteria in order of importance; a later one only breaks ties of the earlier ones."""
    coverage_step_mm: float = Field(50.0, gt=0)
    """Craniocaudal coverage counts in steps of this size, so that reconstructions of one scan
    (which differ by a few mm) tie and the next criterion decides."""
    sharp_kernel_patterns: list[str] = [
        r"BONE", r"LUNG", r"SHARP", r"EDGE", r"DETAIL", r"^B[R]?[5-9]\d", r"^[HI][5-9]\d", r"^FC[3-9]\d", r"^[D-F]$",
        r"^Y[A-C]$"]
    """Regular expressions (case-insensitive) on Convolution Kernel and the series description that
    mark a sharp (bone, lung) reconstruction, whose noise biases attenuation and texture: Siemens
    B/Br/H/I 50-99, Toshiba/Canon FC30+, Philips D-F and YA-YC, GE BONE/LUNG/EDGE/DETAIL."""
    phase_order: list[Literal["non-contrast", "venous", "unknown", "arterial", "delayed"]] = [
        "non-contrast", "venous", "unknown", "arterial", "delayed"]
    """Contrast phases, most wanted first. Contrast raises trabecular attenuation, so a
    non-contrast series measures bone best; the phase is read from Contrast/Bolus Agent and
    the series description (NATIVE, ARTERIAL, PORTAL, VENOUS, DELAYED, ...)."""
    preferred_slice_thickness_mm: tuple[float, float] = (1.0, 3.0)
    """Thickness range the segmentation was validated on; inside it thinner is better, outside
    the nearer the better."""
    later_series: Literal["supersede", "keep_first"] = "supersede"
    """A better series of an analysed study arriving later: "supersede" analyses it and sends
    results that name the earlier SR as predecessor (the worklist row is updated); "keep_first"
    records it as not chosen."""

    @field_validator("sharp_kernel_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"sharp_kernel_patterns: {pattern!r} is not a regular expression ({exc})") from None
        return patterns

    @field_validator("order")
    @classmethod
    def _order_has_no_repeats(cls, order: list[str]) -> list[str]:
        if len(set(order)) != len(order):
            raise ValueError(f"order names a criterion twice: {order}")
        return order


MODEL_BACKENDS = ("unet", "nnunet")
"""Segmentation backends that need a model folder."""


class PipelineSettings(_Section):
    """Inference jobs."""

    concurrency: int = Field(1, ge=1, le=16)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    segmentation_backend: str = "anatomical"
    segmentation_model_dir: Path | None = None
    """Model folder of a network backend: the U-Net model directory (``scpnode segment-train``
    output) for "unet", an nnU-Net v2 trained-model folder (e.g. TotalSegmentator's) for "nnunet"."""
    segmentation_check_backend: str | None = None
    """A second backend that checks every segmentation (e.g. "nnunet" beside "anatomical"): a
    target level whose bodies disagree between the two flags the study for review. None: no check."""
    segmentation_check_model_dir: Path | None = None
    """Model folder of the check backend, when it is a network backend."""
    model_dir: Path | None = None
    """Folder of radscore model files; None: the models shipped with the node."""
    model_id: str = "che2025-published"
    uncertain_levels: Literal["hold", "send"] = "hold"
    """A study whose level labels need review: "hold" its results until a person confirms the
    labels (nothing goes to the PACS before), or "send" them at once, marked unconfirmed."""
    executor: Literal["local", "dask"] = "local"
    """Where jobs are computed (load, segment, measure, encode): "local" worker processes of the
    node (``concurrency`` of them), or the workers of a Dask cluster (``scheduler_address``). The
    node records every result itself either way (:mod:`scpnode.pipeline.dask_runner`)."""
    scheduler_address: str = ""
    """executor "dask": the Dask scheduler, e.g. "tcp://10.0.0.5:8786"; "tls://..." needs the
    ``scheduler_tls_*`` files."""
    scheduler_tls_ca_file: Path | None = None
    """CA bundle that signs the scheduler's and workers' certificates (a "tls://" address)."""
    scheduler_tls_cert_file: Path | None = None
    """The node's client certificate for the cluster (a "tls://" address)."""
    scheduler_tls_key_file: Path | None = None
    """Its private key."""
    worker_storage_dir: Path | None = None
    """executor "dask": ``[node] storage_dir`` as the workers see it (a shared file system, read
    only is enough); None: the node sends each series to the worker as bytes."""
    worker_resources: dict[str, float] = {}
    """executor "dask": Dask worker resources each job needs, e.g. {GPU = 1} so jobs go only to
    workers started with ``--resources GPU=1``; empty: {GPU = 1} when ``device = "cuda"``, else none."""
    max_jobs_out: int = Field(64, ge=1, le=100000)
    """executor "dask": most jobs handed to the cluster at a time (the rest wait queued in the node)."""

    @model_validator(mode="after")
    def _cluster_is_complete(self) -> "PipelineSettings":
        tls_files = (self.scheduler_tls_ca_file, self.scheduler_tls_cert_file, self.scheduler_tls_key_file)
        if self.executor == "dask" and not self.scheduler_address:
            raise ValueError('executor "dask" needs scheduler_address')
        if self.scheduler_address.startswith("tls://") and None in tls_files:
            raise ValueError("a tls:// scheduler_address needs scheduler_tls_ca_file, scheduler_tls_cert_file "
                             "and scheduler_tls_key_file")
        if any(tls_files) and not self.scheduler_address.startswith("tls://"):
            raise ValueError("scheduler_tls_* files need a tls:// scheduler_address")
        if self.worker_storage_dir is not None and not self.worker_storage_dir.is_absolute():
            raise ValueError("worker_storage_dir must be an absolute path (as the workers see it)")
        return self


class WorklistSettings(_Section):
    """Which scored studies are flagged for the screening coordinator."""

    flag_risk_categories: list[str] = ["high"]
    flag_vbmd_below: float | None = 80.0
    flag_l1_hu_below: float | None = 110.0
    flag_genant_grade_at_least: int | None = Field(2, ge=1, le=3)


class WebSettings(_Section):
    """The coordinator's browser UI."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    secure_cookies: bool = True
    """Send session cookies only over HTTPS; set false only for local testing."""
    session_hours: float = Field(8.0, gt=0)
    pacs_viewer_url: str = ""
    """Template for a viewer link, e.g. ``https://pacs/viewer?StudyInstanceUIDs={study_uid}``."""
    login_max_failures: int = Field(5, ge=1)
    """Failed logins per user name, and per client address, within the window before logins are refused."""
    login_window_minutes: float = Field(15.0, gt=0)
    """The sliding window over which failed logins are counted (and so the longest a lockout lasts)."""
    trusted_proxies: list[str] = ["127.0.0.1", "::1"]
    """Addresses (or networks, e.g. "10.1.2.0/24") of reverse proxies whose X-Forwarded-For and
    X-Forwarded-Proto are believed. Requests from anywhere else are taken at their own address, so
    a client cannot pick the address the per-address login lockout counts. Never "*"."""

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {proxy!r} is not an IP address or network") from None
        return proxies


class RetentionSettings(_Section):
    """When received images are deleted (``scpnode purge``); results, worklist and index rows stay."""

    purge_images_after_days: float | None = Field(None, ge=0)
    """Days after a series' results were delivered (every outbox item sent) that its images go; None: never."""
    purge_unprocessed_after_days: float | None = Field(None, ge=0)
    """Days after the last instance of a rejected or out-of-scope series that its images go; None: never."""


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file: Path | None = None


class Settings(_Section):
    """The whole node configuration."""

    node: NodeSettings = NodeSettings()
    tls: TlsSettings = TlsSettings()
    peers: list[PeerSettings] = []
    destinations: list[DestinationSettings] = []
    completion: CompletionSettings = CompletionSettings()
    selection: SelectionSettings = SelectionSettings()
    study_choice: StudyChoiceSettings = StudyChoiceSettings()
    pipeline: PipelineSettings = PipelineSettings()
    worklist: WorklistSettings = WorklistSettings()
    web: WebSettings = WebSettings()
    retention: RetentionSettings = RetentionSettings()
    logging: LoggingSettings = LoggingSettings()

    def resolve_paths(self, base: Path) -> "Settings":
        """Make relative paths relative to ``base`` (the config file's folder)."""
        node = self.node
        node.storage_dir = _under(base, node.storage_dir)
        node.database = _under(base, node.database)
        node.results_dir = _under(base, node.results_dir)
        for section, names in ((self.tls, ("cert_file", "key_file", "ca_file")),
                               (self.pipeline, ("model_dir", "segmentation_model_dir", "segmentation_check_model_dir",
                                                "scheduler_tls_ca_file", "scheduler_tls_cert_file",
                                                "scheduler_tls_key_file")),
                               (self.logging, ("file",)),
                               *((d, ("password_file", "token_file")) for d in self.destinations)):
            for name in names:
                value = getattr(section, name)
                if value is not None:
                    setattr(section, name, _under(base, value))
        return self


def _under(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else (base / path)


def load_settings(path: str | Path | None) -> Settings:
    """Read and validate a TOML configuration file (None: all defaults, paths under cwd).

    Raises:
        ConfigError: one line naming the file and the offending key.
    """
    if path is None:
        return Settings().resolve_paths(Path.cwd())
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config error in {path}: not valid TOML ({exc})") from None
    return settings_from_dict(data, source=str(path)).resolve_paths(path.resolve().parent)


def settings_from_dict(data: dict, source: str = "config") -> Settings:
    """Validate an already-parsed configuration mapping."""
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"config error in {source}: {key}: {message}{more}") from None
    if settings.tls.enabled and not (settings.tls.cert_file and settings.tls.key_file):
        raise ConfigError(f"config error in {source}: tls: enabled needs cert_file and key_file")
    pipeline = settings.pipeline
    for backend, model_dir, key in ((pipeline.segmentation_backend, pipeline.segmentation_model_dir, "segmentation"),
                                    (pipeline.segmentation_check_backend, pipeline.segmentation_check_model_dir,
                                     "segmentation_check")):
        if backend in MODEL_BACKENDS and model_dir is None:
            raise ConfigError(f"config error in {source}: pipeline: {key}_backend \"{backend}\" needs {key}_model_dir")
    if (pipeline.segmentation_check_backend, pipeline.segmentation_check_model_dir) == (
            pipeline.segmentation_backend, pipeline.segmentation_model_dir):
        raise ConfigError(f"config error in {source}: pipeline: segmentation_check_backend is the segmentation "
                          "backend itself with the same model; a check needs another backend or model")
    return settings
