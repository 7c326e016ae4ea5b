"""Partitions: one per Sentinel-3 product, keyed by the product name without ``.SEN3``."""

import dagster as dg

products_partitions = dg.DynamicPartitionsDefinition(name="products")
