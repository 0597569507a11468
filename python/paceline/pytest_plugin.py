"""The pytest plugin installed with paceline: the ``paceline_mock`` fixture.

A test that asks for ``paceline_mock`` gets the :class:`~paceline.BaseURL` of a simulated
provider started for it and stopped after it. Its flags come from the ``paceline_mock`` marker:

.. code-block:: python

    @pytest.mark.paceline_mock(rpm=60, fail_500=0.05, seed=7)
    def test_my_client_survives_500s(paceline_mock):
        client = openai.OpenAI(base_url=paceline_mock, api_key="any")
        ...
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._server import BaseURL, mock


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker."""
    config.addinivalue_line(
        "markers",
        "paceline_mock(**flags): the flags of the paceline_mock fixture's simulated provider "
        "(those of `paceline mock`, e.g. rpm=60, latency_ms=200, fail_500=0.05)",
    )


@pytest.fixture
def paceline_mock(request: pytest.FixtureRequest) -> Iterator[BaseURL]:
    """A simulated provider (``paceline mock``) for one test; its URL ends in ``/v1``."""
    marker = request.node.get_closest_marker("paceline_mock")
    flags = dict(marker.kwargs) if marker is not None else {}
    with mock(**flags) as url:
        yield url
