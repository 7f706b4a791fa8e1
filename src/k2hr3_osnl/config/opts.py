"""Every configuration option k2hr3-osnl reads, in one place.

The option names and groups of k2hr3_osnl 1.0.8 are kept so that its config files load
unchanged; ``oslo-config-generator --namespace k2hr3_osnl`` reads :func:`list_opts`.
"""

from __future__ import annotations

import copy

from oslo_config import cfg, types

from k2hr3_osnl.core import events
from k2hr3_osnl.observability import logs
from k2hr3_osnl.openstack import session
from k2hr3_osnl.rabbit import seam

#: The deletion events this listener acts on: every source OpenStack publishes
#: (``core/events.py``), so that a new source is never filtered out by default.
DEFAULT_EVENT_TYPE = events.event_type_filter()
#: Where those sources are published.
DEFAULT_EXCHANGES = events.exchanges()
DEFAULT_TOPICS = events.topics()
#: neutron publishes as ``network.<host>``, legacy nova as ``compute.<host>``,
#: versioned nova as ``nova-compute:<host>`` or ``nova-api:<host>``.
DEFAULT_PUBLISHER_ID = r"^(network|compute|nova-[a-z-]+)([.:].*)?$"
LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "critical", "notset")
_LEVEL_CHOICES = [
    ("debug", "everything, including each ignored notification"),
    ("info", "one line per K2HR3 call, start and stop"),
    ("warn", "invalid notifications, K2HR3 failures, deprecations"),
    ("warning", "same as warn"),
    ("error", "parked deletions and fatal errors"),
    ("critical", "only what stops the daemon"),
    ("notset", "everything (as debug)"),
]
_LIBS_LEVEL_CHOICES = [(name, "as for debug_level, for the libraries") for name in LOG_LEVELS]

NOTIFICATIONS_GROUP = "oslo_messaging_notifications"
K2HR3_GROUP = "k2hr3"
METRICS_GROUP = "metrics"
RECONCILE_GROUP = "reconcile"
#: Read by openstack/session.py, which names it.
CREDENTIALS_GROUP = session.CREDENTIALS_GROUP
#: The keystoneauth1 plugin whose options the sample configuration documents.
SAMPLE_AUTH_TYPE = "password"
#: Default port of /metrics and /healthz. The Prometheus wiki's "default port
#: allocations" list has no free number left in 9100-9999; 9840 is not taken in the copy
#: we could read, and no exporter usual on an OpenStack node uses it.
DEFAULT_METRICS_PORT = 9840

#: Names k2hr3_osnl 1.0.8's sample files carry but 1.0.8 never read (it ignored every
#: option it did not register): accepted with any value, as 1.0.8 accepted them, with a
#: one-line deprecation warning naming what to set instead. They are not options: nothing
#: reads them. ``log_format``, also only in a sample, is an option: see below.
IGNORED_1_0_8: dict[tuple[str, str], str] = {
    ("DEFAULT", "debug"): "set debug_level = debug for debug logs",
    ("DEFAULT", "log_dir"): "set log_file to a file path",
    ("DEFAULT", "log_level"): "set debug_level (debug, info, warn, error)",
    ("DEFAULT", "libraries_log_level"): "set libs_debug_level (debug, info, warn, error)",
    ("k2hr3", "retries"): "a deletion is retried until retry_budget_seconds, then parked",
}

_REPLACED_BY_PARKING = (
    "A failed deletion is now retried with a shared circuit breaker and then parked "
    "under state_dir (see 'k2hr3-osnl replay --parked'), never requeued in a loop."
)


class LogFormat(types.String):
    """``text``, ``json`` or a logging format string; anything else fails at load."""

    def __call__(self, value: object) -> str:
        return logs.check_format(super().__call__(value))


class SyslogFacility(types.String):
    """A syslog facility as oslo.log spells it (``LOG_USER``, ``LOG_LOCAL0``) or ``local0``."""

    def __call__(self, value: object) -> str:
        text = super().__call__(value)
        logs.syslog_facility(text)
        return text


