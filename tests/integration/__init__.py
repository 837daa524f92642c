"""Integration tests: real PostgreSQL, Redis, an S3 server process and the simulator over HTTP; no worker."""
