"""The operator web app: ``create_app(db)`` -> a FastAPI application over one store.

Pages are rendered on the server (Jinja2 templates in ``templates/``, one vendored script and
stylesheet in ``static/``, no CDN). Every route but ``/login`` and ``/static`` needs a session
(:mod:`.sessions`); pages without one redirect to the login page, API and media routes answer 401.
Every POST carries the session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``), else
403. Roles and camera scopes come from :mod:`pipeline.access.users`; everything a user sees of
people's data is audited through :mod:`pipeline.access.audit`; corrections, erasure and evidence
exports are :mod:`pipeline.access`'s functions (the only writes this app makes).
"""
from __future__ import annotations

import io
import secrets
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from pipeline.access import audit, corrections, erasure, users
from pipeline.config import RetentionConfig, WebConfig
from pipeline.store import StoreError, StoreReader, store_location
from reid_models.common import UserError, iso_time, one_line, parse_time

from . import data
from .media import MediaUnavailable, SegmentCache, segment_frame, snapshot
from .search import QueryEmbedder, SavedSearch, decode_query, result_page
from .sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    LoginLimiter,
    Session,
    SessionStore,
    same_token,
)

PACKAGE = Path(__file__).resolve().parent
API_PREFIXES = ("/api/", "/media/")


class NeedLogin(Exception):
    """No valid session: pages redirect to /login, API and media routes answer 401."""


class Refused(Exception):
    """A request the user may not make (status 403/404/400/413/429) with a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Caller:
    """The session and the user behind a request."""

    session: Session
    user: users.User

    @property
    def name(self) -> str:
        return self.user.name


class WebApp:
    """State of one server: the store (path and read-only reader), sessions, login limiter, lazily
    built embedder, camera monitor and segment cache."""

    def __init__(self, db: str | Path, cfg: WebConfig, tls: bool, device: str, cache_dir: Path | None) -> None:
        self.db = store_location(db)  # a store file (Path) or a PostgreSQL URL (str)
        self.cfg, self.tls = cfg, tls
        self.reader = StoreReader(self.db)
        self.sessions = SessionStore(cfg)
        self.limiter = LoginLimiter(cfg)
        self.embedder = QueryEmbedder(self.reader, device=device)
        self.monitor = data.CameraMonitor()
        self._tmp = tempfile.TemporaryDirectory(prefix="camreid-web-") if cache_dir is None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path(self._tmp.name)
        self.segments = SegmentCache(self.cache_dir / "segments", cfg.segment_max_frames)

    def reopen(self) -> None:
        """A fresh reader after erasure: the old one's RAM cache held the erased embeddings."""
        old, self.reader = self.reader, StoreReader(self.db)
        self.embedder.reader = self.reader
        old.close()

    # ------------------------------------------------------------------ who is asking
    def caller(self, request: Request) -> Caller:
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise NeedLogin()
        user = users.get_user(self.db, session.user)
        if user is None:  # removed since logging in
            self.sessions.end(session.token)
            raise NeedLogin()
        return Caller(session, user)

    def require(self, request: Request, action: str) -> Caller:
        who = self.caller(request)
        if not who.user.may(action):
            raise Refused(403, f"{who.user.role}s may not {action}: ask an admin for another role")
        return who

    async def form(self, request: Request, who: Caller):
        """The POSTed form, after checking its CSRF token (403 when missing or wrong)."""
        form = await request.form()
        token = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
        if not same_token(token, who.session.csrf):
            raise Refused(403, "missing or wrong CSRF token: reload the page and try again")
        return form


