"""A real Label Studio server for the integration tests: started on a free loopback port with a
known admin token, from a migrated template database (made once, then copied) so startup takes
seconds; stopped by PID. The server runs from `.venv-ls` (`make label-studio`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LS_BIN = ROOT / ".venv-ls" / "bin" / "label-studio"
TEMPLATE = ROOT / ".cache" / "label-studio-template"
ADMIN = "admin@example.com"
PASSWORD = "admin-password-123"
TOKEN = "helpsteer-test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(data_dir: Path) -> dict:
    env = dict(os.environ)
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), "DJANGO_DB": "sqlite", "DATABASE_NAME": str(data_dir / "label_studio.sqlite3"),
        "LABEL_STUDIO_USERNAME": ADMIN, "LABEL_STUDIO_PASSWORD": PASSWORD, "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true", "LATEST_VERSION_CHECK": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false", "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "false",
    })
    return env


class LabelStudioServer:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 240) -> "LabelStudioServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "server.log", "wb")
        self.proc = subprocess.Popen(
            [str(LS_BIN), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            env=_env(self.data_dir), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Label Studio exited: {(self.data_dir / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"Label Studio did not answer /health within {timeout}s: {(self.data_dir / 'server.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def create_user(self, email: str) -> int:
        """An annotator account (through the API, as the admin); returns its user id."""
        from label_studio_sdk import LabelStudio

        ls = LabelStudio(base_url=self.url, api_key=TOKEN)
        u = ls.users.create(username=email.split("@")[0], email=email, first_name=email.split("@")[0])
        org = ls.users.whoami().active_organization
        if org:
            ls.users.update(id=u.id, active_organization=org)
        return u.id


def start_server(workdir: Path) -> LabelStudioServer:
    """A server on a copy of the migrated template database (the template is made on first use)."""
    if not LS_BIN.exists():
        raise FileNotFoundError(f"{LS_BIN} is missing: run `make label-studio`")
    if not (TEMPLATE / "label_studio.sqlite3").exists():
        tmp = TEMPLATE.with_name(TEMPLATE.name + ".building")
        shutil.rmtree(tmp, ignore_errors=True)
        first = LabelStudioServer(tmp).start()
        first.stop()
        (tmp / "server.log").unlink(missing_ok=True)
        shutil.rmtree(TEMPLATE, ignore_errors=True)
        tmp.rename(TEMPLATE)
    data = workdir / "ls-data"
    shutil.copytree(TEMPLATE, data)
    return LabelStudioServer(data).start()
