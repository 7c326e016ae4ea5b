"""Dagster definitions for CloudGAN: assets, partitions, resources, sensors, schedules, checks.

Thin by design: every asset calls a plain function of :mod:`cloudgan_core`.
"""
