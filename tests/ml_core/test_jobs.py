"""The worker's typed jobs (ml_core.jobs): JSON round trip, checks on both sides, options held to the signatures."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from dataclasses import fields

import pytest

from ml_core.errors import FommError
from ml_core.jobs import (
    JOB_TYPES,
    AnimateJob,
    AnimateOptions,
    DetectImagesJob,
    ExtractJob,
    ExtractOptions,
    ProbeJob,
    job_from_dict,
    job_from_json,
)

JOBS = [
    ExtractJob(video="in.mp4", output="out.npz"),
    ExtractJob(
        video="in.mp4",
        output="out.npz",
        checkpoint="m.safetensors",
        config={"model_params": {}},
        device="cuda:1",
        options=ExtractOptions(
            crop=[4, 8, 64],
            start=2,
            end=40,
            step=2,
            reference_frame=5,
            smooth={"beta": 4.0},
            batch_size=4,
            dtype="bf16",
        ),
    ),
    AnimateJob(source="face.png", clip="c.npz", output="frames/", options=AnimateOptions(mode="absolute", fps=24.0)),
    DetectImagesJob(images=["a.png", "b.png"], output="d.npz", config="tiny.yaml", device="cpu"),
    ProbeJob(),
]


def signature_mismatches(options_cls: type, func) -> list[str]:
    """Option fields that are not keyword arguments of ``func`` with the same default (empty: they agree)."""
    params = inspect.signature(func).parameters
    out = []
    for f in fields(options_cls):
        p = params.get(f.name)
        if p is None or p.kind is not inspect.Parameter.KEYWORD_ONLY and p.kind is not p.POSITIONAL_OR_KEYWORD:
            out.append(f"{f.name}: not an argument")
        elif p.default != f.default:
            out.append(f"{f.name}: default {f.default!r} here, {p.default!r} in the function")
    return out


@pytest.mark.parametrize("job", JOBS, ids=lambda j: j.KIND)
def test_round_trip_through_json(job):
    text = job.to_json()
    assert "\n" not in text  # one line: the worker reads the first line of stdin
    back = job_from_json(text)
    assert back == job and type(back) is type(job)
    assert json.loads(text)["kind"] == job.KIND


def test_every_kind_has_a_dataclass():
    assert sorted(JOB_TYPES) == ["animate", "detect-images", "extract", "probe"]


def test_options_are_the_signatures_keyword_arguments():
    """A renamed (or re-defaulted) argument of extract/animate fails here, not in a worker at run time."""
    from ml_core.animation import animate
    from ml_core.extraction import extract

    assert signature_mismatches(ExtractOptions, extract) == []
    assert signature_mismatches(AnimateOptions, animate) == []


def test_the_signature_check_sees_a_rename():
    def renamed(
        video,
        *,
        crop="auto",
        first=None,
        end=None,
        step=1,
        reference_frame="auto",
        smooth=None,
        batch_size=32,
        dtype="fp32",
    ):
        pass

    assert signature_mismatches(ExtractOptions, renamed) == [
        "start: not an argument",
        "batch_size: default 16 here, 32 in the function",
    ]


def test_the_addon_builds_jobs_that_the_worker_reads():
    """The add-on builds jobs with these classes: a job made there passes the worker's parser unchanged."""
    job = ExtractJob(
        video="/v.mp4",
        output="/c.npz",
        checkpoint=None,
        config=None,
        device="auto",
        options=ExtractOptions(crop="full", smooth={}),
    ).to_dict()
    assert job["options"]["crop"] == "full" and job["kind"] == "extract"
    from ml_core.worker import parse_job

    assert parse_job(json.dumps(job)) == job_from_dict(job)


BAD = [
    (
        {"kind": "extract", "video": ["a.mp4"], "output": "o.npz"},
        'the extract job\'s video must be a string, got ["a.mp4"]',
    ),
    (
        {"kind": "extract", "video": "a.mp4", "output": "o.npz", "options": {"batch_size": 10**9}},
        "the extract job's option batch_size must be between 1 and 1024, got 1000000000",
    ),
    (
        {"kind": "extract", "video": "a.mp4", "output": "o.npz", "options": {"batch": 4}},
        "unknown option(s) batch for the extract job: use batch_size, crop, dtype, end, reference_frame, smooth, "
        "start, step",
    ),
    (
        {"kind": "extract", "video": "a.mp4", "output": "o.npz", "options": {"step": True}},
        "the extract job's option step must be a whole number, got true",
    ),
    (
        {"kind": "extract", "video": "a.mp4", "output": "o.npz", "options": {"crop": [1, 2]}},
        "the extract job's option crop must be auto, follow, steady, full or [x, y, size] pixels (size 1 or more), "
        "got [1, 2]",
    ),
    (
        {"kind": "extract", "video": "a.mp4", "output": "o.npz", "options": {"reference_frame": "first"}},
        'the extract job\'s option reference_frame must be one of auto, got "first"',
    ),
    (
        {"kind": "extract", "video": "a.mp4", "output": "o.npz", "device": "gpu"},
        'the extract job\'s device must be auto, cpu, cuda, cuda:N or mps, got "gpu"',
    ),
    (
        {"kind": "extract", "video": "a.mp4", "output": "o.npz", "ouput": "x"},
        "the extract job has unknown field(s) ouput: use checkpoint, config, device, options, output, video",
    ),
    (
        {"kind": "animate", "source": "s.png", "clip": "c.npz", "output": "o/", "options": {"mode": "rel"}},
        'the animate job\'s option mode must be one of relative, absolute, got "rel"',
    ),
    (
        {"kind": "animate", "source": "s.png", "clip": "c.npz", "output": "o/", "options": {"fps": -5}},
        "the animate job's option fps must be a frame rate above 0 and below 1000, got -5",
    ),
    (
        {"kind": "detect-images", "images": "a.png", "output": "o.npz"},
        'the detect-images job\'s images must be a list of strings, got "a.png"',
    ),
    (
        {"kind": "detect-images", "images": ["a.png", ""], "output": "o.npz"},
        'the detect-images job\'s images must be a list of paths, got ["a.png", ""]',
    ),
    ({"kind": "probe", "options": {"mode": "x"}}, "the probe job takes no options, got mode"),
    ({"kind": 3}, "unknown worker job kind 3: use one of extract, animate, detect-images, probe"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_jobs_are_refused_with_one_line(data, message):
    with pytest.raises(FommError) as err:
        job_from_dict(data)
    assert str(err.value) == message


def test_jobs_check_themselves_when_made():
    """The add-on side: a job with a wrong value cannot be made, so no worker starts for it."""
    with pytest.raises(FommError, match="the extract job's option step must be between 1 and 1000, got 5000"):
        ExtractJob(video="a.mp4", output="o.npz", options=ExtractOptions(step=5000))
    with pytest.raises(FommError, match="the extract job is missing video"):
        ExtractJob(video="", output="o.npz")
    with pytest.raises(FommError, match="the extract job's options must be ExtractOptions"):
        ExtractJob(video="a.mp4", output="o.npz", options={"crop": "full"})


def test_worker_refuses_a_bad_option_before_loading_anything(tmp_path):
    job = {
        "kind": "extract",
        "video": str(tmp_path / "v.mp4"),
        "output": str(tmp_path / "c.npz"),
        "options": {"batch_size": "16"},
    }
    proc = subprocess.run(
        [sys.executable, "-m", "ml_core", "worker", "-"],
        input=json.dumps(job) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert events == [
        {"event": "error", "message": 'the extract job\'s option batch_size must be a whole number, got "16"'}
    ]
    assert list(tmp_path.iterdir()) == []
