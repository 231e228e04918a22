"""``[pipeline] executor``: the Dask keys are checked together, and TLS goes to distributed's Security."""

from pathlib import Path

import pytest

from scpnode.config import ConfigError, load_settings, settings_from_dict
from scpnode.pipeline.cluster import cluster_security
from scpnode.pipeline.dask_runner import DaskJobRunner


def _pipeline(**keys):
    return settings_from_dict({"pipeline": keys}).pipeline


def test_the_local_executor_is_the_default():
    assert _pipeline().executor == "local"


@pytest.mark.parametrize(("keys", "message"), [
    ({"executor": "dask"}, "needs scheduler_address"),
    ({"executor": "dask", "scheduler_address": "tls://sched:8786"}, "needs scheduler_tls_ca_file"),
    ({"executor": "dask", "scheduler_address": "tcp://sched:8786", "scheduler_tls_ca_file": "/ca.pem"},
     "need a tls:// scheduler_address"),
    ({"executor": "dask", "scheduler_address": "tcp://sched:8786", "worker_storage_dir": "store"},
     "must be an absolute path"),
])
def test_incomplete_cluster_settings_are_refused_with_the_reason(keys, message):
    with pytest.raises(ConfigError, match=message):
        _pipeline(**keys)


def test_a_tls_scheduler_gets_mutual_tls_with_the_configured_files():
    pipeline = _pipeline(executor="dask", scheduler_address="tls://sched:8786", scheduler_tls_ca_file="/etc/ca.pem",
                         scheduler_tls_cert_file="/etc/node.pem", scheduler_tls_key_file="/etc/node.key")
    security = cluster_security(pipeline, pipeline.scheduler_address)
    assert security.require_encryption
    assert (security.tls_ca_file, security.tls_client_cert, security.tls_client_key) == (
        "/etc/ca.pem", "/etc/node.pem", "/etc/node.key")
    assert cluster_security(pipeline, "tcp://other:8786") is None
    with pytest.raises(ValueError, match="needs"):
        cluster_security(_pipeline(), "tls://sched:8786")


def test_relative_tls_files_are_resolved_against_the_config_folder(tmp_path: Path):
    config = tmp_path / "node.toml"
    config.write_text('[pipeline]\nexecutor = "dask"\nscheduler_address = "tls://s:8786"\n'
                      'scheduler_tls_ca_file = "ca.pem"\nscheduler_tls_cert_file = "n.pem"\n'
                      'scheduler_tls_key_file = "n.key"\n')
    assert load_settings(config).pipeline.scheduler_tls_ca_file == tmp_path / "ca.pem"


@pytest.mark.parametrize(("keys", "resources"), [
    ({}, {}),
    ({"device": "cuda"}, {"GPU": 1}),
    ({"device": "cuda", "worker_resources": {"GPU": 2, "MEMORY": 32e9}}, {"GPU": 2, "MEMORY": 32e9}),
])
def test_jobs_ask_for_a_gpu_worker_when_the_device_is_cuda(keys, resources):
    settings = settings_from_dict({"pipeline": {"executor": "dask", "scheduler_address": "tcp://s:8786", **keys}})
    assert DaskJobRunner(settings, lambda: None).resources == resources
