"""``paceline.run``'s progress bar in Jupyter: a notebook run by a real kernel (nbclient and
ipykernel) draws tqdm's widget, and the widget ends at the job's size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbclient
import nbformat

_CELL = """
import paceline

requests = [
    {
        "custom_id": f"n{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "max_tokens": 8,
                 "messages": [{"role": "user", "content": f"Say hello {i}"}]},
    }
    for i in range(30)
]
with paceline.mock(latency_ms=30) as url:
    results = paceline.run(requests, base_url=url)
print(len(results), results.summary["done"])
"""


def _widget_states(notebook: Any) -> dict[str, Any]:
    states = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert isinstance(states, dict)
    return states


def test_the_bar_is_a_jupyter_widget_that_ends_at_the_jobs_size(tmp_path: Path) -> None:
    # nbformat's functions carry no type hints.
    notebook = nbformat.reads(  # type: ignore[no-untyped-call]
        json.dumps(
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "id": "run",
                        "source": _CELL,
                        "metadata": {},
                        "outputs": [],
                    }
                ],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        ),
        as_version=4,
    )
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()

    outputs = notebook.cells[0].outputs
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "30 30" in printed, json.dumps(outputs, indent=1)
    views = [
        o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        for o in outputs
        if o.output_type == "display_data"
        and "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(views) == 1, json.dumps(outputs, indent=1)
    states = _widget_states(notebook)
    # tqdm's notebook bar: an HBox of a label, a progress bar and the figures.
    children = states[views[0]]["state"]["children"]
    parts = [states[c.removeprefix("IPY_MODEL_")]["state"] for c in children]
    bars = [p for p in parts if "max" in p and "value" in p]
    assert len(bars) == 1, parts
    assert (bars[0]["value"], bars[0]["max"]) == (30, 30), bars[0]
    figures = " ".join(str(p.get("value", "")) for p in parts)
    assert "30/30" in figures, figures
