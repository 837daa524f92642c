"""End-to-end tests: the local stack with a real Celery worker and beat."""
