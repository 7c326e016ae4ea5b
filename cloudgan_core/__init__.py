"""CloudGAN core library: SLSTR products to cloud masks, tiles, synthetic clouds and training sets.

Plain Python (NumPy, xarray, PyTorch); no Dagster import anywhere in this package.
"""

__version__ = "0.1.0"
