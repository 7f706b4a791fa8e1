"""The ``k2hr3-osnl`` command.

``k2hr3-osnl [-c FILE]`` runs the listener; ``k2hr3-osnl replay ...`` feeds saved or
parked notifications through the same code. The options of k2hr3_osnl 1.0.8 (``-c``,
``-d``, ``-l``, ``-f``, ``-v``) keep their meaning.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

# oslo.messaging imports eventlet, which warns on import even though we never use it.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from k2hr3_osnl import __version__, config
from k2hr3_osnl.commands import publish, replay
from k2hr3_osnl.config.opts import LOG_LEVELS
from k2hr3_osnl.core.parking import ParkingLot
from k2hr3_osnl.observability import logs
from k2hr3_osnl.process import service, supervisor, systemd
from k2hr3_osnl.process.pidfile import PidFile, PidFileLocked
from k2hr3_osnl.rabbit import seam

LOG = logging.getLogger("k2hr3_osnl")
#: Files a detached daemon creates are not world-readable: they name VMs and addresses.
DAEMON_UMASK = 0o027


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a value given before the subcommand is not reset by the subcommand's parser.
    common.add_argument(
        "-c",
        "--config-file",
        action="append",
        dest="config_files",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="configuration file; may be repeated, later files win "
        f"(default: {' or '.join(config.DEFAULT_CONFIG_FILES)})",
    )
    common.add_argument(
        "--config-dir",
        action="append",
        dest="config_dirs",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="directory of *.conf files read after --config-file",
    )
    common.add_argument(
        "-d",
        "--debug-level",
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS,
        help="overrides [DEFAULT] debug_level",
    )
    common.add_argument(
        "-l",
        "--libs-debug-level",
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS,
        help="overrides [DEFAULT] libs_debug_level",
    )
    common.add_argument(
        "-f",
        "--log-file",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="overrides [DEFAULT] log_file",
    )

    parser = argparse.ArgumentParser(
        prog="k2hr3-osnl",
        parents=[common],
        description="Remove deleted OpenStack VMs from K2HR3 roles, from the deletion "
        "notifications on RabbitMQ.",
    )
    parser.add_argument("-v", "--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="check the configuration, print every problem, and exit",
    )
    parser.add_argument(
        "--daemonize",
        action="store_true",
        help="detach into the background (needs --pidfile and a log file); ignored "
        "under systemd, which wants the daemon in the foreground",
    )
    parser.add_argument(
        "--pidfile",
        metavar="PATH",
        help="write the daemon's pid to PATH and hold a lock on it, so that a second "
        "daemon with the same PATH refuses to start",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    r = commands.add_parser(
        "replay",
        parents=[common],
        help="feed saved or parked notifications through the parser and K2HR3 client",
        description="Print what the daemon decides for each saved notification and, "
        "unless --dry-run, make the K2HR3 call.",
    )
    r.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="saved notifications ('-' for standard input): wire bodies, "
        "oslo.message envelopes, endpoint dumps or {event_type, payload}",
    )
    r.add_argument("--dry-run", action="store_true", help="decide only; call nothing")
    r.add_argument(
        "--parked", action="store_true", help="re-drive the parked deletions in [k2hr3] state_dir"
    )
    r.add_argument("--list", action="store_true", help="with --parked: only list them")
    p = commands.add_parser(
        "publish",
        parents=[common],
        help="publish saved notifications to RabbitMQ as OpenStack would, to try it out",
        description="Publish with oslo.messaging's Notifier to the transport_url of the "
        "configuration, on the exchange and topic OpenStack uses for each "
        "event type (neutron/notifications, nova/notifications, "
        "nova/versioned_notifications) unless given.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="saved notifications")
    p.add_argument("--exchange", help="override the exchange")
    p.add_argument("--topic", help="override the topic")
    p.add_argument(
        "--driver",
        choices=("messaging", "messagingv2"),
        default="messagingv2",
        help="wire format: messaging (flat) or messagingv2 (envelope)",
    )
    _reconcile_parser(commands, common)
    from k2hr3_osnl.commands import mosk

    mosk.add_parser(commands)
    return parser


def _reconcile_parser(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    c = commands.add_parser(
        "reconcile",
        parents=[common],
        help="one reconciliation pass now: remove from K2HR3 the servers Nova deleted",
        description="Ask Nova ([service_credentials]) for the servers deleted since the "
        "checkpoint in [k2hr3] state_dir, or since --since, and delete each from K2HR3 "
        "through the daemon's own path (retries, parking). One line per deletion; exit 0 "
        "when every one was delivered or parked. Without --since it moves the checkpoint "
        "as the daemon would.",
    )
    c.add_argument(
        "--since",
        metavar="ISO8601|DURATION",
        help="look from this time (2026-01-31T12:00:00Z) or this long ago (45s, 90m, 12h, "
        "2d) instead of the checkpoint; the checkpoint moves only if that covers it",
    )
    c.add_argument(
        "--dry-run", action="store_true", help="print what would be deleted; call nothing"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "mosk-config":
        from k2hr3_osnl.commands import mosk

        return mosk.main(args)  # reads a secret, not the daemon's configuration
    if args.command == "replay" and not args.parked and not args.files:
        parser.error("replay needs FILE arguments or --parked")
    if args.daemonize and not args.pidfile:
        parser.error("--daemonize needs --pidfile")
    _absolute(args)
    if args.daemonize and not systemd.under_systemd():
        # Before the log file is created, so that it is not world-readable either.
        os.umask(DAEMON_UMASK)
    try:
        conf = _load(args)
    except config.ConfigError as error:
        print(f"k2hr3-osnl: {error}", file=sys.stderr)
        return 2
    for name in logs.OPTIONS:
        try:
            getattr(conf, name)
        except ValueError as error:
            # Before logging exists, and not "cannot log to ...": the value is wrong.
            message = f"invalid configuration: [DEFAULT] {name}: {config.value_error(error)}"
            print(f"k2hr3-osnl: {message}", file=sys.stderr)
            return 2
    try:
        logs.setup_from(conf)
    except logs.LogDestinationError as error:
        print(f"k2hr3-osnl: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:
        print(f"k2hr3-osnl: cannot log to {conf.log_file}: {error}", file=sys.stderr)
        return 2
    found = config.problems(conf)
    hooks_missing, hooks_weak = seam.check()
    found += hooks_missing
    if args.check_config:
        for problem in found:
            print(problem)
        # Warnings read values that problems may have found bad: only for a sound file.
        notes = [] if found else [*config.warnings(conf), *hooks_weak]
        for note in notes:
            print(f"warning: {note}")
        summary = f"{len(notes)} warning(s)" if notes else "no warnings"
        print(f"{len(found)} problem(s)" if found else f"configuration OK ({summary})")
        return 1 if found else 0
    try:
        config.check(conf)
    except config.ConfigError as error:
        # On the terminal (and the journal) even when logging goes to a file.
        return _refuse(str(error), logs.to_stream(conf.log_file))
    if hooks_missing:
        # Never "every notification acknowledged as invalid": refuse to consume at all.
        return _refuse("; ".join(hooks_missing), logs.to_stream(conf.log_file))
    for weakness in hooks_weak:
        LOG.warning("%s", weakness)
    if args.command == "replay":
        return _replay(args, conf)
    if args.command == "reconcile":
        return _reconcile(args, conf)
    if args.command == "publish":
        return publish.publish(
            conf,
            args.files,
            exchange=args.exchange,
            topic=args.topic,
            driver=args.driver,
        )
    return _serve(args, conf)


def _absolute(args: argparse.Namespace) -> None:
    """Command-line paths made absolute: a detached daemon works in /, and re-reads them."""
    for name in ("config_files", "config_dirs"):
        if name in args:
            setattr(args, name, [os.path.abspath(p) for p in getattr(args, name)])
    if "log_file" in args and not logs.to_stream(args.log_file):
        args.log_file = os.path.abspath(args.log_file)


def _load(args: argparse.Namespace) -> config.cfg.ConfigOpts:
    """The configuration files of the command line, then its overrides; again on SIGHUP."""
    conf = config.load(getattr(args, "config_files", ()), getattr(args, "config_dirs", ()))
    for name in ("debug_level", "libs_debug_level", "log_file"):
        if name in args:
            conf.set_override(name, getattr(args, name))
    return conf


def _serve(args: argparse.Namespace, conf: config.cfg.ConfigOpts) -> int:
    """Run the daemon, in the foreground or (--daemonize) detached, holding --pidfile."""
    detach = args.daemonize
    if detach and systemd.under_systemd():
        LOG.info("started by systemd: --daemonize ignored, staying in the foreground")
        detach = False
    to_stderr = logs.to_stream(conf.log_file)
    if detach and to_stderr:
        return _refuse(
            "--daemonize needs a log file ([DEFAULT] log_file or --log-file): "
            "a detached daemon has no terminal to log to",
            to_stderr,
        )
    pidfile: PidFile | None = None
    if args.pidfile:
        try:
            pidfile = PidFile(args.pidfile).acquire()  # PidFile keeps an absolute path
        except PidFileLocked as error:
            return _refuse(f"not starting: {error}", to_stderr, status=1)
        except OSError as error:
            return _refuse(f"cannot open pidfile {args.pidfile}: {error}", to_stderr)
    if detach:
        from k2hr3_osnl.process import daemonize  # python-daemon: only when it is needed

        assert pidfile is not None
        daemonize.detach([*logs.open_streams(), pidfile.fd], umask=DAEMON_UMASK)
        LOG.info("detached into the background: pid %d, pidfile %s", os.getpid(), pidfile.path)
    if pidfile is not None:
        pidfile.write()
    try:
        if conf.workers > 1:
            refusal = _verification_refused(conf)
            if refusal is not None:
                # Once, here: a worker refused would be started again and again.
                return _refuse(f"not starting: {refusal}", to_stderr)
            return supervisor.run(conf.workers, lambda index: _worker(args, conf, index))
        return service.run(conf, lambda: _load(args))
    finally:
        if pidfile is not None:
            pidfile.release()


def _verification_refused(conf: config.cfg.ConfigOpts) -> str | None:
    """verify_deletions' start check (the account sees every project), or None."""
    if not conf.reconcile.verify_deletions:
        return None
    from k2hr3_osnl.reconcile import view, wiring

    try:
        wiring.verifier(conf, wiring.cloud(conf))
    except view.ViewTooNarrow as error:
        return str(error)
    return None


