"""The committed sample configuration is what oslo-config-generator makes of our options."""

from __future__ import annotations

from pathlib import Path

from oslo_config import generator

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "etc" / "k2hr3-osnl.conf.sample"


def test_sample_config_is_generated_from_the_options(tmp_path: Path) -> None:
    fresh = tmp_path / "sample.conf"
    generator.main(["--namespace", "k2hr3_osnl", "--wrap-width", "79", "--output-file", str(fresh)])
    assert fresh.read_text() == SAMPLE.read_text(), (
        "etc/k2hr3-osnl.conf.sample is stale: run "
        "'oslo-config-generator --config-file etc/oslo-config-generator/k2hr3-osnl.conf'"
    )


def test_shipped_config_loads_cleanly() -> None:
    from k2hr3_osnl import config

    conf = config.load([str(ROOT / "etc" / "k2hr3-osnl.conf")])
    assert config.problems(conf) == []
    assert conf.k2hr3.dry_run is True
    assert conf.oslo_messaging_notifications.exchange == ["neutron", "nova"]
