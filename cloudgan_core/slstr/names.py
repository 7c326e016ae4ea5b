"""Sentinel-3 SLSTR Level-1 RBT product names: the one validator every name passes before it is used.

A product name comes from a catalogue, a folder, a user or the Dagster UI, and it becomes a
partition key and a folder name. :func:`validate_product_id` accepts only the SL_1_RBT naming
convention (Sentinel-3 PDGS File Naming Convention)::

    S3A_SL_1_RBT____20170315T113420_20170315T113720_20170315T135348_0179_015_237_1439_SVL_O_NR_002
    MMM_SL_1_RBT___ _start__________ _stop___________ _creation_______ _instance________ _centre_class_timeliness_baseline

so a name can never hold a path separator, ``..``, a comma or a placeholder like ``...``.
"""

from __future__ import annotations

import re

from cloudgan_core.errors import CloudGANError

PRODUCT_TYPE = "SL_1_RBT___"
_TIME = r"\d{8}T\d{6}"
#: The SL_1_RBT naming convention, without ``.SEN3``/``.zip``.
PRODUCT_ID_PATTERN = (rf"S3[A-D_]_{PRODUCT_TYPE}_{_TIME}_{_TIME}_{_TIME}_[0-9_]{{17}}_[A-Z0-9_]{{3}}_[A-Z_]_"
                      r"(?:NR|ST|NT|__)_[A-Z0-9_]{3}")
_PRODUCT_ID = re.compile(rf"^{PRODUCT_ID_PATTERN}$")
#: What a user is shown when a name does not fit.
PRODUCT_ID_EXAMPLE = "S3A_SL_1_RBT____20170315T113420_20170315T113720_20170315T135348_0179_015_237_1439_SVL_O_NR_002"


class ProductNameError(CloudGANError, ValueError):
    """A name that is not a Sentinel-3 SLSTR Level-1 RBT product name."""

    def __init__(self, name: object, where: str = "") -> None:
        shown = repr(name) if len(repr(name)) <= 200 else repr(name)[:200] + "..."
        origin = f" ({where})" if where else ""
        super().__init__(f"{shown}{origin} is not an SL_1_RBT product name; expected the Sentinel-3 naming "
                         f"convention, e.g. {PRODUCT_ID_EXAMPLE} (optionally with .SEN3 or .zip)")
        self.name = name


def product_id(name: str) -> str:
    """The product name without ``.SEN3`` / ``.zip`` (the Dagster partition key); not validated."""
    for suffix in (".zip", ".SEN3"):
        name = name.removesuffix(suffix)
    return name


def is_product_id(name: object) -> bool:
    """Whether ``name`` is a bare SL_1_RBT product name (no suffix)."""
    return isinstance(name, str) and _PRODUCT_ID.fullmatch(name) is not None


def validate_product_id(name: object, where: str = "") -> str:
    """``name`` without ``.SEN3``/``.zip`` when it is an SL_1_RBT product name, else :class:`ProductNameError`.

    Parameters
    ----------
    name
        A product name, with or without ``.SEN3`` or ``.zip``.
    where
        Where the name came from (``"catalogue answer"``, ``"inbox"``, ...), for the message.
    """
    if not isinstance(name, str):
        raise ProductNameError(name, where)
    key = product_id(name)
    if not is_product_id(key):
        raise ProductNameError(name, where)
    return key