def _worker(args: argparse.Namespace, conf: config.cfg.ConfigOpts, index: int) -> int:
    """One of ``workers`` consumer processes: the same service loop, its own metrics port."""
    logs.leave_rotation_to_parent()
    # A SIGHUP's fresh configuration gets the same overrides: compared without them,
    # every reload would report the worker's own port as a change that needs a restart.
    # One re-sender of parked deletions per node: two would send each file twice.
    return service.run(
        _as_worker(conf, index), lambda: _as_worker(_load(args), index), resend=not index
    )


def _as_worker(conf: config.cfg.ConfigOpts, index: int) -> config.cfg.ConfigOpts:
    """What worker ``index`` changes in the configuration it was given."""
    if index and conf.metrics.port:
        conf.set_override("port", conf.metrics.port + index, group="metrics")
    if index and not conf.reconcile.leader_election:
        # Without the pool's election, one reconciler per node: each would make the
        # same calls. With it, every worker is a candidate like a node.
        conf.set_override("enabled", False, group="reconcile")
    return conf


def _refuse(message: str, to_stderr: bool, status: int = 2) -> int:
    """An error the operator sees on the terminal, and in the log file if there is one."""
    if not to_stderr:
        LOG.error("%s", message)
    print(f"k2hr3-osnl: {message}", file=sys.stderr)
    return status