default_opts = [
    cfg.StrOpt(
        "debug_level",
        default="info",
        choices=_LEVEL_CHOICES,
        mutable=True,
        help="Log level of k2hr3-osnl itself.",
    ),
    cfg.StrOpt(
        "libs_debug_level",
        default="warn",
        choices=_LIBS_LEVEL_CHOICES,
        mutable=True,
        help="Log level of the libraries underneath (oslo.messaging, kombu, amqp, aiohttp).",
    ),
    cfg.StrOpt(
        "log_file",
        default="sys.stderr",
        mutable=True,
        help="Where logs go: 'sys.stderr' or 'sys.stdout' (under systemd, both reach the "
        "journal) or a file path. SIGHUP reopens it, for logrotate.",
    ),
    cfg.Opt(
        "log_format",
        type=LogFormat(type_name="text, json or a format string"),
        default="text",
        mutable=True,
        help="Format of the log lines: 'text' (time, pid, level, logger, message; under "
        "systemd the journal adds time and pid), 'json' (one JSON object per line, with "
        "message_id, event_type, publisher_id, cuk, outcome, attempt and duration when "
        "known), or a Python logging format string such as '%(asctime)s %(levelname)s "
        "%(name)s %(message)s', used as written (k2hr3_osnl 1.0.8's sample carried one).",
    ),
    cfg.StrOpt(
        "log_rotation",
        default="daily",
        choices=[
            ("daily", "rotate log_file at midnight and keep 31 days, as k2hr3_osnl 1.0.8"),
            ("external", "never rotate; reopen log_file when logrotate (or anyone) moves it"),
        ],
        mutable=True,
        help="How log_file is rotated. With workers > 1 only the supervisor rotates.",
    ),
    # oslo.log's own options, as operators carry them over from other services.
    cfg.BoolOpt(
        "use_journal",
        default=False,
        mutable=True,
        help="Log to journald with its native protocol (each line with its priority, and "
        "the notification's fields as MESSAGE_ID, CUK...), as oslo.log does. Under "
        "systemd, log_file = sys.stderr reaches the journal too: with both, one line each.",
    ),
    cfg.BoolOpt(
        "use_syslog",
        default=False,
        mutable=True,
        help="Also log to syslog (/dev/log), as oslo.log does, with syslog_log_facility.",
    ),
    cfg.Opt(
        "syslog_log_facility",
        type=SyslogFacility(type_name="a syslog facility"),
        default="LOG_USER",
        mutable=True,
        help="Syslog facility of use_syslog: LOG_USER, LOG_DAEMON, LOG_LOCAL0...",
    ),
    cfg.StrOpt(
        "log_config_append",
        metavar="PATH",
        mutable=True,
        help="A Python logging configuration file (logging.config.fileConfig), as with "
        "oslo.log: it alone decides handlers and levels, and debug_level, log_file, "
        "use_syslog... are then ignored. Passwords in URLs are masked on every handler "
        "it makes. SIGHUP reads it again.",
    ),
    cfg.IntOpt(
        "workers",
        default=1,
        min=1,
        max=64,
        help="Consumer processes. One process uses about one core at most; N workers, "
        "each with its own broker connection on the same pool queue, drain a backlog "
        "up to N times as fast on N cores. With more than one, a supervisor process "
        "starts them, passes SIGTERM/SIGHUP on and restarts a worker that dies; worker "
        "i > 0 serves metrics on [metrics] port + i. Changing it needs a restart.",
    ),
    cfg.IntOpt(
        "batch_size",
        default=32,
        min=1,
        max=1024,
        help="Notifications taken from RabbitMQ together. Their K2HR3 calls go out at "
        "once, and each is acknowledged when all of the batch are settled (delivered, "
        "found unusable or parked). At most [oslo_messaging_rabbit] "
        "rabbit_qos_prefetch_count. Changing it needs a restart.",
    ),
    cfg.FloatOpt(
        "batch_timeout_seconds",
        default=0.005,
        min=0.001,
        max=1.0,
        help="Longest a batch keeps taking notifications that are already there (a "
        "backlog, a burst) before they are handled. A batch closes as soon as no "
        "other notification is there: a deletion is not held for company. Changing "
        "it needs a restart.",
    ),
]

