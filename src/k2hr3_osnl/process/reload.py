"""SIGHUP: re-read the configuration and apply what can change without reconnecting.

The new files are loaded into a fresh ``ConfigOpts`` and checked in full first; only a
configuration that would start is applied, so a typo never half-applies. Options
declared ``mutable=True`` in :mod:`k2hr3_osnl.config.opts` (log settings, K2HR3 timeouts and
retries...) are copied onto the running configuration and pushed into the
running objects; every other change is logged as needing a restart, because the broker
connection, its bindings and queue were built from the old values and stay so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import oslo_messaging.opts
from oslo_config import cfg

from k2hr3_osnl import config
from k2hr3_osnl.config import opts
from k2hr3_osnl.observability import logs

LOG = logging.getLogger(__name__)

DEFAULT_GROUP = "DEFAULT"


@dataclass(frozen=True, slots=True)
class Change:
    group: str
    name: str
    old: Any
    new: Any
    mutable: bool
    secret: bool

    def __str__(self) -> str:
        if self.secret:
            return f"[{self.group}] {self.name} (secret, value not shown)"
        return f"[{self.group}] {self.name}: {self.old!r} -> {self.new!r}"


def _options() -> Iterator[tuple[str, cfg.Opt]]:
    """Every option this process registers, oslo.messaging's included, once each."""
    seen: set[tuple[str, str]] = set()
    for group, group_opts in (*oslo_messaging.opts.list_opts(), *opts.list_opts()):
        name = group or DEFAULT_GROUP
        for opt in group_opts:
            if (name, opt.dest) not in seen:
                seen.add((name, opt.dest))
                yield name, opt


def _value(conf: cfg.ConfigOpts, group: str, opt: cfg.Opt) -> Any:
    section = conf if group == DEFAULT_GROUP else conf[group]
    return getattr(section, opt.dest)


def changes(running: cfg.ConfigOpts, fresh: cfg.ConfigOpts) -> list[Change]:
    """What differs between the running configuration and the re-read one."""
    found: list[Change] = []
    for group, opt in _options():
        try:
            old, new = _value(running, group, opt), _value(fresh, group, opt)
        except (cfg.NoSuchOptError, cfg.NoSuchGroupError, ValueError):
            continue
        if old != new:
            secret = opt.secret or "password" in opt.name
            found.append(Change(group, opt.name, old, new, opt.mutable, secret))
    return found


def reload(
    running: cfg.ConfigOpts,
    loader: Callable[[], cfg.ConfigOpts],
    apply: Callable[[], None],
) -> bool:
    """Re-read with ``loader``; apply mutable changes, then call ``apply``.

    Returns False, with the running configuration untouched, when the new one is invalid.
    Log files are reopened either way the new configuration is valid (for logrotate).
    """
    try:
        fresh = loader()
        found = config.problems(fresh)
        if found:
            raise config.ConfigError("invalid configuration:\n  " + "\n  ".join(found))
    except config.ConfigError as error:
        LOG.error("reload rejected, still running on the previous configuration: %s", error)
        return False
    # The one step that can fail (a log file that cannot be opened) goes first.
    try:
        logs.setup_from(fresh)
    except logs.LogDestinationError as error:
        LOG.error("reload rejected, still running on the previous configuration: %s", error)
        return False
    except (OSError, ValueError) as error:
        LOG.error(
            "reload rejected, still running on the previous configuration: cannot log to %s: %s",
            fresh.log_file,
            error,
        )
        return False
    found_changes = changes(running, fresh)
    for change in found_changes:
        if change.mutable:
            group = None if change.group == DEFAULT_GROUP else change.group
            running.set_override(change.name, change.new, group=group)
    apply()
    for change in found_changes:
        if change.mutable:
            LOG.info("reload: applied %s", change)
        else:
            LOG.warning("reload: needs a restart, the old value stays in use: %s", change)
    if not found_changes:
        LOG.info("reload: configuration unchanged; log file reopened")
    return True
