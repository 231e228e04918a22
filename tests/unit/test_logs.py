import logging

from scpnode.logs import KeyValueFormatter, log_event, uid_ref


def test_one_line_per_event_with_fields():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    log_event(logger, "instance_stored", series=uid_ref("1.2.3"), size=10, note="two words\nline")
    line = KeyValueFormatter().format(records[0])
    assert "\n" not in line
    assert "event=instance_stored" in line
    assert f"series={uid_ref('1.2.3')}" in line
    assert 'note="two words\\nline"' in line


def test_uid_ref_is_stable_and_not_the_uid():
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert uid_ref(uid) == uid_ref(uid)
    assert uid not in uid_ref(uid)
    assert len(uid_ref(uid)) == 8
