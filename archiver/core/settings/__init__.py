"""The settings' declarations, by concern: each field with its type, default, limits and the
description the configuration reference (docs/configuration.md) is generated from. They are put
together, validated and loaded by :class:`archiver.core.config.Settings`."""
