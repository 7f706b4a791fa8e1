"""Loading and checking the configuration: one ``ConfigOpts`` for the whole process.

oslo.messaging reads its own groups (``[oslo_messaging_rabbit]`` for TLS, heartbeats,
prefetch, quorum queues...) from the same object, so one file configures everything.
"""

from __future__ import annotations

import contextlib
import getpass
import importlib.metadata
import ipaddress
import logging
import os
import pathlib
import re
import socket
import urllib.parse
from collections.abc import Sequence

import oslo_messaging
import oslo_messaging.opts
from oslo_config import cfg

from k2hr3_osnl.config import opts, strict, tls
from k2hr3_osnl.observability import logs
from k2hr3_osnl.openstack import session

LOG = logging.getLogger(__name__)

PROJECT = "k2hr3-osnl"
#: Searched in this order when no --config-file is given; the first is k2hr3_osnl 1.0.8's.
DEFAULT_CONFIG_FILES = ("/etc/k2hr3/k2hr3_osnl.conf", "/etc/k2hr3-osnl/k2hr3-osnl.conf")
#: Unacknowledged messages RabbitMQ may hand us at once. oslo.messaging's default is
#: unlimited, which lets a backlog of 100,000 deletions land in our memory.
DEFAULT_PREFETCH = 128
#: Worker threads, each settling one batch of notifications at a time (the K2HR3 calls of
#: a batch go out together from one event loop, so a thread is not a call in flight).
#: With the default batch_size of 32, four threads hold a full prefetch; the rest serve
#: the small batches of a low rate while some wait on a slow K2HR3. A message that waits
#: for a free thread still settles within retry_budget_seconds of its receipt (the
#: budget counts from then), so before RabbitMQ's consumer_timeout.
DEFAULT_THREADS = 16
RABBIT_GROUP = "oslo_messaging_rabbit"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
#: RabbitMQ's default consumer_timeout, in seconds: an unacknowledged delivery older than
#: this makes the broker close the channel.
RABBIT_CONSUMER_TIMEOUT = 1800
#: Entry-point group of oslo.messaging's transport drivers (rabbit, kafka, fake...).
_DRIVERS = "oslo.messaging.drivers"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, section and option."""


def new_conf(credentials: bool = True) -> cfg.ConfigOpts:
    """Every option registered (``[service_credentials]`` only if ``credentials``)."""
    conf = cfg.ConfigOpts()
    # oslo.messaging's own options first, so that they can be read (and checked) before
    # a transport exists; the driver registers the same ones again later, harmlessly.
    for group, group_opts in oslo_messaging.opts.list_opts():
        conf.register_opts(group_opts, group=group)
    opts.register_opts(conf, credentials=credentials)
    conf.set_default("rabbit_qos_prefetch_count", DEFAULT_PREFETCH, group=RABBIT_GROUP)
    conf.set_default("executor_thread_pool_size", DEFAULT_THREADS)
    return conf


def load(config_files: Sequence[str] = (), config_dirs: Sequence[str] = ()) -> cfg.ConfigOpts:
    """Parse the given files (or the default ones) and check every value."""
    args: list[str] = []
    for path in config_files:
        _check_readable(path)
        args += ["--config-file", path]
    for path in config_dirs:
        if not os.path.isdir(path):
            raise ConfigError(f"{path}: not a directory")
        args += ["--config-dir", path]
    defaults = [] if args else [p for p in DEFAULT_CONFIG_FILES if os.path.exists(p)]
    if not args and not defaults:
        # Built-in defaults alone would consume as guest on the local broker's default
        # vhost: never what an operator meant, and nothing would say so.
        raise ConfigError(
            f"no configuration file: neither {' nor '.join(DEFAULT_CONFIG_FILES)} exists; "
            "give one with -c FILE"
        )
    for path in [*config_files, *defaults, *_dir_files(config_dirs)]:
        _check_utf8(path)
    conf = new_conf(credentials=False)
    try:
        conf(
            args=args,
            project=PROJECT,
            default_config_files=defaults,
            use_env=False,
            validate_default_values=True,
        )
        # keystoneauth1's options only for a file that has the section (see
        # opts.register_opts); oslo.config reads values when asked, so this is in time.
        if opts.CREDENTIALS_GROUP in conf.list_all_sections():
            opts.register_credentials(conf)
    except cfg.ConfigFilesNotFoundError as error:
        raise ConfigError(f"cannot read {', '.join(error.config_files)}") from None
    except cfg.ConfigFileParseError as error:
        raise ConfigError(f"{error.config_file}: {error.msg}") from None
    except cfg.Error as error:
        raise ConfigError(str(error)) from None
    except UnicodeDecodeError as error:  # a file that changed since _check_utf8
        raise ConfigError(f"not UTF-8: {error}") from None
    _resolve_transport_url(conf)
    return conf


def _resolve_transport_url(conf: cfg.ConfigOpts) -> None:
    """``[oslo_messaging_notifications] transport_url``, else ``[DEFAULT]``'s, as in oslo.messaging.

    OpenStack services keep the broker in ``[DEFAULT] transport_url``; everything of ours
    reads the notifications group, so the fallback is made there, once.
    """
    n = conf.oslo_messaging_notifications
    try:
        # oslo.messaging's own default for [DEFAULT] is 'rabbit://': guest on localhost,
        # which nobody configured. Only a value from a file counts.
        given = conf.get_location("transport_url").location != cfg.Locations.opt_default
        if n.transport_url is None and given:
            conf.set_override("transport_url", conf.transport_url, group=opts.NOTIFICATIONS_GROUP)
    except (cfg.ConfigFileValueError, ValueError):
        pass  # problems() names the bad value


def problems(conf: cfg.ConfigOpts) -> list[str]:
    """Every value that cannot work, as ``[section] option: what is wrong``.

    Unknown sections and options (misspellings) are problems too: see
    :mod:`k2hr3_osnl.config.strict` for why they are fatal at daemon start.
    """
    found: list[str] = findings(conf).problems
    bad_values: list[str] = []
    # [service_credentials]: keystoneauth1 registers and reads them (_credentials_problems).
    for group, group_opts in [*opts.list_opts(credentials=False), (RABBIT_GROUP, _rabbit_opts())]:
        section = conf if group == "DEFAULT" else conf[group]
        for opt in group_opts:
            try:
                getattr(section, opt.dest)
            except (cfg.ConfigFileValueError, ValueError) as error:
                bad_values.append(f"[{group}] {opt.name}: {value_error(error)}")
    if bad_values:
        return found + bad_values  # the checks below read these values

    n = conf.oslo_messaging_notifications
    for name in ("event_type", "publisher_id"):
        found += _regex_problems(n.get(name), f"[{opts.NOTIFICATIONS_GROUP}] {name}")
    for name in ("context", "metadata", "payload"):
        for key, value in (n.get(name) or {}).items():
            found += _regex_problems(value, f"[{opts.NOTIFICATIONS_GROUP}] {name}.{key}")
    for name in ("exchange", "topic"):
        values = n.get(name)
        if not values:
            found.append(f"[{opts.NOTIFICATIONS_GROUP}] {name}: must name at least one")
        for value in values or ():
            if not _NAME.match(value):
                found.append(f"[{opts.NOTIFICATIONS_GROUP}] {name}: {value!r} is not a valid name")
    if n.pool and not _NAME.match(n.pool):
        found.append(f"[{opts.NOTIFICATIONS_GROUP}] pool: {n.pool!r} is not a valid name")
    found += _transport_problems(conf)

    k = conf.k2hr3
    url = urllib.parse.urlsplit(k.api_url or "")
    shown = logs.mask(k.api_url or "")  # a user and password in it are not printed
    if url.scheme not in ("http", "https") or not url.hostname:
        found.append(f"[{opts.K2HR3_GROUP}] api_url: {shown!r} is not an http(s) URL")
    elif not _port_ok(url):
        found.append(f"[{opts.K2HR3_GROUP}] api_url: {shown!r} has no valid port (1-65535)")
    elif not url.path.rstrip("/").endswith("/v1/role"):
        found.append(f"[{opts.K2HR3_GROUP}] api_url: {shown!r} does not end in /v1/role")
    for name in ("ca_file", "cert_file", "key_file"):
        path = k.get(name)
        if path and not os.access(path, os.R_OK):
            found.append(f"[{opts.K2HR3_GROUP}] {name}: {path} is not readable")
    if k.key_file and not k.cert_file:
        found.append(f"[{opts.K2HR3_GROUP}] key_file: set, but cert_file is not")
    elif not any(f.startswith(f"[{opts.K2HR3_GROUP}] ") for f in found):
        found += tls.problems(opts.K2HR3_GROUP, k.ca_file, k.cert_file, k.key_file)
    found += _state_dir_problems(k.state_dir)

    r = conf[RABBIT_GROUP]
    if r.ssl:
        if r.ssl_key_file and not r.ssl_cert_file:
            found.append(f"[{RABBIT_GROUP}] ssl_key_file: set, but ssl_cert_file is not")
        else:
            found += tls.problems(
                RABBIT_GROUP,
                r.ssl_ca_file,
                r.ssl_cert_file,
                r.ssl_key_file,
                names=("ssl_ca_file", "ssl_cert_file", "ssl_key_file"),
            )
        versions = tls.ssl_versions()
        if r.ssl_version and versions and r.ssl_version.lower() not in versions:
            found.append(
                f"[{RABBIT_GROUP}] ssl_version: {r.ssl_version!r} is not one of "
                f"{', '.join(sorted(versions))} (leave it empty for the best available)"
            )

    if r.rabbit_login_method == "EXTERNAL" and not (r.ssl and r.ssl_cert_file):
        # EXTERNAL is the client certificate: without one RabbitMQ refuses every login.
        found.append(
            f"[{RABBIT_GROUP}] rabbit_login_method: EXTERNAL logs in with the client "
            "certificate: set ssl = true and ssl_cert_file (docs/mosk.md)"
        )
    found += _credentials_problems(conf)

    m = conf[opts.METRICS_GROUP]
    if m.bind_address and m.port:
        try:
            socket.getaddrinfo(m.bind_address, m.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            # A malformed name ('10.0.0..1') fails in the idna codec, not in the resolver.
            why = getattr(error, "strerror", None) or "not a valid host name or address"
            found.append(
                f"[{opts.METRICS_GROUP}] bind_address: {m.bind_address!r} is not an "
                f"address to listen on ({why})"
            )
    return found


def _transport_problems(conf: cfg.ConfigOpts) -> list[str]:
    """The broker's URL: set (here or in [DEFAULT]), parsable, of a known driver."""
    n = conf.oslo_messaging_notifications
    if not n.transport_url:
        return [
            f"[{opts.NOTIFICATIONS_GROUP}] transport_url: not set, nor [DEFAULT] "
            "transport_url: set one to rabbit://user:password@host:port/vhost"
        ]
    found: list[str] = []
    try:
        transport = oslo_messaging.TransportURL.parse(conf, n.transport_url).transport
    except (oslo_messaging.InvalidTransportURL, ValueError) as error:
        # A bad port or IPv6 literal raises ValueError. The message would echo the URL,
        # password included.
        found.append(
            f"[{opts.NOTIFICATIONS_GROUP}] transport_url: invalid "
            f"({type(error).__name__}); expected rabbit://user:pass@host:port/vhost"
            + _bracket_hint(n.transport_url)
        )
    else:
        drivers = {e.name for e in importlib.metadata.entry_points(group=_DRIVERS)}
        if transport not in drivers:
            found.append(
                f"[{opts.NOTIFICATIONS_GROUP}] transport_url: unknown driver {transport!r}; "
                f"expected one of {', '.join(sorted(drivers))} (rabbit://user:pass@host:port/)"
            )
    return found