notification_opts = [
    cfg.StrOpt(
        "event_type",
        default=DEFAULT_EVENT_TYPE,
        help="Regular expression an event_type must match to reach the endpoint.",
    ),
    cfg.StrOpt(
        "publisher_id",
        default=DEFAULT_PUBLISHER_ID,
        help="Regular expression a publisher_id must match to reach the endpoint.",
    ),
    cfg.DictOpt("context", help="Regular expressions the message context must match."),
    cfg.DictOpt("metadata", help="Regular expressions the message metadata must match."),
    cfg.DictOpt("payload", help="Regular expressions the payload must match."),
    cfg.ListOpt(
        "topic",
        default=DEFAULT_TOPICS,
        help="Topics to listen on; a comma-separated list. neutron and legacy nova publish "
        "on 'notifications', versioned nova on 'versioned_notifications'.",
    ),
    cfg.ListOpt(
        "exchange",
        default=DEFAULT_EXCHANGES,
        help="Exchanges to listen on; a comma-separated list. Every exchange is bound "
        "with every topic.",
    ),
    cfg.StrOpt(
        "executor",
        default="threading",
        help="oslo.messaging executor. Only 'threading' is supported; other values are "
        "accepted with a warning and replaced by it.",
    ),
    cfg.StrOpt(
        "pool",
        default="k2hr3_osnl",
        help="Listener pool: the name of this listener's own queue. Listeners with the same "
        "pool share the work; an empty value competes with other consumers on "
        "'<topic>.info'.",
    ),
    cfg.BoolOpt(
        "allow_requeue",
        default=True,
        deprecated_for_removal=True,
        deprecated_reason=_REPLACED_BY_PARKING,
        help="Ignored.",
    ),
]

k2hr3_opts = [
    cfg.StrOpt(
        "api_url",
        default="https://localhost/v1/role",
        help="K2HR3 Role API URL, ending in /v1/role.",
    ),
    cfg.FloatOpt(
        "timeout_seconds",
        mutable=True,
        default=30,
        min=0.1,
        help="Read timeout of a K2HR3 call, in seconds.",
    ),
    cfg.FloatOpt(
        "connect_timeout_seconds",
        mutable=True,
        default=5,
        min=0.1,
        help="Connect timeout of a K2HR3 call, in seconds.",
    ),
    cfg.IntOpt(
        "max_retries",
        default=5,
        min=0,
        deprecated_for_removal=True,
        deprecated_reason="Replaced by retry_budget_seconds: a deletion is retried until "
        "its time budget is spent, then parked. " + _REPLACED_BY_PARKING,
        help="Ignored.",
    ),
    cfg.FloatOpt(
        "retry_interval_seconds",
        mutable=True,
        default=1.0,
        min=0.05,
        help="Longest wait between two attempts while K2HR3 is failing. All workers share "
        "one circuit breaker, so K2HR3 sees about one probe per interval, whatever the "
        "backlog. (k2hr3_osnl 1.0.8 slept this long in each worker; values above 60 are "
        "capped at 60.)",
    ),
    cfg.FloatOpt(
        "retry_budget_seconds",
        mutable=True,
        default=1200,
        min=0,
        help="How long one deletion is retried before it is parked, counted from when "
        "the daemon took it from RabbitMQ. Keep it below RabbitMQ's consumer_timeout "
        "(30 minutes by default).",
    ),
    cfg.BoolOpt(
        "allow_self_signed_cert",
        default=False,
        help="Do not verify K2HR3's TLS certificate. Prefer ca_file.",
    ),
    cfg.StrOpt(
        "ca_file",
        help="CA bundle used to verify K2HR3's TLS certificate (default: the system's "
        "trust store).",
    ),
    cfg.StrOpt("cert_file", help="Client certificate (PEM) presented to K2HR3."),
    cfg.StrOpt("key_file", secret=True, help="Private key of cert_file, if separate."),
    cfg.BoolOpt(
        "requeue_on_error",
        default=False,
        deprecated_for_removal=True,
        deprecated_reason=_REPLACED_BY_PARKING,
        help="Ignored.",
    ),
    cfg.BoolOpt(
        "dry_run",
        default=False,
        help="Log each K2HR3 call instead of making it. A dry run consumes copies of the "
        "notifications on a queue of its own, '<pool>-dry-run', so a live daemon on the "
        "same pool loses nothing; the queue is deleted when the dry run stops cleanly, "
        "and by RabbitMQ an hour after its last consumer otherwise (10,000 copies at most "
        "meanwhile). Its reconciliation keeps a checkpoint of its own. Changing it needs a "
        "restart.",
    ),
    cfg.StrOpt(
        "state_dir",
        default="/var/lib/k2hr3-osnl",
        help="Directory for durable state: parked deletions live in <state_dir>/parked.",
    ),
    cfg.FloatOpt(
        "duplicate_window_seconds",
        mutable=True,
        default=600,
        min=0,
        help="A message_id already delivered within this window is acknowledged without "
        "calling K2HR3 again (0 turns this off).",
    ),
    cfg.FloatOpt(
        "drain_seconds",
        mutable=True,
        default=30,
        min=0,
        help="On SIGTERM, how long in-flight deletions may finish; the rest stay "
        "unacknowledged and RabbitMQ redelivers them.",
    ),
]

