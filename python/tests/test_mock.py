"""``paceline.mock`` and the ``paceline_mock`` fixture (loaded through the plugin's entry point:
nothing here imports it)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

import paceline


def _stats(url: paceline.BaseURL) -> dict[str, object]:
    with urllib.request.urlopen(url.root + "/_mock/stats", timeout=5) as answer:
        value = json.load(answer)
    assert isinstance(value, dict)
    return value


def _requests(url: paceline.BaseURL) -> int:
    totals = _stats(url)["totals"]
    assert isinstance(totals, dict)
    return int(totals["requests"])


def test_mock_serves_the_openai_sdk_and_stops_on_exit() -> None:
    with paceline.mock(rpm=600, seed=1) as url:
        assert url.endswith("/v1") and url.root + "/v1" == url
        client = openai.OpenAI(base_url=url, api_key="any")
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
        assert answer.choices[0].message.content
        assert _requests(url) == 1
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url.root + "/_mock/stats", timeout=2)


def test_a_flag_the_mock_does_not_know_raises_its_message() -> None:
    with pytest.raises(paceline.PacelineError) as caught, paceline.mock(no_such_flag=3):
        pass
    assert caught.value.exit_code == 2
    assert "--no-such-flag" in caught.value.message


def test_the_fixture_gives_a_fresh_mock(paceline_mock: paceline.BaseURL) -> None:
    assert _requests(paceline_mock) == 0
    client = openai.OpenAI(base_url=paceline_mock, api_key="any")
    client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert _requests(paceline_mock) == 1


@pytest.mark.paceline_mock(fail_500=1.0, seed=3)
def test_the_marker_sets_the_fixtures_flags(paceline_mock: paceline.BaseURL) -> None:
    client = openai.OpenAI(base_url=paceline_mock, api_key="any", max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
