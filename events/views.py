"""The Statistics page: a customer's mail per day (events.stats), per login and per tag, over a
chosen range, drawn as a server-side SVG chart. Staff may look at one customer or all."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from credentials.models import Login

from . import stats
from .chart import line_chart
from .forms import StatsForm

SERIES = [("sent", "sent"), ("delivered", "delivered"), ("hard", "bounced hard"),
          ("soft", "bounced soft"), ("complaints", "complaints"), ("opened", "opened"),
          ("clicked", "clicked")]


def _owner(request: HttpRequest) -> int | None:
    """Whose mail: the user's own; staff: ?customer= (404 if unknown), else everyone's."""
    if not request.user.is_staff:
        return request.user.pk
    name = request.GET.get("customer", "").strip()
    if not name:
        return None
    user = get_user_model().objects.filter(username=name).first()
    if user is None:
        raise Http404("no such customer")
    return user.pk


@require_GET
def statistics(request: HttpRequest) -> HttpResponse:
    owner_id = _owner(request)
    logins = Login.objects.order_by("username")
    if owner_id is not None:
        logins = logins.filter(owner_id=owner_id)
    chosen = request.GET.get("login", "")
    if chosen and not (chosen.isascii() and chosen.isdigit() and len(chosen) <= 18
                       and logins.filter(pk=int(chosen)).exists()):
        raise Http404("no such login")  # another customer's login is not found either
    choices = list(logins.values_list("pk", "username")) if owner_id is not None or chosen \
        else []
    if chosen and owner_id is None:
        choices = list(logins.filter(pk=int(chosen)).values_list("pk", "username"))
    now = timezone.now()
    form = StatsForm(request.GET, logins=choices, staff=request.user.is_staff,
                     today=now.date())
    context = {"form": form}
    if not form.is_valid():
        return render(request, "events/stats.html", context, status=400)
    data = form.cleaned_data
    q = stats.Query(owner_id, data["start"], data["end"], login_id=data["login"],
                    tag=data["tag"], machine=data["machine"])
    got = stats.report(q, now)
    days = [d["day"] for d in got["days"]]
    context.update({
        "query": q, "report": got, "series": SERIES,
        "chart": line_chart(days, [(key, label, [d[key] for d in got["days"]])
                                   for key, label in SERIES],
                            title=f"Per day, {q.start:%Y-%m-%d} to {q.end:%Y-%m-%d}"),
    })
    return render(request, "events/stats.html", context)
