"""deploy/scpnode.example.toml documents every key with its default and loads as is."""

import re
import tomllib
from pathlib import Path

from scpnode.config import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "scpnode.example.toml"


def test_example_loads_and_equals_the_defaults():
    loaded = load_settings(EXAMPLE)
    defaults = Settings().resolve_paths(EXAMPLE.parent)
    assert loaded == defaults


def test_example_mentions_every_key():
    text = EXAMPLE.read_text()
    uncommented = tomllib.loads(re.sub(r"^# ([a-z_]+ = )", r"\1", text, flags=re.M).replace("# [[", "[["))
    for section, model in Settings.model_fields.items():
        keys = model.annotation.__args__[0].model_fields if section in ("peers", "destinations") \
            else model.annotation.model_fields
        assert section in uncommented, section
        table = uncommented[section][0] if section in ("peers", "destinations") else uncommented[section]
        assert set(table) == set(keys), section
