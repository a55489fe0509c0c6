"""The worker image's build files, checked without a Docker engine: pinned, consistent with pyproject,
complete for what the engine imports, and pointing at a handler that exists and runs."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "worker_image"


def _requirements() -> dict[str, str]:
    pins = {}
    for line in (WORKER / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.\-+]+)", line)
        assert match, f"requirement not pinned with ==: {line!r}"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def _pyproject() -> dict[str, Requirement]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return {canonicalize_name(r.name): r for r in map(Requirement, data["project"]["dependencies"])}


def _third_party_imports() -> set[str]:
    modules: set[str] = set()
    for path in WORKER.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m != "worker_image"}


def test_every_requirement_is_pinned_within_pyproject_ranges_and_is_what_tests_run():
    pins, declared = _requirements(), _pyproject()
    for name, pinned in pins.items():
        assert name in declared, f"{name} is not a dependency in pyproject.toml"
        assert declared[name].specifier.contains(pinned, prereleases=True), \
            f"{name}=={pinned} is outside pyproject's {declared[name].specifier}"
        assert version(name) == pinned, f"tests run {name} {version(name)}, the image pins {pinned}"


def test_requirements_cover_every_module_the_engine_imports():
    distributions = packages_distributions()
    pins = _requirements()
    for module in sorted(_third_party_imports()):
        dists = {canonicalize_name(d) for d in distributions.get(module, [])}
        assert dists & pins.keys(), f"worker_image imports {module} ({dists or 'unknown'}) but requirements.txt lacks it"


def test_dockerfile_is_pinned_and_starts_the_handler():
    text = (WORKER / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M)[1]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu\d+\.\d+", base), base
    install = re.search(r"apt-get install[^\n]*((?:\n\s+[^\n]*\\)*)", text)[0]
    packages = re.findall(r"^\s+([a-z0-9][a-z0-9.+\-]*)(=?\S*)\s*\\?$", install, re.M)
    names = {name for name, _ in packages}
    assert {"ffmpeg", "fonts-noto-core", "fonts-noto-cjk"} <= names
    assert all(pin.startswith("=") and len(pin) > 1 for _, pin in packages), packages
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility,video" in text  # NVENC needs the video capability
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "worker_image/requirements.txt" in text
    cmd = json.loads(re.search(r"^CMD\s+(\[.*\])", text, re.M)[1])
    script = next(arg for arg in cmd if arg.endswith(".py"))
    workdir = re.findall(r"^WORKDIR\s+(\S+)", text, re.M)[-1]
    copies = {dest.rstrip("/"): src.rstrip("/")
              for src, dest in re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s+(\S+)", text, re.M)}
    in_image = f"{workdir}/{script}"  # where CMD's script sits in the image, e.g. /app/worker_image/handler.py
    in_repo = [REPO / src / in_image[len(dest) + 1:] for dest, src in copies.items() if in_image.startswith(dest + "/")]
    assert in_repo and in_repo[0].is_file(), (in_image, copies)


def test_handler_runs_its_test_input_in_runpod_local_test_mode(tmp_path):
    """``python worker_image/handler.py`` runs worker_image/test_input.json (RunPod's local test mode)."""
    spec = json.loads((WORKER / "test_input.json").read_text())
    out = Path(spec["input"]["clips"][0]["output"]["path"])
    out.unlink(missing_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, str(WORKER / "handler.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "completed successfully" in done.stdout and out.is_file() and out.stat().st_size > 0


def test_handler_refuses_unknown_fields_before_any_download(tmp_path):
    job = {"input": {"operation": "img2vid", "settings": {"fps": 24, "widht_px": 160},
                     "clips": [{"id": "a", "image_url": "http://127.0.0.1:9/never-fetched.jpg", "duration_s": 1,
                                "filename": "video_1.mp4", "output": {"kind": "file", "path": str(tmp_path / "x.mp4")}}]}}
    done = subprocess.run([sys.executable, str(WORKER / "handler.py"), "--test_input", json.dumps(job)],
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "'retryable': False" in done.stdout and "widht_px" in done.stdout and "InputError" in done.stdout
    assert "never-fetched" not in done.stderr


def test_handler_dispatches_on_operation(tmp_path):
    """Each operation is validated against its own contract; unknown operations are refused by name."""
    import asyncio

    from worker_image.handler import handler

    unknown = asyncio.run(handler({"id": "j1", "input": {"operation": "upscale"}}))
    assert unknown["error"]["type"] == "InputError" and unknown["error"]["field"] == "operation"
    assert "addaudio" in unknown["error"]["message"] and "caption" in unknown["error"]["message"]
    caption = asyncio.run(handler({"id": "j2", "input": {"operation": "caption", "id": "c1", "url_video": "http://x/v.mp4",
                                                         "filename": "v.mp4", "output": {"kind": "file", "path": "/tmp/v.mp4"}}}))
    assert caption["error"]["type"] == "InputError" and caption["error"]["field"] == "url_srt"
    audio = asyncio.run(handler({"id": "j3", "input": {"operation": "addaudio", "url_video": "http://x/v.mp4",
                                                       "url_audio": "http://x/a.mp3", "filename": "v.mp4",
                                                       "output": {"kind": "file", "path": "/tmp/v.mp4"}, "gain": 2}}))
    assert audio["error"]["type"] == "InputError" and "gain" in audio["error"]["message"]
