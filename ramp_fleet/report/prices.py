"""Hourly on-demand prices of EC2 instance types, for the report's cost estimate.

The AWS Price List API (``pricing:GetProducts``) is asked once per
(instance type, region); its answer is cached on disk in
``$XDG_CACHE_HOME/ramp-fleet/aws-prices/<region>/<instance type>.json``
(``~/.cache/...`` by default): prices are the same for every event, and they
change rarely, so a cached price is used for ``MAX_AGE`` seconds and, when the
API does not answer, even older. When there is no answer and no cache (no
credentials, no network, an error), ``worker.hourly_price`` is used. Every
price carries its source, which the report shows.

Spot instance-hours are priced at the on-demand rate: an upper bound. Spot
prices vary by zone and by hour; an exact figure would need the spot price
history of each instance's zone over its lifetime, which the report does not
fetch.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger("ramp_fleet.report")

#: How long a cached price is used without asking the API again (30 days).
MAX_AGE = 30 * 24 * 3600.0
#: The Price List API answers in a few regions only; us-east-1 lists every region's prices.
PRICING_REGION = "us-east-1"
API_SOURCE = "AWS Price List API"
CONFIG_SOURCE = "worker.hourly_price"
NO_SOURCE = "none (set worker.hourly_price)"
SPOT_NOTE = (
    "spot instance-hours are priced at the on-demand rate: an upper bound, "
    "as spot prices vary by zone and hour"
)
#: Instance types and regions as AWS spells them; anything else is never a file name.
_SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}$")


@dataclass(frozen=True)
class HourlyPrice:
    """USD per instance-hour of one instance type in one region, and where it came from."""

    instance_type: str
    region: str | None
    usd: float | None
    source: str


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ramp-fleet" / "aws-prices"


def pricing_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    """The filters that select the one on-demand Linux, shared-tenancy price."""
    terms = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in terms.items()]


def on_demand_usd(price_list: Iterable[str | dict[str, Any]]) -> float | None:
    """The first positive hourly USD price of the OnDemand terms of a GetProducts answer."""
    for item in price_list:
        product = json.loads(item) if isinstance(item, str) else item
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                if dimension.get("unit") not in (None, "Hrs"):
                    continue
                usd = float(dimension.get("pricePerUnit", {}).get("USD", 0) or 0)
                if usd > 0:
                    return usd
    return None


class PriceList:
    """On-demand prices from the AWS Price List API, through an on-disk cache.

    ``client_factory`` makes the ``pricing`` client the first time the API is
    needed (none is made when every price is cached or no AWS machine ran).
    """

    def __init__(
        self,
        client_factory: Callable[[], Any] | None,
        cache_dir: Path | None = None,
        *,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.time,
    ):
        self._client_factory = client_factory
        self._client: Any = None
        self._unavailable = False
        self.cache_dir = cache_dir or default_cache_dir()
        self.max_age = max_age
        self._clock = clock

    def price(self, instance_type: str, region: str | None, fallback: float | None) -> HourlyPrice:
        """The best price known: fresh cache, API, stale cache, then ``fallback``."""
        cached = self._read_cache(instance_type, region) if region else None
        if cached is not None and self._clock() - cached[1] <= self.max_age:
            return HourlyPrice(instance_type, region, cached[0], _cached_source(cached[1]))
        usd = self._ask_api(instance_type, region) if region else None
        if usd is not None and region:
            self._write_cache(instance_type, region, usd)
            return HourlyPrice(instance_type, region, usd, API_SOURCE)
        if cached is not None:
            return HourlyPrice(instance_type, region, cached[0], _cached_source(cached[1]))
        if fallback is not None:
            return HourlyPrice(instance_type, region, fallback, CONFIG_SOURCE)
        return HourlyPrice(instance_type, region, None, NO_SOURCE)

    def _ask_api(self, instance_type: str, region: str) -> float | None:
        if self._unavailable:
            return None
        try:
            if self._client is None:
                if self._client_factory is None:
                    return None
                self._client = self._client_factory()
            answer = self._client.get_products(
                ServiceCode="AmazonEC2", Filters=pricing_filters(instance_type, region),
                FormatVersion="aws_v1", MaxResults=10,
            )
        except Exception as exc:  # no credentials, no network, a bad profile, throttling...
            # Not asked again for the other instance types: an offline report must not wait N times.
            self._unavailable = True
            logger.warning("AWS Price List API unavailable, asked for %s in %s (%s)",
                           instance_type, region, exc)
            return None
        try:
            usd = on_demand_usd(answer.get("PriceList", []))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("AWS Price List API: unreadable answer for %s in %s (%s)",
                           instance_type, region, exc)
            return None
        if usd is None:
            logger.warning("AWS Price List API lists no on-demand Linux price for %s in %s",
                           instance_type, region)
        return usd

    def _cache_file(self, instance_type: str, region: str) -> Path | None:
        if not (_SAFE_NAME.match(instance_type) and _SAFE_NAME.match(region)):
            return None
        return self.cache_dir / region / f"{instance_type}.json"

    def _read_cache(self, instance_type: str, region: str) -> tuple[float, float] | None:
        path = self._cache_file(instance_type, region)
        try:
            data = json.loads(path.read_text()) if path else None
            return (float(data["usd_per_hour"]), float(data["fetched_at"])) if data else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_cache(self, instance_type: str, region: str, usd: float) -> None:
        path = self._cache_file(instance_type, region)
        if path is None:
            return
        record = {"instance_type": instance_type, "region": region, "usd_per_hour": usd,
                  "fetched_at": self._clock(), "source": API_SOURCE}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
                json.dump(record, tmp)
            os.replace(tmp.name, path)
        except OSError as exc:
            logger.warning("could not cache the price of %s in %s: %s", instance_type, path, exc)


def _cached_source(fetched_at: float) -> str:
    day = datetime.fromtimestamp(fetched_at, UTC).date().isoformat()
    return f"{API_SOURCE} (cached {day})"


def pricing_client_factory(session_factory: Callable[[], Any]) -> Callable[[], Any]:
    """Make the ``pricing`` client from a boto3 session, with short waits (a report must not hang)."""

    def make() -> Any:
        session = session_factory()  # first: it says when the aws extra is missing
        import botocore.config

        config = botocore.config.Config(connect_timeout=5, read_timeout=20,
                                        retries={"mode": "standard", "max_attempts": 2})
        return session.client("pricing", region_name=PRICING_REGION, config=config)

    return make
