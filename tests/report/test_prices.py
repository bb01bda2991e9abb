"""Prices: the Price List API through botocore's Stubber, the disk cache, the fallbacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import NoCredentialsError
from botocore.stub import Stubber

from ramp_fleet.report.prices import (
    API_SOURCE,
    CONFIG_SOURCE,
    NO_SOURCE,
    PriceList,
    default_cache_dir,
    on_demand_usd,
)
from tests.report.pricing_answers import expected_request, pricing_client, product

DAY = 24 * 3600.0
NOW = 1_750_000_000.0  # 2025-06-15


class Factory:
    """Hands out one client and counts how often a client was asked for."""

    def __init__(self, client: Any):
        self.client = client
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.client


def test_the_api_price_is_used_and_cached(tmp_path: Path) -> None:
    client = pricing_client()
    with Stubber(client) as stub:
        stub.add_response("get_products", {"PriceList": [product("t3.medium", "eu-west-3", 0.0472)],
                                           "FormatVersion": "aws_v1"},
                          expected_request("t3.medium", "eu-west-3"))
        price = PriceList(Factory(client), tmp_path, clock=lambda: NOW).price("t3.medium", "eu-west-3", 9.0)
        stub.assert_no_pending_responses()
    assert (price.usd, price.source) == (pytest.approx(0.0472), API_SOURCE)
    cached = json.loads((tmp_path / "eu-west-3" / "t3.medium.json").read_text())
    assert cached["usd_per_hour"] == pytest.approx(0.0472) and cached["fetched_at"] == NOW

    offline = Factory(None)
    again = PriceList(offline, tmp_path, clock=lambda: NOW + DAY).price("t3.medium", "eu-west-3", 9.0)
    assert (again.usd, again.source) == (pytest.approx(0.0472), f"{API_SOURCE} (cached 2025-06-15)")
    assert offline.calls == 0, "a fresh cached price needs no API call"


def test_a_stale_cache_is_refreshed_and_used_when_the_api_fails(tmp_path: Path) -> None:
    client = pricing_client()
    with Stubber(client) as stub:
        stub.add_response("get_products", {"PriceList": [product("c5.xlarge", "eu-west-3", 0.2)]},
                          expected_request("c5.xlarge", "eu-west-3"))
        PriceList(Factory(client), tmp_path, clock=lambda: NOW).price("c5.xlarge", "eu-west-3", None)
    later = NOW + 40 * DAY
    with Stubber(client) as stub:
        stub.add_response("get_products", {"PriceList": [product("c5.xlarge", "eu-west-3", 0.21)]},
                          expected_request("c5.xlarge", "eu-west-3"))
        refreshed = PriceList(Factory(client), tmp_path, clock=lambda: later).price("c5.xlarge", "eu-west-3",
                                                                                  None)
        stub.assert_no_pending_responses()
    assert (refreshed.usd, refreshed.source) == (pytest.approx(0.21), API_SOURCE)
    with Stubber(client) as stub:
        stub.add_client_error("get_products", "ThrottlingException", "Rate exceeded")
        stale = PriceList(Factory(client), tmp_path, clock=lambda: later + 40 * DAY).price(
            "c5.xlarge", "eu-west-3", 9.0)
    assert stale.usd == pytest.approx(0.21) and stale.source.startswith(f"{API_SOURCE} (cached ")


def test_without_an_answer_the_config_price_is_used(tmp_path: Path) -> None:
    client = pricing_client()
    with Stubber(client) as stub:
        stub.add_client_error("get_products", "AccessDeniedException", "not authorized: pricing:GetProducts")
        price = PriceList(Factory(client), tmp_path).price("t3.medium", "eu-west-3", 0.05)
    assert (price.usd, price.source) == (0.05, CONFIG_SOURCE)
    assert not (tmp_path / "eu-west-3").exists(), "a fallback price is never cached"


def test_without_credentials_the_api_is_asked_once_then_the_fallback(tmp_path: Path) -> None:
    factory_calls = []

    def factory() -> Any:
        factory_calls.append(1)
        raise NoCredentialsError()

    prices = PriceList(factory, tmp_path)
    first = prices.price("t3.medium", "eu-west-3", None)
    second = prices.price("c5.xlarge", "eu-west-3", 0.1)
    assert (first.usd, first.source) == (None, NO_SOURCE)
    assert (second.usd, second.source) == (0.1, CONFIG_SOURCE)
    assert factory_calls == [1]


def test_an_answer_without_an_on_demand_price_falls_back(tmp_path: Path) -> None:
    client = pricing_client()
    with Stubber(client) as stub:
        stub.add_response("get_products", {"PriceList": []}, expected_request("x9.huge", "eu-west-3"))
        price = PriceList(Factory(client), tmp_path).price("x9.huge", "eu-west-3", 0.3)
    assert (price.usd, price.source) == (0.3, CONFIG_SOURCE)


def test_no_region_means_no_api_call(tmp_path: Path) -> None:
    factory = Factory(None)
    price = PriceList(factory, tmp_path).price("t3.medium", None, 0.05)
    assert (price.usd, price.source, factory.calls) == (0.05, CONFIG_SOURCE, 0)


def test_the_on_demand_price_is_read_from_the_terms() -> None:
    assert on_demand_usd([product("t3.small", "eu-west-3", 0.0236)]) == pytest.approx(0.0236)
    free = json.loads(product("t3.small", "eu-west-3", 0.0))
    assert on_demand_usd([free]) is None


def test_the_cache_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "ramp-fleet" / "aws-prices"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "ramp-fleet" / "aws-prices"
