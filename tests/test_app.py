"""Starting the studio: binding, authentication, the workspace lock."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import app

ROOT = Path(__file__).resolve().parents[1]


def test_binding_beyond_loopback_without_auth_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, "app.py", "--host", "0.0.0.0", "--workspace", str(tmp_path / "ws")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1 and "refusing to listen on 0.0.0.0 without authentication" in proc.stderr
    assert not (tmp_path / "ws").exists()  # refused before the workspace was touched


def test_auth_pairs_from_env_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_AUTH", "ann:pw1, bob:pw2")
    assert app.load_auth(None) == [("ann", "pw1"), ("bob", "pw2")]
    good = tmp_path / "auth.txt"
    good.write_text("# users\ncat:secret\n")
    assert app.load_auth(good) == [("cat", "secret")]
    bad = tmp_path / "bad.txt"
    bad.write_text("cat:secret\nnocolon\n")
    with pytest.raises(SystemExit, match="bad.txt, line 2: expected user:password"):
        app.load_auth(bad)
    app.check_exposure("0.0.0.0", [("cat", "secret")])  # with auth: allowed
    app.check_exposure("127.0.0.1", [])


def test_auth_when_set_keeps_the_api_closed_to_strangers(tmp_path):
    import httpx
    from gradio_client import Client
    from tests.ui_helpers import running_studio
    with running_studio(tmp_path / "ws", auth=[("ann", "s3cret-pass")]) as (studio, url):
        assert httpx.get(url + "config", timeout=10).status_code in (401, 403)
        with pytest.raises(Exception):
            Client(url, verbose=False)
        client = Client(url, auth=("ann", "s3cret-pass"), verbose=False)
        _, info = client.predict("", "all", 1, api_name="/review_page")
        assert "0 matching" in info


def test_the_web_process_imports_no_model_library():
    """Every model is an endpoint: importing the app (and every tab) loads neither torch nor transformers."""
    code = ("import sys, app; heavy = [m for m in ('torch', 'transformers', 'peft', 'trl', 'sentence_transformers') "
            "if m in sys.modules]; print(','.join(heavy))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


@pytest.mark.integration
def test_sigterm_stops_the_studio_and_its_teacher_server(tmp_path):
    """SIGTERM unwinds through Studio.close: the embedded teacher's server goes with the studio."""
    import json
    import os
    import signal
    import time
    import urllib.request

    from gradio_client import Client

    from curation.store import Store
    from models.engine import free_port
    ws = tmp_path / "ws"
    with Store(ws) as store:
        store.add_tasks([{"instruction": "Name a colour."}])
    port = free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--workspace", str(ws), "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = ws / "logs" / "servers.json"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "the studio did not serve its page"
                time.sleep(0.3)
        Client(f"http://127.0.0.1:{port}/", verbose=False).predict(method="label", max_tokens=8,
                                                                    api_name="/start_generation")
        while not (record.exists() and json.loads(record.read_text())):
            assert time.monotonic() < deadline, "the teacher server never started"
            time.sleep(0.2)
        [server] = json.loads(record.read_text())
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        assert not Path(f"/proc/{server['pid']}").exists() or \
            Path(f"/proc/{server['pid']}/stat").read_text().split(")")[-1].split()[0] == "Z"
        assert json.loads(record.read_text()) == []
    finally:
        if proc.poll() is None:
            proc.kill()
