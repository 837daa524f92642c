"""Utilities every part uses: settings, time, ids, timestamps, logging, the shared rate budget,
exposure guards and terminal text. Nothing here imports the pipeline, the intake or the workers."""
