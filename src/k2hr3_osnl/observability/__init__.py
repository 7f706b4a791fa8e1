"""What the daemon shows of itself: logs, Prometheus metrics, /healthz."""
