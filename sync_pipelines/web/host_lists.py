"""Run a host-metrics sync for a host list typed into the form or uploaded as a file (seed 004's
"execute by host list" and "execute by file").

The list follows the host-file rules (:func:`sync_pipelines.engine.host_files.parse_host_list`): one IP
address a line, blank lines and ``#`` comments allowed. A list with a malformed line is not launched:
the form comes back with every such line named by its number and the reason. A valid list launches
a run of ``sync_<name>`` through Dagster's GraphQL API with ``host_ip_list`` (the launchpad's field),
the time range and the ``sync/user`` tag.
"""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from sync_pipelines.config import SyncConfig
from sync_pipelines.config.elasticsearch import ElasticsearchHostsSource, check_time_range
from sync_pipelines.engine.host_files import parse_host_list
from sync_pipelines.errors import LaunchError
from sync_pipelines.kinds import kind_of
from sync_pipelines.kinds.host_metrics import HostOptions
from sync_pipelines.web.site import check_same_origin, site_of

MAX_BODY_BYTES = 5 * 1024 * 1024
"""The largest form (typed list and uploaded file together) the view reads."""


def takes_host_list(cfg: SyncConfig) -> bool:
    """Whether a run of the sync takes a host list (a host-metrics sync)."""
    return issubclass(kind_of(cfg).options, HostOptions)


@dataclass
class HostListForm:
    """What the form sent: the typed list, the uploaded file, the time range, a dry run and the user."""

    typed: str = ""
    file_name: str = ""
    file_text: str = ""
    time_range: str = ""
    dry_run: bool = False
    user: str = ""


@dataclass
class CheckedHosts:
    """The hosts of a form, in first-seen order without duplicates, and what is wrong with it."""

    ips: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_form(form: HostListForm) -> CheckedHosts:
    """The hosts of the typed list then the file; every malformed line is a problem naming where it is."""
    checked = CheckedHosts()
    sources = [("typed list", form.typed), (f"file {form.file_name or 'uploaded'}", form.file_text)]
    for where, text in sources:
        if not text.strip():
            continue
        parsed = parse_host_list(text)
        checked.problems += [f"{where}, {line}" for line in parsed.invalid]
        checked.ips += [ip for ip in parsed.ips if ip not in checked.ips]
    if not checked.ips and not checked.problems:
        checked.problems.append("no host IP: type one per line, or choose a file with one per line")
    if form.time_range:
        try:
            check_time_range(form.time_range)
        except ValueError as exc:
            checked.problems.append(str(exc))
    if not form.user:
        checked.problems.append("enter who runs the hosts")
    return checked


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str, str]]:
    """The fields of a ``multipart/form-data`` body: name -> (file name or "", text)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, tuple[str, str]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        fields[name] = (part.get_filename() or "", data.decode("utf-8", errors="replace"))
    return fields


async def read_form(request: Request) -> HostListForm:
    """The host-list form, posted as ``multipart/form-data`` (with a file) or URL-encoded (typed list only)."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(413, f"the form is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB")
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        fields = _multipart(content_type, body)
    else:
        fields = {k: ("", v[-1]) for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    file_name, file_text = fields.get("file", ("", ""))
    return HostListForm(
        typed=fields.get("hosts", ("", ""))[1],
        file_name=file_name,
        file_text=file_text,
        time_range=fields.get("time_range", ("", ""))[1].strip(),
        dry_run=fields.get("dry_run", ("", ""))[1] == "1",
        user=fields.get("user", ("", ""))[1].strip(),
    )


def _host_sync(request: Request) -> SyncConfig:
    cfg = site_of(request).sync(request.path_params["name"])
    if not takes_host_list(cfg):
        raise HTTPException(404, f"sync {cfg.name!r} takes no host list (it is not a host-metrics sync)")
    return cfg


def _render(request: Request, cfg: SyncConfig, form: HostListForm, problems: list[str], status: int) -> Response:
    assert isinstance(cfg.source, ElasticsearchHostsSource)
    query = request.query_params
    return site_of(request).render(
        request,
        "host_run.html",
        status_code=status,
        cfg=cfg,
        form=form,
        problems=problems,
        configured_range=cfg.source.query_time_range,
        launched=query.get("launched"),
        launched_hosts=query.get("hosts"),
        error=query.get("error"),
    )


def host_run_page(request: Request) -> Response:
    """The host-list form of a host-metrics sync."""
    cfg = _host_sync(request)
    return _render(request, cfg, HostListForm(user=request.query_params.get("by", "")), [], 200)


async def launch_host_run(request: Request) -> Response:
    """Check the list and launch the run; the form again with every problem (400), or with the launched run."""
    check_same_origin(request)
    cfg = _host_sync(request)
    form = await read_form(request)
    checked = check_form(form)
    if checked.problems:
        return _render(request, cfg, form, checked.problems, 400)
    site = site_of(request)
    back = f"/syncs/{cfg.name}/hosts"
    try:
        run_id = await run_in_threadpool(
            site.dagster.launch_hosts,
            cfg.name,
            checked.ips,
            form.time_range or None,
            dry_run=form.dry_run,
            user=form.user,
        )
    except LaunchError as exc:
        return RedirectResponse(f"{back}?{urlencode({'error': str(exc), 'by': form.user})}", 303)
    query = {"launched": run_id, "hosts": len(checked.ips), "by": form.user}
    return RedirectResponse(f"{back}?{urlencode(query)}", 303)
