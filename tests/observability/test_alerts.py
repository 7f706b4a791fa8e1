"""etc/k2hr3-osnl-alerts.yml: valid rules, on metrics the daemon really exports.

A rule on a misspelled metric never fires, and nothing says so; so every
``k2hr3_osnl_*`` name in an expression is looked up in what the daemon serves. With
``promtool`` installed, the rules are also checked and unit-tested by Prometheus itself
(tests/promtool/), which proves each alert fires when it should and not before.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import paths, tools

from k2hr3_osnl.core.answers import Answer, Outcome
from k2hr3_osnl.core.types import Notification
from k2hr3_osnl.observability.health import Health
from k2hr3_osnl.observability.metrics import Metrics

ROOT = paths.ROOT
RULES = ROOT / "etc" / "k2hr3-osnl-alerts.yml"
PROMTOOL_TESTS = paths.TESTS / "promtool" / "k2hr3-osnl-alerts.test.yml"


def rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    (group,) = document["groups"]
    assert group["name"] == "k2hr3-osnl"
    return group["rules"]


def test_rules_are_well_formed() -> None:
    found = rules()
    names = [rule["alert"] for rule in found]
    assert len(names) == len(set(names)) >= 5
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("critical", "warning"), rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule


def test_every_metric_in_the_rules_is_exported() -> None:
    metrics = Metrics(Health())
    # Series with free labels (the HTTP status) appear with the first K2HR3 call.
    note = Notification("m", "port.delete.end", "network.x", {})
    metrics.answered(note, Answer(Outcome.RETRY, 503, "", 0.01), 1)
    text = generate_latest(metrics.registry).decode()
    exported = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    used = {name for rule in rules() for name in re.findall(r"k2hr3_osnl_\w+", rule["expr"])}
    assert used, "no rule uses a k2hr3_osnl metric"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    if shutil.which("promtool") is None:
        tools.require("unit-testing the alert rules needs promtool: apt-get install prometheus")
    check = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        ["promtool", "test", "rules", PROMTOOL_TESTS.name],
        cwd=PROMTOOL_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert test.returncode == 0, test.stdout + test.stderr
