"""Resources: where outputs live, which torch device runs the generator, the model, Copernicus."""


from pathlib import Path
from typing import Optional

from pydantic import PrivateAttr

import dagster as dg

from cloudgan_core.cdse.discovery import DiscoveryConfig
from cloudgan_core.cdse.http import DEFAULT_MIN_RATE, DEFAULT_REQUEST_DEADLINE, DEFAULT_STALL_SECONDS
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

    def run_config(self) -> dict:
        """Run config that pins this storage's root and inbox into a run as absolute paths, resolved
        here (where the run is launched). Every step of the run, in whichever worker process or
        machine it runs, then reads and writes the same folders instead of resolving
        ``$CLOUDGAN_STORAGE``/``./storage`` on its own."""
        return {"resources": {"storage": {"config": {"root": str(self.root_path.resolve()),
                                                     "inbox": str(self.inbox_path.resolve())}}}}


class CopernicusResource(dg.ConfigurableResource):
    """The Copernicus Data Space client: catalogue search and authenticated downloads.

    Credentials come from the fields (wired to ``EnvVar("CDSE_USERNAME")`` etc. in the definitions
    when those variables are set) or, when empty, from the environment at the time of use. The
    endpoint fields override ``CDSE_TOKEN_URL`` / ``CDSE_CATALOGUE_URL`` / ``CDSE_DOWNLOAD_URL``,
    which override the public CDSE endpoints.

    ``min_rate`` (bytes/s) and ``stall_seconds``: a download fails when fewer than ``min_rate``
    bytes/s arrive over ``stall_seconds`` s, or nothing for ``stall_seconds / 2`` s (defaults
    10000 bytes/s over 60 s: a stalled download fails within 90 s). ``request_deadline``: longest
    time in seconds for one download request (default 3600).
    """

    username: Optional[str] = None
    password: Optional[str] = None
    totp: Optional[str] = None
    token_url: Optional[str] = None
    catalogue_url: Optional[str] = None
    download_url: Optional[str] = None
    download_mode: str = "files"
    max_connections: int = 4
    min_rate: float = DEFAULT_MIN_RATE
    stall_seconds: float = DEFAULT_STALL_SECONDS
    request_deadline: float = DEFAULT_REQUEST_DEADLINE

    def endpoints(self):
        from cloudgan_core.cdse import CdseEndpoints

        return CdseEndpoints.from_env(token_url=self.token_url or None, catalogue_url=self.catalogue_url or None,
                                      download_url=self.download_url or None)

    def credentials(self):
        from cloudgan_core.cdse import CdseCredentials

        if self.username and self.password:
            return CdseCredentials(self.username, self.password, self.totp or None)
        return CdseCredentials.from_env()

    def find(self, name: str, log=None):
        """Catalogue entry of exactly this product (name with or without ``.SEN3``; validated)."""
        from cloudgan_core.cdse import find_product_by_name

        return find_product_by_name(name, self.endpoints(), log=log)

    def search(self, query, log=None):
        """Catalogue search (no account needed)."""
        from cloudgan_core.cdse import search_products

        return search_products(query, self.endpoints(), log=log)

    def download(self, name: str, dest_dir: Path, log=None) -> Path:
        """Find a product by name and download it into ``dest_dir``; returns the ``.SEN3``/``.zip`` path."""
        from cloudgan_core.cdse import TokenManager, download_product

        endpoints = self.endpoints()
        info = self.find(name, log=log)
        tokens = TokenManager(endpoints, self.credentials(), log=log)
        return download_product(info, dest_dir, endpoints=endpoints, tokens=tokens, mode=self.download_mode,
                                max_connections=self.max_connections, log=log, min_rate=self.min_rate,
                                stall_seconds=self.stall_seconds, request_deadline=self.request_deadline)


class DiscoverySettings(dg.ConfigurableResource, DiscoveryConfig):
    """What the discovery sensor, schedule and job search for (see the README's search config table)."""


class TorchDevice(dg.ConfigurableResource):
    """Where and how the generator runs. Injected into ``synthetic_clouds`` and ``train_generator``.

    ``device``: auto | cpu | cuda | cuda:N. ``precision``: fp32 | bf16 | fp16 (fp16 on GPUs only).
    ``batch_size``: tiles per pass (halved automatically on a GPU out-of-memory); None picks
    :func:`cloudgan_core.gan.devices.default_batch_size` (16 on a GPU; on the CPU 1 in bf16, 2 in
    fp32). ``num_threads``: CPU threads for torch (None: torch's default).
    """

    device: str = "auto"
    batch_size: Optional[int] = None
    precision: str = "fp32"
    num_threads: Optional[int] = None

    def effective_batch_size(self) -> int:
        """``batch_size``, or the default for the resolved device."""
        if self.batch_size:
            return self.batch_size
        from cloudgan_core.gan.devices import default_batch_size, resolve_device

        return default_batch_size(resolve_device(self.device), self.precision)


class GeneratorModel(dg.ConfigurableResource):
    """The mask → cloud generator (G_B), loaded once per run.

    ``checkpoint``: a reference-format ``latest_net_G_B.pth``; None uses the bundled default
    model in ``data/models/``.
    """

    checkpoint: Optional[str] = None
    _model = PrivateAttr(default=None)
    _sha256 = PrivateAttr(default="")

    @property
    def path(self) -> Path:
        from cloudgan_core.storage import PROJECT_DIR

        return Path(self.checkpoint) if self.checkpoint else PROJECT_DIR / "data" / "models" / "latest_net_G_B.pth"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from cloudgan_core.digests import file_digest
        from cloudgan_core.gan import load_generator

        self._model = load_generator(self.path, "cpu")
        self._sha256 = file_digest(self.path)

    @property
    def model(self):
        if self._model is None:  # used outside a run (e.g. from a notebook)
            self.setup_for_execution(None)  # type: ignore[arg-type]
        return self._model

    @property
    def sha256(self) -> str:
        self.model
        return self._sha256
