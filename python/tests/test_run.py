"""``paceline.run`` against the simulated provider: order, failures, errors, resume."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import paceline


def _chat(custom_id: str, prompt: str = "Say hello") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 16,
        },
    }


def _mock_requests(url: paceline.BaseURL) -> int:
    with urllib.request.urlopen(url.root + "/_mock/stats", timeout=5) as answer:
        return int(json.load(answer)["totals"]["requests"])


# Latency that varies per request, so the results are written out of the input's order.
@pytest.mark.paceline_mock(latency_ms=40, latency_sd=30, seed=11)
def test_dicts_come_back_in_input_order_with_the_jobs_figures(
    paceline_mock: paceline.BaseURL,
) -> None:
    ids = [f"q{(i * 17) % 40:02d}" for i in range(40)]
    results = paceline.run([_chat(i) for i in ids], base_url=paceline_mock, progress=False)

    assert [r["custom_id"] for r in results] == ids
    written = [json.loads(line)["custom_id"] for line in results.output.read_text().splitlines()]
    assert sorted(written) == sorted(ids) and written != ids, "the output was in input order"
    assert results.by_id["q17"] is results[1]
    assert results.failed == [] and results.exit_code == 0
    assert all(r["response"]["status_code"] == 200 for r in results)
    assert results[0]["response"]["body"]["choices"][0]["message"]["content"]
    summary = results.summary
    assert (summary["total"], summary["done"], summary["failed"]) == (40, 40, 0)
    assert summary["attempts"] == 40 and summary["runs"] == 1
    assert summary["figures"] is not None
    assert results.output.parent.parent == Path.cwd() / ".paceline"


def test_strings_and_records_with_a_template(paceline_mock: paceline.BaseURL) -> None:
    topics = ["sourdough", "tide pools", "a line\nthat spans two", "chess openings"]
    results = paceline.run(
        topics,
        template="Write a short article about {line}",
        model="gpt-4o-mini",
        max_tokens=32,
        base_url=paceline_mock,
        progress=False,
    )
    assert [r["custom_id"] for r in results] == ["1", "2", "3", "4"]
    assert not results.failed

    records = [{"topic": t, "slug": f"s-{n}"} for n, t in enumerate(topics)]
    by_slug = paceline.run(
        records,
        template="About {topic}",
        model="gpt-4o-mini",
        id_field="slug",
        base_url=paceline_mock,
        progress=False,
    )
    assert sorted(by_slug.by_id) == ["s-0", "s-1", "s-2", "s-3"]
    assert by_slug.output != results.output


def test_a_path_is_read_by_the_binary(tmp_path: Path, paceline_mock: paceline.BaseURL) -> None:
    ids = ["b", "a", "d", "c"]
    source = tmp_path / "requests.jsonl"
    source.write_text("".join(json.dumps(_chat(i)) + "\n" for i in ids))
    out = tmp_path / "out" / "results.jsonl"
    out.parent.mkdir()

    results = paceline.run(source, output=out, base_url=paceline_mock, progress=False)
    assert [r["custom_id"] for r in results] == ids
    assert results.output == out and out.exists()
    assert (tmp_path / "out" / "results.jsonl.paceline.db").exists()


def test_an_invalid_line_raises_with_its_line_number(paceline_mock: paceline.BaseURL) -> None:
    requests = [_chat("r1"), _chat("r2"), {"custom_id": "r3", "method": "POST"}, _chat("r4")]
    with pytest.raises(paceline.PacelineError) as caught:
        paceline.run(requests, base_url=paceline_mock, progress=False)
    assert caught.value.exit_code == 2
    assert "line 3" in caught.value.message, caught.value.message
    assert _mock_requests(paceline_mock) == 0, "a request was sent before validation"


def test_a_request_that_is_not_a_dict_or_string_is_refused_before_the_binary_runs() -> None:
    not_requests: list[Any] = [_chat("r1"), 7]
    with pytest.raises(TypeError, match="request 2 is a int"):
        paceline.run(not_requests, progress=False)
    with pytest.raises(TypeError, match="strings need a template"):
        paceline.run(["a topic"], progress=False)


@pytest.mark.paceline_mock(fail_500=1.0, seed=2)
def test_requests_that_fail_for_good_are_in_failed(paceline_mock: paceline.BaseURL) -> None:
    results = paceline.run(
        [_chat(f"r{i}") for i in range(5)],
        base_url=paceline_mock,
        max_attempts=2,
        progress=False,
    )
    assert results.exit_code == 1
    assert [r["custom_id"] for r in results.failed] == [f"r{i}" for i in range(5)]
    assert all(r["error"]["code"] for r in results.failed)
    assert results.summary["failed"] == 5 and results.summary["attempts"] == 10


@pytest.mark.paceline_mock(batch_speed=1000)
def test_via_batch_sends_the_job_through_the_batch_api(paceline_mock: paceline.BaseURL) -> None:
    ids = [f"b{(i * 7) % 20:02d}" for i in range(20)]
    results = paceline.run(
        [_chat(i) for i in ids],
        base_url=paceline_mock,
        provider="openai",
        via="batch",
        batch_poll_min=datetime.timedelta(milliseconds=100),
        batch_poll_max="200ms",
        progress=False,
    )
    assert [r["custom_id"] for r in results] == ids and not results.failed
    shards = results.summary["shards"]
    assert [(s["status"], s["requests"]) for s in shards] == [("completed", 20)]
    assert _mock_requests(paceline_mock) == 0, "a request went live"


def _job(ids: list[str], out: Path, url: str) -> paceline.Results:
    """The job the resume test interrupts: 40 requests, 2 at a time, 200 ms each."""
    return paceline.run(
        [_chat(i) for i in ids], output=out, base_url=url, concurrency=2, progress=False
    )


@pytest.mark.paceline_mock(latency_ms=200, seed=4)
def test_calling_again_resumes_an_interrupted_call(
    tmp_path: Path, paceline_mock: paceline.BaseURL
) -> None:
    ids = [f"r{i:02d}" for i in range(40)]
    out = tmp_path / "results.jsonl"
    script = tmp_path / "job.py"
    script.write_text(
        "import json, sys\n"
        "from test_run import _job\n"
        "_job(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    job = subprocess.Popen(
        [sys.executable, str(script), json.dumps(ids), str(out), paceline_mock],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not out.exists() or len(out.read_text().splitlines()) < 5:
        assert job.poll() is None, "the call ended before it was interrupted"
        assert time.monotonic() < deadline, "no results within 60 s"
        time.sleep(0.05)
    job.send_signal(signal.SIGINT)  # a Ctrl-C in the notebook or terminal running the call
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == -signal.SIGINT and "KeyboardInterrupt" in stderr, stderr
    first = out.read_text().splitlines()
    assert 5 <= len(first) < len(ids)

    results = _job(ids, out, paceline_mock)
    assert [r["custom_id"] for r in results] == ids
    assert results.summary["runs"] == 2 and results.summary["done"] == len(ids)
    # What the first call finished is kept as it was, and nothing was sent twice.
    assert out.read_text().splitlines()[: len(first)] == first
    assert _mock_requests(paceline_mock) == len(ids) == results.summary["attempts"]

    again = _job(ids, out, paceline_mock)
    assert list(again) == list(results) and _mock_requests(paceline_mock) == len(ids)


def test_the_progress_bar_follows_the_job(
    paceline_mock: paceline.BaseURL, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tqdm")
    paceline.run([_chat(f"r{i}") for i in range(10)], base_url=paceline_mock)
    err = capsys.readouterr().err
    assert "paceline" in err and "10/10" in err, err