metrics_opts = [
    cfg.StrOpt(
        "bind_address",
        default="127.0.0.1",
        help="Address of the HTTP server for /metrics (Prometheus) and /healthz. Loopback "
        "by default, so that nothing is exposed until you choose to. An empty value "
        "turns the server off.",
    ),
    cfg.PortOpt(
        "port",
        default=DEFAULT_METRICS_PORT,
        help="Port of /metrics and /healthz; 0 turns the server off. A port already in "
        "use is logged as a warning, and the daemon consumes anyway.",
    ),
]


reconcile_opts = [
    cfg.BoolOpt(
        "enabled",
        default=False,
        help="Ask Nova for servers deleted since the last pass, at start (covering the "
        "time the daemon was down) and then every interval_seconds, and delete each one "
        "from K2HR3 by cuk like a notification would. Needs [service_credentials]. "
        "Enable it on every gateway node of a pool: with leader_election, one process "
        "of the pool runs the passes at a time (docs/scale-out.md).",
    ),
    cfg.BoolOpt(
        "leader_election",
        default=True,
        help="Run passes only while this process holds the pool's reconciler token on "
        "RabbitMQ (queue <pool>-reconcile), which carries the fleet's checkpoint: every "
        "node and worker of a pool may have reconciliation enabled, one pass runs at a "
        "time, and another takes over within seconds when the holder is lost. False: "
        "this process reconciles alone from its own checkpoint file, as if it were the "
        "only one. A dry run never takes part.",
    ),
    cfg.FloatOpt(
        "interval_seconds",
        default=600,
        min=5,
        help="Seconds between two reconciliation passes (and between two tries while "
        "Keystone or Nova fail).",
    ),
    cfg.FloatOpt(
        "initial_lookback_seconds",
        default=86400,
        min=0,
        help="On the very first start (no checkpoint in state_dir yet, or one that is no "
        "time or later than Nova's clock), how far back to look for deleted servers. What "
        "that first pass finds is deleted but not counted as missed.",
    ),
    cfg.FloatOpt(
        "overlap_seconds",
        default=300,
        min=0,
        help="Each pass asks for changes since its checkpoint minus this much, so that "
        "skew between Nova's API (whose clock a pass goes by) and the hosts that stamp its "
        "database loses nothing.",
    ),
    cfg.IntOpt(
        "page_size",
        default=500,
        min=1,
        max=1000,
        help="Servers asked for per page of GET /servers/detail (Nova caps it at its "
        "own [api] max_limit, 1000 by default).",
    ),
    cfg.BoolOpt(
        "verify_deletions",
        default=False,
        help="Before acting on a notification, ask Nova (instance deletions) or Neutron "
        "(port deletions: does the device still hold those addresses?) whether it is "
        "really gone: one that still exists (a forged or misrouted notification) is not "
        "deleted from K2HR3, and a port deletion without a port id that is a UUID is "
        "refused. At start the account must prove it sees every project. A 401 or 403 "
        "during the run parks the deletion as 'verification unavailable'; what else "
        "happens when Nova or Neutron cannot answer is 'unverified'. Needs "
        "[service_credentials].",
    ),
    cfg.StrOpt(
        "unverified",
        default="send",
        choices=[
            (
                "send",
                "delete it from K2HR3 unverified (removing access is the safe side), "
                'counted in k2hr3_osnl_verifications_total{outcome="unknown"}',
            ),
            ("park", "park it as 'verification unavailable' until verification answers"),
        ],
        help="With verify_deletions: what becomes of a deletion when Keystone, Nova or "
        "Neutron does not answer (5xx, timeout, unreachable).",
    ),
]