def _fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _time_field(text: str | None, name: str) -> float | None:
    """A datetime-local field (UTC) or ISO/epoch text -> epoch seconds; None when empty."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError as e:
        raise Refused(400, f"{name}: {one_line(e)}") from None


def _box_field(text: str | None) -> tuple[float, ...] | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        box = tuple(float(v) for v in text.replace(" ", ",").split(",") if v)
    except ValueError:
        box = ()
    if len(box) != 4:
        raise Refused(400, f"box must be four numbers x1,y1,x2,y2 in photo pixels, got {text!r}")
    return box


def _safe_next(target: str | None) -> str:
    """Only a local path is a redirect target after login (no //host, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def create_app(db: str | Path, cfg: WebConfig = WebConfig(), tls: bool = False, device: str = "auto",
               cache_dir: str | Path | None = None) -> FastAPI:
    """The app over store ``db`` (StoreError if it cannot be opened). tls: the server speaks HTTPS
    (session cookies get ``Secure``). cache_dir: where video segments are kept (default: a temp dir)."""
    web = WebApp(db, cfg, tls, device, Path(cache_dir) if cache_dir is not None else None)
    app = FastAPI(title="camreid", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = web
    templates = Jinja2Templates(directory=str(PACKAGE / "templates"))
    templates.env.filters["utc"] = _fmt_time
    templates.env.filters["score"] = lambda s: f"{s:.3f}"
    app.mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static")

    def render(request: Request, name: str, who: Caller | None, status: int = 200, **context) -> Response:
        context.update(user=who.user if who else None, csrf=who.session.csrf if who else "", request=request)
        return templates.TemplateResponse(request, name, context, status_code=status)

    # ------------------------------------------------------------------ errors and headers
    @app.exception_handler(NeedLogin)
    async def _need_login(request: Request, exc: NeedLogin):
        if request.url.path.startswith(API_PREFIXES):
            return JSONResponse({"error": "log in first"}, status_code=401)
        return RedirectResponse("/login?next=" + quote(request.url.path), status_code=303)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused):
        wants_json = request.headers.get("accept", "").startswith("application/json")
        if request.url.path.startswith(API_PREFIXES) or wants_json:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        who = None
        try:
            who = web.caller(request)
        except NeedLogin:
            pass
        return render(request, "error.html", who, status=exc.status, message=exc.message)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > cfg.upload_max_bytes + 64 * 1024:
                return JSONResponse({"error": f"upload larger than {cfg.upload_max_bytes // 1024} KiB"},
                                    status_code=413)
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
                                    "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    # ------------------------------------------------------------------ login
    @app.get("/login")
    def login_page(request: Request, next: str = "/"):
        token = secrets.token_urlsafe(24)
        response = render(request, "login.html", None, next=_safe_next(next), login_csrf=token)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=web.tls, path="/login")
        return response

    @app.post("/login")
    async def login(request: Request):
        form = await request.form()
        name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
        target = _safe_next(str(form.get("next", "/")))
        if not same_token(form.get(CSRF_FIELD), request.cookies.get(LOGIN_COOKIE)):
            raise Refused(403, "missing or wrong CSRF token on the login form: reload the login page")
        client = request.client.host if request.client else "?"
        keys = (f"user:{name}", f"addr:{client}")
        wait = web.limiter.blocked(*keys)
        if wait > 0:
            await run_in_threadpool(audit.record, web.db, "anonymous", "login_failed",
                                    {"name": name[:64], "source": client, "reason": "rate limited"})
            raise Refused(429, f"too many failed logins: wait {int(wait) + 1} s and try again")
        user = await run_in_threadpool(users.login, web.db, name, password, client)  # audits login / login_failed
        if user is None:
            web.limiter.failed(*keys)
            token = secrets.token_urlsafe(24)
            response = render(request, "login.html", None, status=401, next=target, login_csrf=token,
                            message="wrong user name or password")
            response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=web.tls, path="/login")
            return response
        web.limiter.succeeded(keys[0])
        session = web.sessions.create(user.name)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, session.token, httponly=True, samesite="strict", secure=web.tls, path="/")
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    @app.post("/logout")
    async def logout(request: Request):
        who = web.caller(request)
        await web.form(request, who)
        web.sessions.end(who.session.token)
        await run_in_threadpool(audit.record, web.db, who.name, "logout", {})
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/")
    def home(request: Request):
        who = web.caller(request)
        return RedirectResponse("/search" if who.user.may("search") else "/identities", status_code=303)

    # ------------------------------------------------------------------ search
    def search_form(request: Request, who: Caller, status: int = 200, message: str | None = None):
        return render(request, "search.html", who, status=status, cameras=data.visible_cameras(web.reader, who.user),
                    message=message, max_kib=cfg.upload_max_bytes // 1024)

    @app.get("/search")
    def search_page(request: Request):
        return search_form(request, web.require(request, "search"))

    async def new_search(request: Request) -> tuple[Caller, SavedSearch, object]:
        who = web.require(request, "search")
        form = await web.form(request, who)
        upload = form.get("photo")
        if upload is None or isinstance(upload, str):
            raise Refused(400, "no photo: upload, drop or paste a JPEG/PNG photo of the person")
        photo = await upload.read(cfg.upload_max_bytes + 1)
        if len(photo) > cfg.upload_max_bytes:
            raise Refused(413, f"the photo is larger than {cfg.upload_max_bytes // 1024} KiB: send a smaller one")
        visible = data.visible_cameras(web.reader, who.user)
        asked = [str(c) for c in form.getlist("cameras") if str(c)]
        unknown = [c for c in asked if c not in visible]
        if unknown:  # another camera's id, or one the store lacks: named the same way
            raise Refused(400, f"unknown camera {', '.join(unknown)}; you may search {', '.join(visible) or 'none'}")
        since = _time_field(form.get("since"), "since")
        until = _time_field(form.get("until"), "until")
        if since is not None and until is not None and since > until:
            raise Refused(400, "since is later than until: the time window is empty; swap them")
        box = _box_field(form.get("box"))
        try:
            crop = decode_query(photo, box)
        except UserError as e:
            raise Refused(400, one_line(e)) from None
        embedding = await run_in_threadpool(web.embedder, crop)
        saved = SavedSearch.make(secrets.token_urlsafe(12), photo, crop, embedding, asked or visible, since, until)
        first = await run_in_threadpool(result_page, web.reader, saved, 1, cfg.page_size)
        web.sessions.save_search(who.session, saved.search_id, saved)
        details = audit.search_details(photo, {**saved.filters(), "box": list(box) if box else None},
                                       first.identities)  # the same row as the CLI's query writes
        await run_in_threadpool(audit.record, web.db, who.name, "search", {**details, "more": first.has_more})
        return who, saved, first

    @app.post("/search")
    async def search(request: Request):
        try:
            _, saved, _ = await new_search(request)
        except Refused as e:
            if e.status in (400, 413):
                return search_form(request, web.require(request, "search"), status=e.status, message=e.message)
            raise
        return RedirectResponse(f"/search/{saved.search_id}", status_code=303)

    def saved_search(who: Caller, search_id: str) -> SavedSearch:
        saved = who.session.searches.get(search_id)
        if saved is None:
            raise Refused(404, "no such search in this session (searches end with the session): search again")
        return saved

    def _page_number(page: int) -> int:
        if page < 1:
            raise Refused(400, f"page must be 1 or more, got {page}")
        return page

    @app.get("/search/{search_id}")
    def results(request: Request, search_id: str, page: int = 1):
        who = web.require(request, "search")
        saved = saved_search(who, search_id)
        result = result_page(web.reader, saved, _page_number(page), cfg.page_size)
        return render(request, "results.html", who, saved=saved, result=result)


    @app.post("/api/search")
    async def api_search(request: Request):
        _, saved, first = await new_search(request)
        return {"search_id": saved.search_id, "photo_sha256": saved.photo_sha256, "page": 1,
                "has_more": first.has_more, "identities": [h.to_dict() for h in first.identities]}

    @app.get("/api/search/{search_id}")
    def api_results(request: Request, search_id: str, page: int = 1):
        who = web.require(request, "search")
        result = result_page(web.reader, saved_search(who, search_id), _page_number(page), cfg.page_size)
        return {"search_id": search_id, "page": result.page, "has_more": result.has_more,
                "identities": [h.to_dict() for h in result.identities]}

    @app.get("/media/query/{search_id}.jpg")
    def query_crop(request: Request, search_id: str):
        who = web.require(request, "search")
        return Response(saved_search(who, search_id).crop_jpeg, media_type="image/jpeg")

    # ------------------------------------------------------------------ identities
    @app.get("/identities")
    def identities(request: Request, page: int = 1):
        who = web.require(request, "browse")
        rows, more = data.list_identities(web.reader, who.user, _page_number(page), cfg.page_size)
        return render(request, "identities.html", who, rows=rows, page=page, has_more=more)

    def show_identity(request: Request, who: Caller, view: data.IdentityView | None, search_id: str | None):
        if view is None:
            raise Refused(404, "no such identity (or none of its sightings is on a camera you may see)")
        audit.record(web.db, who.name, "view_identity",
                     {"identity": view.global_id, "tracks": [t.track.id for t in view.tracks]})
        saved = who.session.searches.get(search_id) if search_id else None
        return render(request, "identity.html", who, view=view, search_id=saved.search_id if saved else "",
                     span=max(view.end_time - view.start_time, 1e-3))

    @app.get("/identity/{global_id:int}")
    def identity(request: Request, global_id: int, search: str | None = None):
        who = web.require(request, "browse")
        return show_identity(request, who, data.identity_view(web.reader, who.user, global_id=global_id), search)

    @app.get("/track/{track_id:int}")
    def lone_track(request: Request, track_id: int, search: str | None = None):
        who = web.require(request, "browse")
        track = data.visible_track(web.reader, who.user, track_id)
        if track is not None and track.global_id is not None:
            suffix = f"?search={quote(search)}" if search else ""
            return RedirectResponse(f"/identity/{track.global_id}{suffix}", status_code=303)
        return show_identity(request, who, data.identity_view(web.reader, who.user, track_id=track_id), search)

    def visible_identity(who: Caller, global_id: int) -> data.IdentityView:
        view = data.identity_view(web.reader, who.user, global_id=global_id)
        if view is None:
            raise Refused(404, f"no identity {global_id} on the cameras you may see")
        return view

    def visible_track_or_404(who: Caller, track_id: int):
        track = data.visible_track(web.reader, who.user, track_id)
        if track is None:
            raise Refused(404, f"no track {track_id} on the cameras you may see")
        return track

    async def correction(request: Request, fn, *args) -> None:
        try:
            await run_in_threadpool(fn, web.db, *args)
        except users.AccessDenied as e:  # e.g. an identity with tracks on a camera the user may not see
            raise Refused(403, one_line(e)) from None
        except (UserError, StoreError) as e:
            raise Refused(400, one_line(e)) from None

    @app.post("/identity/{global_id:int}/merge")
    async def merge(request: Request, global_id: int):
        who = web.require(request, "correct")
        form = await web.form(request, who)
        try:
            other = int(str(form.get("other", "")).strip().lstrip("Gg"))
        except ValueError:
            raise Refused(400, "merge with: give the other identity's number (like 12)") from None
        if other == global_id:
            raise Refused(400, f"identity {global_id} cannot be merged with itself")
        visible_identity(who, global_id)
        visible_identity(who, other)
        await correction(request, corrections.merge_identities, global_id, other, who.name)
        return RedirectResponse(f"/identity/{global_id}", status_code=303)

    async def track_correction(request: Request, track_id: int, fn) -> Response:
        who = web.require(request, "correct")
        await web.form(request, who)
        visible_track_or_404(who, track_id)
        await correction(request, fn, track_id, who.name)
        track = visible_track_or_404(who, track_id)
        target = f"/identity/{track.global_id}" if track.global_id is not None else f"/track/{track_id}"
        return RedirectResponse(target, status_code=303)

    @app.post("/track/{track_id:int}/split")
    async def split(request: Request, track_id: int):
        return await track_correction(request, track_id, corrections.split_track)

    @app.post("/track/{track_id:int}/confirm")
    async def confirm(request: Request, track_id: int):
        return await track_correction(request, track_id, corrections.confirm_link)

    @app.post("/track/{track_id:int}/reject")
    async def reject(request: Request, track_id: int):
        return await track_correction(request, track_id, corrections.reject_link)

    @app.post("/identity/{global_id:int}/export")
    async def export(request: Request, global_id: int):
        who = web.require(request, "export")
        form = await web.form(request, who)
        visible_identity(who, global_id)
        if who.user.cameras is not None:
            raise Refused(403, "an evidence export holds every camera of an identity: ask an unscoped operator")
        saved = who.session.searches.get(str(form.get("search", "")))
        with tempfile.TemporaryDirectory(prefix="camreid-evidence-") as tmp:
            from pipeline.access import evidence

            try:
                out = await run_in_threadpool(
                    evidence.export_evidence, web.db, global_id, Path(tmp) / f"identity_{global_id}", who.name,
                    saved.crop_jpeg if saved else None,
                    {"photo_sha256": saved.photo_sha256, **saved.filters()} if saved else None)
            except (UserError, StoreError) as e:
                raise Refused(400, one_line(e)) from None
            buf = io.BytesIO()
            out = Path(out)
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
                for f in sorted(out.rglob("*")) if out.is_dir() else [out]:
                    if f.is_file():
                        z.write(f, f.relative_to(out.parent))
        return Response(buf.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="identity_{global_id}_evidence.zip"'})

    # ------------------------------------------------------------------ media
    @app.get("/media/sample/{sample_id:int}.jpg")
    def sample_jpeg(request: Request, sample_id: int):
        who = web.require(request, "browse")
        jpeg = data.sample_thumbnail(web.reader, who.user, sample_id)
        if not jpeg:
            raise Refused(404, f"no thumbnail {sample_id}")
        return Response(jpeg, media_type="image/jpeg")

    @app.get("/media/track/{track_id:int}.webm")
    def track_video(request: Request, track_id: int):
        who = web.require(request, "browse")
        track = visible_track_or_404(who, track_id)
        try:
            path = web.segments.webm(web.reader, track)
        except MediaUnavailable as e:
            raise Refused(404, one_line(e)) from None
        return FileResponse(path, media_type="video/webm")

    @app.get("/media/track/{track_id:int}/frame/{k:int}.jpg")
    def track_frame(request: Request, track_id: int, k: int):
        who = web.require(request, "browse")
        track = visible_track_or_404(who, track_id)
        try:
            return Response(segment_frame(web.reader, track, k, cfg.segment_max_frames), media_type="image/jpeg")
        except MediaUnavailable as e:
            raise Refused(404, one_line(e)) from None

    @app.get("/media/camera/{camera_id}/snapshot.jpg")
    def camera_snapshot(request: Request, camera_id: str):
        who = web.require(request, "browse")
        if camera_id not in data.visible_cameras(web.reader, who.user):
            raise Refused(404, f"no camera {camera_id}")
        status = {s.camera_id: s for s in web.monitor.statuses(web.reader, who.user)}[camera_id]
        try:
            return Response(snapshot(web.reader, camera_id, status.last_frame), media_type="image/jpeg")
        except MediaUnavailable as e:
            raise Refused(404, one_line(e)) from None

    # ------------------------------------------------------------------ cameras
    @app.get("/cameras")
    def cameras(request: Request):
        who = web.require(request, "browse")
        return render(request, "cameras.html", who, cameras=web.monitor.statuses(web.reader, who.user))

    @app.get("/api/cameras")
    def api_cameras(request: Request):
        who = web.require(request, "browse")
        return {"cameras": [s.__dict__ | {"last_iso": iso_time(s.last_time) if s.last_time else None}
                            for s in web.monitor.statuses(web.reader, who.user)]}

    # ------------------------------------------------------------------ admin
    @app.get("/admin/users")
    def users_page(request: Request, message: str | None = None):
        who = web.require(request, "admin")
        return render(request, "users.html", who, users=users.list_users(web.db), roles=users.ROLES,
                     cameras=[c for c, _, _ in web.reader.cameras()], message=message)

    @app.post("/admin/users")
    async def add_user(request: Request):
        who = web.require(request, "admin")
        form = await web.form(request, who)
        name, role = str(form.get("name", "")).strip(), str(form.get("role", ""))
        cams = [str(c) for c in form.getlist("cameras") if str(c)] or None
        try:
            await run_in_threadpool(users.add_user, web.db, name, role, str(form.get("password", "")), cams)
        except (UserError, StoreError) as e:
            raise Refused(400, one_line(e)) from None
        await run_in_threadpool(audit.record, web.db, who.name, "users",
                                {"op": "add", "user": name, "role": role, "cameras": cams})
        return RedirectResponse("/admin/users", status_code=303)

    @app.post("/admin/users/remove")
    async def remove_user(request: Request):
        who = web.require(request, "admin")
        form = await web.form(request, who)
        name = str(form.get("name", "")).strip()
        if name == who.name:
            raise Refused(400, "you cannot remove yourself: log in as another admin")
        try:
            await run_in_threadpool(users.remove_user, web.db, name)
        except (UserError, StoreError) as e:
            raise Refused(400, one_line(e)) from None
        web.sessions.end_user(name)
        await run_in_threadpool(audit.record, web.db, who.name, "users", {"op": "remove", "user": name})
        return RedirectResponse("/admin/users", status_code=303)

    @app.get("/admin/audit")
    def audit_page(request: Request, user: str | None = None, action: str | None = None, limit: int = 200):
        who = web.require(request, "admin")
        entries = audit.read(web.db, user=user or None, action=action or None)
        verdict = audit.verify(web.db)
        return render(request, "audit.html", who, entries=list(reversed(entries))[:max(1, limit)], verdict=verdict,
                     actions=audit.ACTIONS, filter_user=user or "", filter_action=action or "")

    @app.get("/admin/erasure")
    def erasure_page(request: Request, message: str | None = None):
        who = web.require(request, "admin")
        return render(request, "erasure.html", who, message=message, report=None)

    @app.post("/admin/forget")
    async def forget(request: Request):
        who = web.require(request, "admin")
        form = await web.form(request, who)
        try:
            gid = int(str(form.get("global_id", "")).strip().lstrip("Gg"))
        except ValueError:
            raise Refused(400, "forget: give the identity's number (like 12)") from None
        try:
            report = await run_in_threadpool(erasure.forget_identity, web.db, gid, who.name)
        except (UserError, StoreError) as e:
            raise Refused(400, one_line(e)) from None
        web.reopen()
        return render(request, "erasure.html", who, message=f"identity {gid} forgotten", report=report.format())

    @app.post("/admin/purge")
    async def purge(request: Request):
        who = web.require(request, "admin")
        form = await web.form(request, who)
        days = {}
        for key in ("boxes_days", "samples_days", "thumbnails_days", "audit_days"):
            text = str(form.get(key, "")).strip()
            if text:
                try:
                    days[key] = float(text)
                except ValueError:
                    raise Refused(400, f"{key}: expected a number of days, got {text!r}") from None
        if not days:
            raise Refused(400, "purge: give at least one retention period in days")
        dry_run = form.get("dry_run") is not None
        try:
            retention = RetentionConfig(**days)
            report = await run_in_threadpool(erasure.purge, web.db, retention, who.name, dry_run)
        except (UserError, StoreError, ValueError) as e:
            raise Refused(400, one_line(e)) from None
        if not dry_run:
            web.reopen()
        return render(request, "erasure.html", who, report=report.format(),
                      message="purge dry run: nothing deleted" if dry_run else "purged")

    return app
