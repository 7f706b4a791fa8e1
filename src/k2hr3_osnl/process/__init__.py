"""The daemon as a process: wiring (service), signals, reload, systemd, workers, detaching."""