def findings(conf: cfg.ConfigOpts) -> strict.Findings:
    """Unknown sections and options in the files ``conf`` was read from."""
    credentials = opts.CREDENTIALS_GROUP in conf
    lists = [*oslo_messaging.opts.list_opts(), *opts.list_opts(credentials=credentials)]
    auth_type = conf[opts.CREDENTIALS_GROUP].auth_type if credentials else None
    if auth_type:
        # The options of the plugin actually named, not the sample's password plugin.
        # An unknown plugin raises: _credentials_problems says so.
        with contextlib.suppress(Exception):
            lists.append((opts.CREDENTIALS_GROUP, opts.credentials_list(auth_type)))
    known = strict.known_options(conf, lists)
    return strict.check_files(strict.files_of(conf), known, opts.IGNORED_1_0_8)


def _credentials_problems(conf: cfg.ConfigOpts) -> list[str]:
    """``[service_credentials]`` loads, and is there if reconciliation needs it."""
    r = conf[opts.RECONCILE_GROUP]
    if not session.configured(conf):
        return [
            f"[{opts.RECONCILE_GROUP}] {name}: true, but [{opts.CREDENTIALS_GROUP}] "
            "auth_type is not set (Nova and Neutron need an account)"
            for name in ("enabled", "verify_deletions")
            if r[name]
        ]
    # The values first: keystoneauth1 reads them only as it connects, and raises.
    found = _credential_values(conf) or session.check(conf)
    # The plugin's options (auth_url...) exist once session.check has loaded it.
    return found or _credential_values(conf)


