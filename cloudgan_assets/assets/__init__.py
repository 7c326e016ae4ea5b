"""Asset groups: ingest, scenes, tiles, clouds, dataset."""
