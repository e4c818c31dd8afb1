"""Schemathesis hooks: test data for the rules the schema names but cannot enumerate.

The schema states every rule the server checks; a few depend on the org's data or the clock
(`phone`: a number registered in the org, `channel`: one of the org's slugs, `date-time` for an
expiry: in the future). These formats draw such values, from what scripts/contract-test.sh set up
(KW_PHONES, KW_CHANNELS), so generated valid requests are valid for this org and this moment.
"""

import datetime
import ipaddress
import os

import schemathesis
from hypothesis import strategies as st

PHONES = os.environ.get("KW_PHONES", "+14155550100").split(",")
CHANNELS = os.environ.get("KW_CHANNELS", "marketing").split(",")


def _future(seconds: int) -> str:
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return at.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _network(address: ipaddress._BaseAddress, prefix: int) -> str:
    return str(ipaddress.ip_network(f"{address}/{min(prefix, address.max_prefixlen)}", strict=False))


schemathesis.openapi.format("phone", st.sampled_from(PHONES))
schemathesis.openapi.format("channel", st.sampled_from(CHANNELS))
# An hour to 50 years ahead: expiries must be in the future (and within 100 years); the audit
# log's `since`/`until` accept any RFC 3339 time, these included.
schemathesis.openapi.format("date-time", st.integers(3600, 50 * 365 * 86400).map(_future))
schemathesis.openapi.format(
    "ip-network", st.builds(_network, st.ip_addresses(), st.integers(min_value=0, max_value=128))
)