def _credential_values(conf: cfg.ConfigOpts) -> list[str]:
    """keystoneauth1 reads these only when it connects: a bad one would be a traceback."""
    c = conf[opts.CREDENTIALS_GROUP]
    try:
        names = [o.dest for o in opts.credentials_list(c.auth_type)]
    except Exception:  # an unknown auth_type: session.check says so
        return []
    found: list[str] = []
    for name in names:
        try:
            value = getattr(c, name)
        except cfg.NoSuchOptError:
            continue  # the plugin's own options are registered when it is loaded
        except (cfg.ConfigFileValueError, ValueError) as error:
            found.append(f"[{opts.CREDENTIALS_GROUP}] {name}: {value_error(error)}")
            continue
        if name == "auth_url" and value:
            url = urllib.parse.urlsplit(value)
            if url.scheme not in ("http", "https") or not url.hostname:
                shown = logs.mask(value)
                found.append(
                    f"[{opts.CREDENTIALS_GROUP}] auth_url: {shown!r} is not an http(s) URL "
                    "(Keystone's, such as https://keystone.example.com:5000/v3)"
                )
    return found


def warnings(conf: cfg.ConfigOpts) -> list[str]:
    """What works, but probably not as the operator meant; assumes no :func:`problems`."""
    found = findings(conf).warnings
    executor = conf.oslo_messaging_notifications.executor
    if executor != "threading":
        found.append(
            f"[{opts.NOTIFICATIONS_GROUP}] executor: {executor} is not supported; using 'threading'"
        )
    k = conf.k2hr3
    if k.allow_self_signed_cert:
        found.append(
            f"[{opts.K2HR3_GROUP}] allow_self_signed_cert: true, so K2HR3's certificate "
            "is not verified; prefer ca_file"
        )
    url = urllib.parse.urlsplit(k.api_url or "")
    plain = url.scheme == "http"
    if plain and not _loopback(url.hostname):
        found.append(
            f"[{opts.K2HR3_GROUP}] api_url: http:// over the network: anyone on the path "
            "can read the calls, and forge K2HR3's answers; use https://"
        )
    if plain and (k.ca_file or k.cert_file):
        found.append(f"[{opts.K2HR3_GROUP}] ca_file, cert_file: unused, api_url is http://")
    found += _state_dir_warnings(k.state_dir)
    if k.retry_budget_seconds >= RABBIT_CONSUMER_TIMEOUT:
        found.append(
            f"[{opts.K2HR3_GROUP}] retry_budget_seconds: {k.retry_budget_seconds:g} is not "
            "below RabbitMQ's default consumer_timeout (1800 s): the broker may close "
            "the channel under a deletion that is still being retried"
        )
    r = conf[RABBIT_GROUP]
    if not r.ssl:
        unused = [n for n in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file") if r.get(n)]
        if unused:
            # Meant TLS, got plain AMQP (with the password) if the broker accepts it.
            found.append(
                f"[{RABBIT_GROUP}] {', '.join(unused)}: ignored because ssl = false; "
                "set ssl = true to connect over TLS"
            )
    elif r.ssl_version and not r.ssl_ca_file:
        found.append(
            f"[{RABBIT_GROUP}] ssl_version: set without ssl_ca_file, so RabbitMQ's "
            "certificate is not verified; set ssl_ca_file"
        )
    if r.rabbit_qos_prefetch_count == 0:
        found.append(
            f"[{RABBIT_GROUP}] rabbit_qos_prefetch_count: 0 is unlimited: a backlog "
            "lands in memory instead of waiting in RabbitMQ"
        )
    if not session.configured(conf):
        return found
    c = conf[opts.CREDENTIALS_GROUP]
    rc = conf[opts.RECONCILE_GROUP]
    if not (rc.enabled or rc.verify_deletions):
        found.append(
            f"[{opts.CREDENTIALS_GROUP}]: set, but neither [{opts.RECONCILE_GROUP}] enabled "
            "nor verify_deletions is true, so nothing uses it"
        )
    if c.insecure:
        found.append(
            f"[{opts.CREDENTIALS_GROUP}] insecure: true, so Keystone's, Nova's and Neutron's "
            "certificates are not verified; prefer cafile"
        )
    return found


def check(conf: cfg.ConfigOpts) -> None:
    """Raise :class:`ConfigError` listing every problem; warn about ignored values."""
    found = problems(conf)
    if found:
        # One line: one journal entry, one line on the terminal, whatever the count.
        raise ConfigError("invalid configuration: " + "; ".join(found))
    for warning in warnings(conf):
        LOG.warning("%s", warning)


def _bracket_hint(url: str) -> str:
    """Why a list of hosts with an IPv6 address can be refused by one Python and not another.

    Debian 12's Python 3.11.2 checks one bracketed host only, the one after the last ``@``
    (the first host when there is no user), and refuses the URL for any other.
    """
    netloc = url.partition("://")[2].partition("/")[0]
    if "[" not in netloc or "," not in netloc or netloc.rpartition("@")[2].startswith("["):
        return ""
    return (
        "; this Python takes a list of hosts with an IPv6 address only when one comes last "
        "(first without a user): put one there, oslo.messaging shuffles the hosts anyway"
    )


def value_error(error: Exception) -> str:
    """oslo.config's message without its ``LocationInfo(...)`` repr: the reason, the file."""
    match = re.match(
        r"Value for option \S+ from LocationInfo\(.*?detail='(.*?)'\) is not valid: (.*)",
        str(error),
        re.S,
    )
    return f"{match.group(2)} (in {match.group(1)})" if match else str(error)


def _existing(path: pathlib.Path) -> pathlib.Path:
    """``path``, or the nearest parent that exists (the daemon creates the rest)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _state_dir_problems(state_dir: str) -> list[str]:
    where = _existing(pathlib.Path(state_dir))
    if not where.is_dir():
        return [
            f"[{opts.K2HR3_GROUP}] state_dir: {where} is not a directory: deletions that "
            "must be parked cannot be"
        ]
    return []


def _state_dir_warnings(state_dir: str) -> list[str]:
    """Writable by whoever runs this: the daemon's user when it starts, and the
    operator's when --check-config runs as another user (the line names who).

    Only a state_dir that exists: one that does not is created at start (by the daemon,
    or by systemd's StateDirectory=, which no user outside the unit can foresee).
    """
    where = pathlib.Path(state_dir)
    if where.is_dir() and not os.access(where, os.W_OK | os.X_OK):
        user = getpass.getuser()
        return [
            f"[{opts.K2HR3_GROUP}] state_dir: {where} is not writable for user {user}: "
            "a daemon running as this user cannot park deletions"
        ]
    return []


def _loopback(host: str | None) -> bool:
    """This host: no network between us and K2HR3 to read or forge the calls."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _port_ok(url: urllib.parse.SplitResult) -> bool:
    try:
        return url.port != 0  # None: the scheme's own port
    except ValueError:  # out of range, or not a number
        return False


def _regex_problems(pattern: str | None, where: str) -> list[str]:
    if pattern is None:
        return []
    try:
        re.compile(pattern)
    except re.error as error:
        return [f"{where}: {pattern!r} is not a regular expression ({error})"]
    return []


def _dir_files(config_dirs: Sequence[str]) -> list[str]:
    """The files oslo.config reads from each --config-dir."""
    return [str(p) for d in config_dirs for p in sorted(pathlib.Path(d).glob("*.conf"))]


def _check_utf8(path: str) -> None:
    """oslo.config reads files as UTF-8 and raises a bare UnicodeDecodeError otherwise."""
    try:
        data = pathlib.Path(path).read_bytes()
    except OSError:
        return  # oslo.config says it, in its words
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{path}: line {line}: byte 0x{data[error.start]:02x} is not UTF-8; "
            "save the file as UTF-8"
        ) from None


def _check_readable(path: str) -> None:
    if not os.path.exists(path):
        raise ConfigError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{path}: permission denied")


def _rabbit_opts() -> list[cfg.Opt]:
    return next(o for g, o in oslo_messaging.opts.list_opts() if g == RABBIT_GROUP)
