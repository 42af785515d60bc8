"""What the studio serves and what it refuses, over real HTTP (issue 7)."""
from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.ui_helpers import running_studio

ROOT = Path(__file__).resolve().parents[1]


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def studio_in_cwd(tmp_path, monkeypatch):
    """A studio whose workspace sits in the working directory, as with the default data/ folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-dotfile-secret\n")
    with running_studio(tmp_path / "data") as running:
        yield running


@pytest.mark.parametrize("route", ["gradio_api/file=", "file="])
def test_file_routes_refuse_everything_the_studio_did_not_produce(studio_in_cwd, route):
    studio, url = studio_in_cwd
    db = studio.store.path
    for target in ("../../etc/passwd", "/etc/passwd", str(db), "data/studio.duckdb", ".env", str(ROOT / "app.py"),
                   "%2e%2e/%2e%2e/etc/passwd"):
        assert http_status(url + route + target) in (403, 404), target


def test_the_page_never_carries_the_api_key(tmp_path, monkeypatch):
    secret = "sk-env-secret-never-on-the-page-42"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with running_studio(tmp_path / "ws") as (studio, url):
        for path in ("", "config", "gradio_api/info", "gradio_api/openapi.json"):
            try:
                body = urllib.request.urlopen(url + path, timeout=10).read().decode(errors="replace")
            except urllib.error.HTTPError:
                continue
            assert secret not in body, path


def test_exports_are_served_and_typed_paths_outside_the_workspace_refused(tmp_path):
    from gradio_client import Client
    from tests.conftest import add_generation
    with running_studio(tmp_path / "ws") as (studio, url):
        [task] = studio.store.add_tasks([{"instruction": "Say hi."}])
        studio.store.set_label([add_generation(studio.store, task, "k")], "approved")
        client = Client(url, verbose=False)
        downloaded, message = client.predict("train-v1.jsonl", "chat-jsonl", api_name="/export")
        assert "exported 1 approved rows" in message
        assert '"assistant"' in Path(downloaded).read_text()
        for name in ("../../etc/cron.d/x", "/tmp/x.jsonl", "$(touch pwned).jsonl"):
            with pytest.raises(Exception, match="must be a plain file name"):
                client.predict(name, "chat-jsonl", api_name="/export")
        assert sorted(p.name for p in (tmp_path / "ws" / "exports").iterdir()) == ["train-v1.jsonl"]
        assert http_status(url + "gradio_api/file=" + str(studio.store.path)) in (403, 404)


def test_a_typed_api_key_reaches_the_teacher_and_nowhere_else(tmp_path, tiny_student):
    """Typed key → generation → training → merged export: the key is in no file, config, log, card or page."""
    from gradio_client import Client
    from tests.fault_server import FaultServer
    from tests.ui_helpers import wait_for
    secret = "sk-typed-in-the-ui-9f8e7d6c5b4a"
    with FaultServer([500, 200]) as server, running_studio(tmp_path / "ws") as (studio, url):
        studio.store.add_tasks([{"instruction": "Say hi."}, {"instruction": "Say bye."}])
        client = Client(url, verbose=False)
        client.predict(method="label", base_url=server.base_url, model="scripted", api_key=secret, max_retries=0,
                       api_name="/start_generation")
        wait_for(lambda: studio.generation.status().state == "completed", timeout=60, what="the job")
        assert all(r["headers"].get("authorization", r["headers"].get("Authorization")) == f"Bearer {secret}"
                   for r in server.requests)
        client.predict("", "all", api_name="/bulk_approved")
        run_id, _ = client.predict(str(tiny_student), 2, 1, 1e-3, 1, 2, 64, api_name="/start_training")
        studio.training.wait(timeout=300)
        assert studio.store.run(int(run_id))["status"] == "completed"
        exported = client.predict(run_id, api_name="/export_model")
        shown = [client.predict(api_name="/generation_status"), client.predict("latest", "all", "all", 1,
                                                                               api_name="/ledger_page"),
                 client.predict(run_id, api_name="/training_status"), client.predict(api_name="/list_runs"),
                 exported]
        pages = [httpx_get(url + p) for p in ("", "config", "gradio_api/info")]
        studio.store.con.execute("CHECKPOINT")
        files = [p for p in (tmp_path / "ws").rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"README.md", "config.json", "model.safetensors", "log.jsonl", "stdout.log"} <= names, names  # card, configs, logs
    assert secret not in repr(shown) and not any(secret in page for page in pages)
    assert not [p for p in files if secret.encode() in p.read_bytes()]


def httpx_get(url: str) -> str:
    import httpx
    return httpx.get(url, timeout=10).text
