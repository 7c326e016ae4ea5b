"""Resources: where outputs live, which torch device runs the generator, the model, Copernicus."""


from pathlib import Path
from typing import Optional

import dagster as dg

from cloudgan_core.storage import asset_dir, default_inbox, default_storage_root


class CloudGANStorage(dg.ConfigurableResource):
    """The storage root (one folder per asset and partition) and the inbox watched for products.

    Defaults: ``$CLOUDGAN_STORAGE`` or ``<repo>/storage``; ``$CLOUDGAN_INBOX`` or
    ``<repo>/userdata/product_store``.
    """

    root: Optional[str] = None
    inbox: Optional[str] = None

    @property
    def root_path(self) -> Path:
        return Path(self.root) if self.root else default_storage_root()

    @property
    def inbox_path(self) -> Path:
        return Path(self.inbox) if self.inbox else default_inbox()

    def path(self, asset: str, partition: str | None = None) -> Path:
        """``<root>/<asset>[/<partition>]``."""
        return asset_dir(self.root_path, asset, partition)