credentials_opts = [
    cfg.StrOpt(
        "region_name",
        help="Region of the Nova and Neutron endpoints in the Keystone catalog (default: "
        "the only one).",
    ),
    cfg.StrOpt(
        "interface",
        default="public",
        choices=[
            ("public", "the public endpoints"),
            ("internal", "the internal endpoints"),
            ("admin", "the admin endpoints"),
        ],
        help="Which endpoints of the Keystone catalog to call Nova and Neutron on.",
    ),
]


def register_opts(conf: cfg.ConfigOpts, credentials: bool = True) -> None:
    """Register our options, plus oslo.messaging's own notifier options.

    ``credentials=False`` leaves ``[service_credentials]`` out: its options are
    keystoneauth1's, and importing it costs 6 MB and 60 ms that a daemon without that
    section never needs (:func:`k2hr3_osnl.config.load` registers it when a file has it).

    ``transport_url`` lives in oslo.messaging's ``[oslo_messaging_notifications]`` group,
    so its option object is reused rather than declared again (a second declaration of the
    same name would clash).
    """
    conf.register_opts(default_opts)
    conf.register_opts(seam.notifier_opts(), group=NOTIFICATIONS_GROUP)
    conf.register_opts(notification_opts, group=NOTIFICATIONS_GROUP)
    conf.register_opts(k2hr3_opts, group=K2HR3_GROUP)
    conf.register_opts(metrics_opts, group=METRICS_GROUP)
    conf.register_opts(reconcile_opts, group=RECONCILE_GROUP)
    if credentials:
        register_credentials(conf)


def register_credentials(conf: cfg.ConfigOpts) -> None:
    """keystoneauth1's own auth and session options, plus where to find the endpoints.

    The auth plugin's options (``auth_url``, ``username``, ``password``...) are
    registered by keystoneauth1 when it loads the plugin named by ``auth_type``.
    """
    from keystoneauth1 import loading as ks_loading

    conf.register_opts(credentials_opts, group=CREDENTIALS_GROUP)
    ks_loading.register_session_conf_options(conf, CREDENTIALS_GROUP)
    ks_loading.register_auth_conf_options(conf, CREDENTIALS_GROUP)


def credentials_list(auth_type: str | None = SAMPLE_AUTH_TYPE) -> list[cfg.Opt]:
    """Every option ``[service_credentials]`` may hold with this plugin (for checks)."""
    from keystoneauth1 import loading as ks_loading

    found = [
        *credentials_opts,
        *ks_loading.get_session_conf_options(),
        *ks_loading.get_auth_common_conf_options(),
    ]
    if auth_type:
        found += ks_loading.get_auth_plugin_conf_options(auth_type)
    return found


def list_opts(credentials: bool = True) -> list[tuple[str | None, list[cfg.Opt]]]:
    """Options for oslo-config-generator (entry point ``oslo.config.opts``); without
    ``[service_credentials]`` if ``credentials`` is false (see :func:`register_opts`)."""
    transport_url = copy.deepcopy(
        next(o for o in seam.notifier_opts() if o.name == "transport_url")
    )
    transport_url.help = (
        "The RabbitMQ to listen on, rabbit://user:password@host:port/vhost. Unset, "
        "[DEFAULT] transport_url is used, as oslo.messaging does; one of the two must be set."
    )
    # oslo.messaging's old aliases of it differ by release (14.0.3 still has
    # [DEFAULT] notification_transport_url); the sample must not. oslo.messaging's own
    # option object keeps them, so they still load.
    transport_url.deprecated_opts = []
    return [
        ("DEFAULT", default_opts),
        (NOTIFICATIONS_GROUP, [transport_url, *notification_opts]),
        (K2HR3_GROUP, k2hr3_opts),
        (METRICS_GROUP, metrics_opts),
        (RECONCILE_GROUP, reconcile_opts),
        *([(CREDENTIALS_GROUP, credentials_list())] if credentials else []),
    ]
