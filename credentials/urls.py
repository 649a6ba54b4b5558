"""Dashboard URLs: sign-in, logins, connect, API keys, staff audit."""
from django.urls import path

from . import apikey_views, views

urlpatterns = [
    path("signin/", views.SigninView.as_view(), name="signin"),
    path("signout/", views.SignoutView.as_view(), name="signout"),
    path("account/password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("", views.logins, name="logins"),
    path("logins/new/", views.login_create, name="login_create"),
    path("logins/<int:login_id>/edit/", views.login_edit, name="login_edit"),
    path("logins/<int:login_id>/enabled/", views.login_set_enabled, name="login_set_enabled"),
    path("logins/<int:login_id>/reset/", views.login_reset, name="login_reset"),
    path("logins/<int:login_id>/delete/", views.login_delete, name="login_delete"),
    path("connect/", views.connect, name="connect"),
    path("api-keys/", apikey_views.api_keys, name="api_keys"),
    path("api-keys/<int:key_id>/revoke/", apikey_views.api_key_revoke, name="api_key_revoke"),
    path("audit/", views.audit_logins, name="audit_logins"),
    path("audit/logins.csv", views.audit_logins_csv, name="audit_logins_csv"),
    path("audit/log/", views.audit_log, name="audit_log"),
]
