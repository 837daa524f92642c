"""What operators run and watch: status, operator commands (dead letters, deletion audit,
reconciliation), the pipeline's Prometheus metrics."""
