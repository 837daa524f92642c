"""What the tests stand on: the stack's helpers, a webhook receiver, the S3 fault proxy, private services, the OpenAPI check."""
