"""``paceline.gateway`` in front of the simulated provider, driven by the official OpenAI SDK."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

import paceline


@pytest.mark.paceline_mock(rpm=6000, seed=5)
def test_chat_stream_and_embeddings_through_the_gateway(
    paceline_mock: paceline.BaseURL,
) -> None:
    with paceline.gateway(base_url=paceline_mock, max_wait="10s") as url:
        client = openai.OpenAI(base_url=url, api_key="any")

        chat = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}], max_tokens=20
        )
        assert chat.headers["x-paceline-attempts"] == "1"
        assert chat.parse().choices[0].message.content

        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Hello"}],
            max_tokens=20,
            stream=True,
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert len(chunks) > 2 and text
        assert chunks[-1].choices[0].finish_reason is not None

        embeddings = client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
        assert [e.index for e in embeddings.data] == [0, 1]
        assert len(embeddings.data[0].embedding) > 0

        with urllib.request.urlopen(url.root + "/healthz", timeout=5) as health:
            assert health.status == 200
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url.root + "/healthz", timeout=2)


def test_a_config_file_and_its_errors(tmp_path: Path, paceline_mock: paceline.BaseURL) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(f'base_url = "{paceline_mock}"\nmax_wait = "5s"\n')
    with paceline.gateway(config) as url:
        client = openai.OpenAI(base_url=url, api_key="any")
        assert client.models.list() is not None

    config.write_text('base_url = "http://127.0.0.1:1/v1"\nmax_wiat = "5s"\n')
    with pytest.raises(paceline.PacelineError) as caught, paceline.gateway(config):
        pass
    assert caught.value.exit_code == 2
    assert "max_wiat" in caught.value.message and str(config) in caught.value.message


def test_a_key_variable_not_set_stops_it_with_the_binarys_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with (
        pytest.raises(paceline.PacelineError) as caught,
        paceline.gateway(base_url="http://127.0.0.1:1/v1"),
    ):
        pass
    assert caught.value.exit_code == 2
    assert caught.value.message.startswith("environment variable OPENAI_API_KEY is not set")
