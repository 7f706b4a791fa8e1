"""What oslo.config lets through in silence: sections and options that nothing reads.

oslo.config ignores a key it has no option for, so ``dyr_run = false`` leaves
``dry_run`` at its default and nobody is told. This module re-reads the same files with
oslo.config's own parser and compares every section and key with the options the
process registered (ours and oslo.messaging's, deprecated names included), suggesting
the closest known name.

- An unknown option in a known section is a **problem**: at daemon start it is fatal.
  The daemon acts on production data; an operator who misspells ``dry_run`` or
  ``api_url`` would go live, or send deletions elsewhere, by accident, and a daemon that
  refuses to start is found at once, while a warning scrolls by unread.
- An unknown section that looks like one of ours (``[k2rh3]``, ``[default]``) is a
  problem for the same reason: every option in it is lost.
- Any other unknown section is a **warning**: a file shared with another service may
  hold that service's sections.
- A name k2hr3_osnl 1.0.8's sample files carry but 1.0.8 never read (``[k2hr3]
  retries``...) is a **warning**: those files must keep loading, and the name has never
  changed what the daemon does. The caller passes them in, with what to set instead.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from oslo_config import cfg

DEFAULT = "DEFAULT"


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def known_options(
    conf: cfg.ConfigOpts, opt_lists: Iterable[tuple[str | None, Iterable[cfg.Opt]]]
) -> dict[str, set[str]]:
    """Every section name a file may use, with the keys it may hold.

    ``conf`` supplies what is registered (groups, and oslo.config's own ``config_*``
    options); ``opt_lists`` the option objects, for their deprecated names.
    """
    known: dict[str, set[str]] = {DEFAULT: set()}
    for name in conf:
        try:
            value = conf[name]
        except Exception:  # an option whose value is bad: reported elsewhere
            value = None
        if isinstance(value, cfg.ConfigOpts.GroupAttr):
            known.setdefault(name, set()).update(value)
        else:
            known[DEFAULT].add(name)
    for group, opts in opt_lists:
        section = group or DEFAULT
        for opt in opts:
            known.setdefault(section, set()).add(opt.dest)
            for old in opt.deprecated_opts:
                known.setdefault(old.group or section, set()).add(
                    (old.name or opt.name).replace("-", "_")
                )
    return known


def files_of(conf: cfg.ConfigOpts) -> list[str]:
    """The configuration files oslo.config read, in its order."""
    files = list(conf.config_file or ())
    for directory in conf.config_dirs:
        files += sorted(glob.glob(os.path.join(directory, "*.conf")))
    return files


def check_files(
    files: Iterable[str],
    known: dict[str, set[str]],
    ignored: Mapping[tuple[str, str], str] | None = None,
) -> Findings:
    """Unknown sections and options; ``ignored`` maps ``(section, name)`` to its advice."""
    findings = Findings()
    ignored = ignored or {}
    by_lower = {name.lower(): name for name in known if name != DEFAULT}
    for path in files:
        sections: dict[str, dict[str, list[str]]] = {}
        try:
            cfg.ConfigParser(path, sections).parse()
        except (OSError, cfg.ParseError):
            continue  # loading the configuration already reported it
        for section, values in sections.items():
            group = section if section == DEFAULT else by_lower.get(section.lower())
            if group is None:
                _unknown_section(findings, path, section, known)
                continue
            for key in values:
                name = key.replace("-", "_")
                if name in known[group]:
                    continue
                advice = ignored.get((group, name))
                if advice is not None:
                    findings.warnings.append(
                        f"[{section}] {key}: deprecated, ignored as k2hr3_osnl 1.0.8 ignored "
                        f"it; {advice} ({_where(path, section, key)})"
                    )
                    continue
                findings.problems.append(
                    f"[{section}] {key}: unknown option ({_where(path, section, key)})"
                    + _suggestion(name, group, known)
                )
    return findings


def _unknown_section(
    findings: Findings, path: str, section: str, known: dict[str, set[str]]
) -> None:
    where = _where(path, section, None)
    close = _closest(section.lower(), [name.lower() for name in known])
    if close is not None:
        proper = next(name for name in known if name.lower() == close)
        findings.problems.append(
            f"[{section}]: unknown section ({where}), so none of its options is read; "
            f"did you mean [{proper}]?"
        )
    else:
        findings.warnings.append(f"[{section}]: unknown section, ignored ({where})")


def _suggestion(name: str, group: str, known: dict[str, set[str]]) -> str:
    elsewhere = sorted(s for s, names in known.items() if s != group and name in names)
    if elsewhere:
        return f"; it belongs in [{elsewhere[0]}]"
    close = _closest(name, known[group])
    return f"; did you mean {close}?" if close else ""


def _closest(word: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.75)
    return matches[0] if matches else None


def _where(path: str, section: str, key: str | None) -> str:
    """``file line N``: the first line that sets ``key`` in ``section`` (or opens it)."""
    current = None
    pattern = re.compile(rf"^{re.escape(key)}\s*[:=]") if key else None
    try:
        with open(path, encoding="utf-8", errors="replace") as source:
            for number, line in enumerate(source, 1):
                if line.startswith("["):
                    current = line.strip()[1:-1].strip()
                    if pattern is None and current == section:
                        return f"{path} line {number}"
                elif pattern is not None and current == section and pattern.match(line):
                    return f"{path} line {number}"
    except OSError:
        pass
    return path
