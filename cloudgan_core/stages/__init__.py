"""The pipeline's stages: one module per Dagster asset, named as the asset.

- :mod:`~cloudgan_core.stages.products`: a verified copy of a product's files
- :mod:`~cloudgan_core.stages.masks`: cloud mask and per-pixel flags (and their plausibility)
- :mod:`~cloudgan_core.stages.false_color`: the nine bands (reflectance, brightness temperature) and the false-colour image
- :mod:`~cloudgan_core.stages.tiles`: the scene cut into tiles (and the tile file format)
- :mod:`~cloudgan_core.stages.sorted_tiles`: tiles sorted into cover bins, surface and generator inputs
- ``synthetic_clouds``, ``surface_tiles``, ``composites``, ``training_set``, ``quality_report``,
  ``train_generator``: the cross-product stages, one module each

Each has ``build(root, key, config, ...)`` returning a typed result (figures and a preview, see
:mod:`~cloudgan_core.stages.base`), and the only ``read``/``write`` that know its files under
``<root>/<asset>/<partition>/``. The Dagster assets call ``build``; so can a notebook or a script.
"""
