"""The gateway's own OpenAPI schema, fuzzed with schemathesis: no input may produce a 5xx it did not mean.

Served by uvicorn over LocalNetwork + FakeBackend. Statuses 502-504 can be legitimate (no node,
timeouts), but with a healthy fake node every generated request must end below 500.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tooti.config.model import Config, GatewaySection, VerificationSection
from tooti.gateway import create_app
from tooti.gateway.server import ServerThread
from tooti.network import AdvertisedModel
from tooti.node.local import LocalNetwork
from tooti.testing import FakeBackend, make_plugin_host

# FakeBackend answers every prompt alike, which the gateway's canaries rightly quarantine as a fixed
# reply after a few seconds; this module-long gateway tests other things.
_NO_CANARIES = Config(gateway=GatewaySection(verification=VerificationSection(enabled=False)))


@pytest.fixture(scope="module")
def gateway_url():
    network = LocalNetwork()
    model = AdvertisedModel(name="fake-model", aliases=("fake",), backend="fake")
    network.add_node("peerA", FakeBackend(models=("fake-model", "fake")), [model])
    server = ServerThread(create_app(_NO_CANARIES, network, make_plugin_host()))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="module")
def api_schema(gateway_url):
    return schemathesis.openapi.from_url(f"{gateway_url}/schema/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_gateway_never_answers_5xx(case):
    response = case.call(timeout=30)
    case.validate_response(response, checks=[not_a_server_error])
