"""Dashboard views (thin: the work is in services.py)."""
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.shortcuts import render


@login_not_required
def signin(request):
    return auth_views.LoginView.as_view(template_name="credentials/signin.html")(request)


def logins(request):
    items = request.user.smtp_logins.all()
    return render(request, "credentials/logins.html", {"logins": items})
