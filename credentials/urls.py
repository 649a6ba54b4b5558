"""Dashboard URLs: sign-in, logins, connect, staff audit."""
from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("signin/", views.signin, name="signin"),
    path("signout/", auth_views.LogoutView.as_view(), name="signout"),
    path("", views.logins, name="logins"),
]
