"""The committed sample configuration is what oslo-config-generator makes of our options."""

from __future__ import annotations

import re
from pathlib import Path

from oslo_config import generator
from support import paths

ROOT = paths.ROOT
SAMPLE = ROOT / "etc" / "k2hr3-osnl.conf.sample"
#: keystoneauth1's own options, whose help texts, types and number change between its
#: releases: the sample is generated with the newest, and every option an older one
#: (Debian 12's 5.0) offers must be in it.
KEYSTONEAUTH_GROUP = "service_credentials"
STALE = (
    "etc/k2hr3-osnl.conf.sample is stale: run "
    "'oslo-config-generator --config-file etc/oslo-config-generator/k2hr3-osnl.conf'"
)


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^\[([^\]]+)\]$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _option_names(section: str) -> list[str]:
    return re.findall(r"^#(\w+) = ", section, flags=re.M)


def test_sample_config_is_generated_from_the_options(tmp_path: Path) -> None:
    fresh = tmp_path / "sample.conf"
    generator.main(["--namespace", "k2hr3_osnl", "--wrap-width", "79", "--output-file", str(fresh)])
    made, committed = _sections(fresh.read_text()), _sections(SAMPLE.read_text())
    assert list(made) == list(committed), STALE
    for name, text in made.items():
        if name == KEYSTONEAUTH_GROUP:
            assert set(_option_names(text)) <= set(_option_names(committed[name])), STALE
        else:
            assert text == committed[name], f"[{name}]: {STALE}"


def test_shipped_config_loads_cleanly() -> None:
    from k2hr3_osnl import config

    conf = config.load([str(ROOT / "etc" / "k2hr3-osnl.conf")])
    assert config.problems(conf) == []
    assert conf.k2hr3.dry_run is True
    assert conf.oslo_messaging_notifications.exchange == ["neutron", "nova"]
