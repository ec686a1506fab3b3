"""The pages' sessions and forms: /login and /logout (--auth tokens), the body of a form
post, and its CSRF token (DESIGN.md section 9).

A form post is `application/x-www-form-urlencoded` UTF-8 (parsed here with the standard
library); every one carries `csrf`, the HMAC of the page session (`Auth.csrf_token`), and is
refused (403, nothing changed) without it, with a wrong one, or from another site (the
guard). The login form has no session yet: its token is bound to a random pre-login cookie.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request, Response

from agentstage.errors import NotFound, PolicyDenied, UsageError
from agentstage.server.auth import SESSION_COOKIE, SESSION_SECONDS, Auth, Caller, page_reader
from agentstage.server.page_base import PageRoute, page, secured

LOGIN_COOKIE = "agentstage_login"
MAX_FIELDS = 2000


async def form_data(request: Request) -> dict[str, str]:
    """The posted form's fields (the first value of each name); 400 for anything else."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise UsageError(f"a form post must be application/x-www-form-urlencoded, not "
                         f"{kind or 'none'}", hint="send the form from this server's pages")
    body = await request.body()
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=False,
                          encoding="utf-8", errors="strict", max_num_fields=MAX_FIELDS)
    except (UnicodeError, ValueError):
        raise UsageError("the form is not UTF-8 text", hint="send the form from this "
                         "server's pages") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value.replace("\r\n", "\n"))
    return form


FormDep = Annotated[dict[str, str], Depends(form_data)]


def checked(request: Request, form: FormDep, caller: Annotated[Caller, Depends(page_reader)]
            ) -> Caller:
    """The caller of a form post whose CSRF token is the session's; else 403."""
    auth: Auth = request.app.state.auth
    expected = auth.csrf_token(request.state.session)
    if not hmac.compare_digest(form.get("csrf", "").encode(), expected.encode()):
        raise PolicyDenied("the form's CSRF token is missing or does not match your session; "
                           "nothing was changed",
                           hint="load the page again and send the form from it")
    return caller


PosterDep = Annotated[Caller, Depends(checked)]


def secure_cookie(request: Request) -> bool:
    """Whether the browser reached us over https (directly, or through a proxy that says so):
    then the cookie is Secure too."""
    return request.url.scheme == "https" or \
        request.headers.get("x-forwarded-proto", "").strip().lower() == "https"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this server only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(ord(c) < 33 for c in target) or target.startswith(("/login", "/logout")):
        return "/"
    return target


def redirect(location: str, status: int = 303) -> Response:

    return secured(Response(status_code=status, headers={"Location": location,
                                                          "Cache-Control": "no-store"}))


def login_redirect(request: Request) -> Response:
    """To the login page, coming back here afterwards (GETs only; a post goes back to /)."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = safe_next(here if request.method == "GET" else None)
    return redirect("/login" + (f"?{urlencode({'next': target})}" if target != "/" else ""))


router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _tokens_only(request: Request) -> Auth:
    auth: Auth = request.app.state.auth
    if auth.mode != "tokens":
        raise NotFound(f"this server does not sign in with tokens (--auth {auth.describe})",
                       hint="the proxy (or --auth none) says who you are; open the agents "
                            "page")
    return auth


def _login_page(request: Request, auth: Auth, nonce: str, target: str, status: int = 200,
                error: str | None = None) -> Response:

    response = page(request, "login.html", status, next=target, error=error,
                    login_csrf=auth.sign("login", nonce), viewer=None,
                    crumbs=[("Sign in", None)])
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path="/login", httponly=True,
                        samesite="strict", secure=secure_cookie(request))
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    """The token login (--auth tokens)."""
    auth = _tokens_only(request)
    return _login_page(request, auth, secrets.token_hex(16), safe_next(next))


@router.post("/login")
def login(request: Request, form: FormDep) -> Response:
    """A token in, a session cookie out (HttpOnly, SameSite=Strict, 12 hours, ends with its
    token); the token itself is never stored in the browser."""
    auth = _tokens_only(request)
    target = safe_next(form.get("next"))
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not hmac.compare_digest(form.get("csrf", "").encode(),
                                            auth.sign("login", nonce).encode()):
        raise PolicyDenied("the sign-in form's CSRF token is missing or wrong; nobody was "
                           "signed in", hint="load /login again and sign in from it")
    assert auth.tokens is not None
    entry = auth.tokens.lookup(form.get("token", "").strip())
    if entry is None:
        return _login_page(request, auth, secrets.token_hex(16), target, 401,
                           "That token is unknown, revoked or expired. Ask an admin for a new "
                           "one (agentstage token create NAME).")
    response = redirect(target)
    response.set_cookie(SESSION_COOKIE, auth.new_session(entry), max_age=SESSION_SECONDS,
                        path="/", httponly=True, samesite="strict",
                        secure=secure_cookie(request))
    response.delete_cookie(LOGIN_COOKIE, path="/login", httponly=True, samesite="strict")
    return response


@router.post("/logout")
def logout(request: Request, _caller: PosterDep) -> Response:
    """Forget the session cookie in this browser (the token stays valid until revoked)."""
    auth: Auth = request.app.state.auth
    response = redirect("/login" if auth.mode == "tokens" else "/")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=secure_cookie(request))
    return response
