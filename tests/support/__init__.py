"""What the tests stand on: real samples, a K2HR3 stand-in, the broker, the daemon.

- samples: the real OpenStack notifications under tests/samples, and bodies made from them;
- waiting: :func:`~support.waiting.wait_until`, the one way a test waits;
- k2hr3_standin: a real HTTP server that answers like K2HR3's Role API, failing on command;
- broker: looking at and feeding the real RabbitMQ (kombu, rabbitmqctl), a cuttable proxy;
- notifiers: publishing the way nova and neutron do (oslo.messaging's Notifier);
- daemon: an operator's config file, and the real ``k2hr3-osnl`` as a subprocess, ready
  when it tells its notify socket so;
- harness: one test's names, config files, daemons and clean-up on the shared broker;
- notify_socket, tls_certs: systemd's end of the notify protocol; a throw-away PKI.
"""
