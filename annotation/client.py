"""Push a workspace dataset to a Label Studio server as tasks, and pull its annotations back into a
workspace dataset, with the label-studio-sdk. The exported JSON goes through the same reader as
`helpsteer ingest --format label-studio` (helpsteer/formats/label_studio.py).

The API key is never printed or logged; errors name the server and what to check."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from helpsteer import store
from helpsteer.errors import UsageError

from .configs import labeling_config, validate_config
from .tasks import build_tasks


@contextmanager
def server_errors(url: str, what: str):
    """Turn transport and HTTP errors into one-line UsageErrors (exit 2), without the key."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError) as e:
        raise UsageError(f"cannot reach Label Studio at {url} ({type(e).__name__}) while {what}: is the server running, and is --url / LABEL_STUDIO_URL right?") from None
    except ApiError as e:
        if e.status_code in (401, 403):
            raise UsageError(f"Label Studio at {url} rejected the API key (HTTP {e.status_code}) while {what}: check --api-key / LABEL_STUDIO_API_KEY") from None
        if e.status_code == 404:
            raise UsageError(f"Label Studio at {url}: not found (HTTP 404) while {what}") from None
        body = str(e.body)[:200] if e.body is not None else ""
        raise UsageError(f"Label Studio at {url} answered HTTP {e.status_code} while {what}: {body}") from None


def connect(url: str | None, api_key: str | None):
    from label_studio_sdk import LabelStudio

    if not url:
        raise UsageError("no Label Studio URL: pass --url or set LABEL_STUDIO_URL")
    if not api_key:
        raise UsageError("no Label Studio API key: pass --api-key or set LABEL_STUDIO_API_KEY")
    client = LabelStudio(base_url=url.rstrip("/"), api_key=api_key, timeout=60)
    with server_errors(url, "checking the API key"):
        client.users.whoami()
    return client


def find_project(client, url: str, ref: str):
    """A project by id (digits) or exact title; UsageError when there is none."""
    with server_errors(url, f"looking up project {ref!r}"):
        if ref.isdigit():
            try:
                return client.projects.get(id=int(ref))
            except Exception as e:  # noqa: BLE001 - the SDK raises ApiError 404
                if getattr(e, "status_code", None) == 404:
                    raise UsageError(f"no project with id {ref} on {url}") from None
                raise
        matches = [p for p in client.projects.list(title=ref) if p.title == ref]
    if not matches:
        raise UsageError(f"no project titled {ref!r} on {url}")
    return sorted(matches, key=lambda p: p.id)[0]


@dataclass
class PushResult:
    project_id: int
    created: bool
    imported: int
    existing: int


def push(workspace: Path, name: str, kind: str, url: str, api_key: str, title: str | None = None, overlap: int | None = None) -> PushResult:
    tasks = build_tasks(workspace, name, kind)
    config = labeling_config(kind)
    validate_config(config)
    client = connect(url, api_key)
    title = title or f"{name}-{kind}"
    with server_errors(url, f"creating or updating project {title!r}"):
        existing = [p for p in client.projects.list(title=title) if p.title == title]
        extra = {"maximum_annotations": overlap, "overlap_cohort_percentage": 100} if overlap else {}
        if existing:
            project = sorted(existing, key=lambda p: p.id)[0]
            created = False
            if (project.label_config or "").strip() != config.strip() or extra:
                client.projects.update(id=project.id, label_config=config, **extra)
        else:
            project = client.projects.create(title=title, label_config=config, **extra)
            created = True
        have = set()
        for t in client.tasks.list(project=project.id, fields="all"):
            item = (t.data or {}).get("item_id")
            if item is not None:
                have.add(str(item))
        new = [t for t in tasks if str(t["data"]["item_id"]) not in have]
        for start in range(0, len(new), 500):
            client.projects.import_tasks(id=project.id, request=new[start : start + 500], return_task_ids=True)
    return PushResult(project_id=project.id, created=created, imported=len(new), existing=len(tasks) - len(new))


def user_emails(client, url: str) -> dict[str, str]:
    with server_errors(url, "listing users"):
        return {str(u.id): u.email for u in client.users.list() if getattr(u, "email", None)}


def project_source(url: str, project_id: int) -> str:
    """What the manifest's `sources[].path` and quarantine's `source` call a pulled project: its
    page on the server (any user:password@ in the URL left out), the same on every pull."""
    parts = urlsplit(url.rstrip("/"))
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, f"{parts.path}/projects/{project_id}", "", ""))


def pull(url: str, api_key: str, project_ref: str, workspace: Path, name: str):
    """Export every task of the project and mirror it into dataset NAME (replaced atomically).
    The export goes through a temporary file, but the dataset records the project's URL, so two
    pulls of an unchanged project give byte-identical tables and quarantine."""
    from helpsteer.console import quiet
    from helpsteer.ingest import ingest

    store.check_name(name)
    client = connect(url, api_key)
    project = find_project(client, url, project_ref)
    with server_errors(url, f"exporting project {project.id}"):
        raw = b"".join(client.projects.exports.download_sync(id=project.id, export_type="JSON", download_all_tasks=True))
    users = user_emails(client, url)
    with tempfile.TemporaryDirectory(prefix="ls-pull-", ignore_cleanup_errors=True) as tmp, quiet("helpsteer.ingest"):  # (pull reports the ingest itself)
        path = Path(tmp) / f"label-studio-project-{project.id}.json"
        path.write_bytes(raw)
        shared = {"label_studio_users": users, "label_studio_config": project.label_config}
        report = ingest([path], workspace, name, fmt="label-studio", mode="replace", shared=shared,
                        source_names={path: project_source(url, project.id)})
    return project, report
