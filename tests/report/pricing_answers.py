"""What the AWS Price List API answers, for the stubbed and loopback pricing clients."""

from __future__ import annotations

import json
from typing import Any

import boto3


def product(instance_type: str, region: str, usd: float) -> str:
    """One item of ``get_products``' ``PriceList``: a JSON document, as the API sends it."""
    sku = "JRTCKXETXF"
    return json.dumps({
        "product": {"productFamily": "Compute Instance",
                    "attributes": {"instanceType": instance_type, "regionCode": region,
                                   "operatingSystem": "Linux", "tenancy": "Shared",
                                   "preInstalledSw": "NA", "capacitystatus": "Used"},
                    "sku": sku},
        "serviceCode": "AmazonEC2",
        "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": {"priceDimensions": {
            f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                "unit": "Hrs", "pricePerUnit": {"USD": f"{usd:.10f}"},
                "description": f"${usd} per On Demand Linux {instance_type} Instance Hour"}}}}},
    })


def expected_request(instance_type: str, region: str) -> dict[str, Any]:
    return {
        "ServiceCode": "AmazonEC2",
        "FormatVersion": "aws_v1",
        "MaxResults": 10,
        "Filters": [
            {"Type": "TERM_MATCH", "Field": "instanceType", "Value": instance_type},
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
            {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
            {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
            {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
            {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
        ],
    }


def pricing_client() -> Any:
    """A real botocore pricing client with dummy keys: it only ever meets a Stubber."""
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                            region_name="us-east-1")
    return session.client("pricing", region_name="us-east-1")