def _replay(args: argparse.Namespace, conf: config.cfg.ConfigOpts) -> int:
    parking = ParkingLot(conf.k2hr3.state_dir)
    if args.parked and args.list:
        return replay.list_parked(parking, sys.stdout)
    client = None if args.dry_run else service.make_client(conf)
    verifier = None
    if client is not None and conf.reconcile.verify_deletions:
        from k2hr3_osnl.reconcile import view, wiring

        try:
            verifier = wiring.verifier(conf, wiring.cloud(conf))
        except view.ViewTooNarrow as error:
            return _refuse(f"not replaying: {error}", True)
    if args.parked:
        if client is None:
            return replay.list_parked(parking, sys.stdout)
        return replay.replay_parked(parking, client, sys.stdout, verifier)
    return replay.replay_files(args.files, client, sys.stdout, verifier)


def _reconcile(args: argparse.Namespace, conf: config.cfg.ConfigOpts) -> int:
    """One pass on demand; see :mod:`k2hr3_osnl.reconcile.reconciler`."""
    from k2hr3_osnl.core import reconciliation
    from k2hr3_osnl.core.observer import Observers
    from k2hr3_osnl.openstack import session
    from k2hr3_osnl.reconcile import wiring

    if not session.configured(conf):
        print(
            "k2hr3-osnl: reconcile needs [service_credentials] auth_type (and the account's "
            "auth_url, username, password...) to ask Nova",
            file=sys.stderr,
        )
        return 2
    since = None
    if args.since is not None:
        try:
            since = reconciliation.parse_since(args.since)
        except ValueError as error:
            print(f"k2hr3-osnl: --since: {error}", file=sys.stderr)
            return 2
    if conf.k2hr3.dry_run and not args.dry_run:
        # The dry-run client would "deliver" everything: never a live pass, never its checkpoint.
        print(
            "k2hr3-osnl: [k2hr3] dry_run = true: a pass as with --dry-run (nothing sent, "
            "no checkpoint moved)",
            file=sys.stderr,
        )
        args.dry_run = True
    # A pass on demand is this node's own: it neither waits for nor moves the pool's token.
    fed = wiring.deliveries(conf, elect=False)
    handler = service.make_handler(conf, observer=Observers(fed.observers))
    reconciler = wiring.make_reconciler(conf, session.connect(conf), handler, fed)
    try:
        report = reconciler.run_pass(since=since, dry_run=args.dry_run, printer=print)
    finally:
        handler.client.close()
    if report.error is not None:
        print(f"k2hr3-osnl: reconciliation failed: {report.error}", file=sys.stderr)
        return 1
    print(
        f"{report.found} deleted server(s) since {reconciliation.iso(report.since)}, "
        f"{report.already} already deleted, {report.sent} sent"
        + (" (dry run)" if args.dry_run else "")
        + ("; a Nova cell is down: its servers were not listed" if report.cells_down else ""),
    )  # on stdout with the per-deletion lines: the result, not a diagnostic
    # Never a false OK: a listing without a down cell's servers did not see everything.
    return 0 if report.settled and not report.cells_down else 1


if __name__ == "__main__":
    sys.exit(main())
