"""Distill Studio: seed tasks -> teacher generations -> review -> LoRA student, in the browser.

python app.py [--workspace DIR] [--port N] [--host 127.0.0.1]
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from curation.errors import NeedsRecovery
from curation.jobs import GenerationJobs
from curation.local_server import LocalTeacherServer
from curation.store import Store
from distill.orphans import stop_orphans
from distill.runner import TrainingSlot
from evaluation.jobs import EvalJobs
from models.engine import stop_recorded
from models.resolve import TRUST_ENV, trusted_models
from models.students import StudentServers
from ui import curate, evaluate, generate, review, review_queue, runs, seeds, sources, train
from ui.common import CSS

DEFAULT_WORKSPACE = Path(__file__).resolve().parent / "data"
MAX_UPLOAD_MB = 200  # the importer's own cap (curation.seed_files.MAX_FILE_BYTES); gradio refuses larger uploads


@dataclass
class Studio:
    """What every browser session shares: the workspace, the inference servers (the embedded teacher's and
    the student's), the job and training slots."""

    store: Store
    server: LocalTeacherServer
    students: StudentServers
    generation: GenerationJobs
    training: TrainingSlot
    evaluation: EvalJobs
    notes: list[str] = field(default_factory=list)  # what the user must know about this start

    @classmethod
    def open(cls, workspace: Path, recover: bool = False) -> "Studio":
        store = Store(workspace, recover=recover)
        notes = [store.recovery_note] if store.recovery_note else []
        interrupted = [store.run(i) for i in store.mark_interrupted_runs()]  # runs a dead studio left 'running'
        notes += stop_orphans(interrupted)
        notes += stop_recorded(store.workspace / "logs")  # inference servers a dead studio left running
        notes += [f"run {r['id']} ({r['kind']}) was interrupted when the studio stopped; start it again to resume"
                  for r in interrupted]
        trusted = trusted_models()
        if trusted:
            notes.append(f"remote code is ON for {', '.join(trusted)}: loading these models runs Python "
                         "files from their folders, which can do anything you can")
        for note in notes:
            print(f"distill-studio: {note}", file=sys.stderr)
        server = LocalTeacherServer(store.workspace / "logs")
        students = StudentServers(store.workspace / "logs", store.workspace / "models")
        return cls(store, server, students, GenerationJobs(store, server, students),
                   TrainingSlot(store, store.workspace), EvalJobs(store, server, students), notes)

    def server_rows(self) -> list[dict]:
        """Every inference server the studio runs or ran: role, model, port, adapters, load, tokens/s."""
        return [s.info() for s in [self.server, *self.students.servers]]

    def close(self):
        self.generation.stop()
        self.generation.wait(timeout=30)
        self.evaluation.stop()
        self.evaluation.wait(30)
        self.training.close()
        self.server.stop()
        self.students.stop()
        self.store.close()


def build_app(studio: Studio) -> gr.Blocks:
    loaders = []  # (function, outputs) the page runs at every load, so a reload shows the workspace as it is
    with gr.Blocks(title="Distill Studio") as demo:
        gr.Markdown(f"# Distill Studio\nworkspace `{studio.store.workspace}`")
        if studio.notes:
            gr.Markdown("\n".join(f"> ⚠ {note}" for note in studio.notes), elem_id="studio-notes")
        with gr.Tabs():
            with gr.Tab("Seeds", id="seeds"):
                tasks_table, tasks_frame = seeds.build(studio)
                loaders.append((tasks_frame, [tasks_table], "tasks_table"))
                documents_table = sources.build(studio)
                loaders.append((lambda: sources.documents_table(studio.store), [documents_table], "documents_table"))
            with gr.Tab("Generate", id="generate"):
                generate.build(studio)
            with gr.Tab("Review", id="review") as review_tab:
                load_page, page_inputs, page_outputs = review.build(studio)
            with gr.Tab("Queue", id="queue") as queue_tab:
                load_queue, queue_inputs, queue_outputs = review_queue.build(studio)
            with gr.Tab("Curate", id="curate"):
                curate.build(studio)
            with gr.Tab("Train", id="train"):
                loaders.append(train.build(studio))
            with gr.Tab("Evaluate", id="evaluate"):
                evaluate.build(studio, jobs=studio.evaluation, loaders=loaders)
            with gr.Tab("Runs", id="runs") as runs_tab:
                runs_table = runs.build(studio)
        review_tab.select(load_page, page_inputs, page_outputs, api_visibility="private")
        queue_tab.select(load_queue, queue_inputs, queue_outputs, api_visibility="private")
        runs_tab.select(lambda: runs.runs_frame(studio.store), None, [runs_table], api_visibility="private")
        for fn, outputs, name in loaders:
            demo.load(fn, None, outputs, api_name=name)
    return demo


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def load_auth(auth_file: Path | None) -> list[tuple[str, str]]:
    """user:password pairs from DISTILL_AUTH ("user:pass,user2:pass2") or a file with one pair a line."""
    text = auth_file.read_text() if auth_file else os.environ.get("DISTILL_AUTH", "")
    pairs = []
    for n, item in enumerate(text.replace(",", "\n").splitlines(), 1):
        item = item.strip()
        if not item or item.startswith("#"):
            continue
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            where = f"{auth_file}, line {n}" if auth_file else "DISTILL_AUTH"
            raise SystemExit(f"error: {where}: expected user:password")
        pairs.append((user, password))
    return pairs


def check_exposure(host: str, auth: list) -> None:
    """Binding beyond this machine without a password would hand the workspace to the network."""
    if host not in LOOPBACK and not auth:
        raise SystemExit(f"error: refusing to listen on {host} without authentication; set DISTILL_AUTH=user:password "
                         "or pass --auth-file FILE (or keep the default --host 127.0.0.1)")


def allow_remote_code(models: list[str]) -> None:
    """Add models to the trust list in the environment, which the training child inherits."""
    if models:
        os.environ[TRUST_ENV] = ",".join(dict.fromkeys(trusted_models() + [m.strip() for m in models if m.strip()]))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=DEFAULT_WORKSPACE, help="workspace folder (default: %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("DISTILL_PORT", 7860)))
    parser.add_argument("--recover", action="store_true",
                        help="open a workspace whose write-ahead log cannot be replayed at its last checkpoint "
                             "(the log is kept aside; the studio refuses without this and says what is lost)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    parser.add_argument("--auth-file", type=Path, help="file of user:password lines (or set DISTILL_AUTH)")
    parser.add_argument("--max-upload-mb", type=int, default=MAX_UPLOAD_MB, help="largest upload accepted")
    parser.add_argument("--trust-remote-code", action="append", default=[], metavar="MODEL",
                        help=f"let this model (hub id or folder, repeatable; or set {TRUST_ENV}) run the Python code "
                             "in its folder when loaded; off by default, since that code can do anything you can")
    return parser.parse_args(argv)


def launch(studio: Studio, host: str, port: int, auth=None, block: bool = True,
           max_upload_mb: int = MAX_UPLOAD_MB) -> gr.Blocks:
    """Serve the studio; with block=False returns at once (tests), else when the server stops."""
    demo = build_app(studio)
    demo.queue(default_concurrency_limit=8)
    exports = studio.store.workspace / "exports"  # the only workspace folder served: files made for download
    exports.mkdir(exist_ok=True)
    demo.launch(server_name=host, server_port=port, css=CSS, prevent_thread_lock=not block, show_error=True,
                inbrowser=False, auth=auth or None, max_file_size=f"{max_upload_mb}mb", quiet=not block,
                allowed_paths=[str(exports)])
    return demo


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through main's finally: jobs stop, servers stop, the store closes


def main(argv=None):
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    allow_remote_code(args.trust_remote_code)
    auth = load_auth(args.auth_file)
    check_exposure(args.host, auth)
    try:
        studio = Studio.open(args.workspace, recover=args.recover)
    except NeedsRecovery as exc:
        sys.exit(f"distill-studio: {exc}")
    try:
        launch(studio, args.host, args.port, auth, max_upload_mb=args.max_upload_mb)
    finally:
        studio.close()


if __name__ == "__main__":
    main()
