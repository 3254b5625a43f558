"""Login and logout (Django's own views, with a message for an expired session)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.http import HttpRequest


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["expired"] = self.request.GET.get("expired") == "1"
        return context


def client_address(request: HttpRequest) -> str:
    """Whose failed logins are counted together (with the user name): the connecting address, as
    everywhere else in the service (a proxy in front sets it: see the README's deployment)."""
    return str(request.META.get("REMOTE_ADDR") or "")
