"""`manage.py mailq [--json] [--all]`: the queue and its recipients, like Postfix's mailq;
`--retry/--hold/--release/--delete QUEUEID...`: the staff actions on it, each audited."""
import argparse
import getpass
import json

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Prefetch

from relay import queue
from relay.models import Message, Recipient

PENDING = [Recipient.State.QUEUED, Recipient.State.DEFERRED, Recipient.State.HELD]
ACTIONS = {
    "retry": (queue.retry_now, "made due now"),
    "hold": (queue.hold, "held"),
    "release": (queue.release, "released"),
    "delete": (queue.delete, "deleted"),
}


def positive_int(text: str) -> int:
    """argparse type for --limit: a count of messages, 1 or more (a slice of a queryset takes
    no negative bound, and 0 would read as "no limit")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


class Command(BaseCommand):
    help = ("List queued messages and their recipients (pending ones; --all for every message), "
            "or retry, hold, release or delete messages by queue id.")

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
        parser.add_argument("--all", action="store_true",
                            help="include delivered, failed and intake")
        parser.add_argument(
            "--limit", type=positive_int, default=None, help="at most this many messages (1+)"
        )
        actions = parser.add_mutually_exclusive_group()
        for name, (_, done) in ACTIONS.items():
            actions.add_argument(f"--{name}", nargs="+", metavar="QUEUEID",
                                 help=f"the pending recipients of these messages are {done}"
                                 if name != "delete" else "delete these messages")

    def handle(self, *args, json: bool, all: bool, limit: int | None, **options):
        for name in ACTIONS:
            if options.get(name):
                return self._act(name, options[name])
        recipients = Recipient.objects.order_by("id")
        messages = Message.objects.defer("raw").order_by("received_at", "id")
        if not all:
            recipients = recipients.filter(state__in=PENDING)
            messages = messages.filter(recipients__state__in=PENDING).distinct()
        messages = messages.prefetch_related(Prefetch("recipients", queryset=recipients))
        messages = messages.select_related("login")
        if limit:
            messages = messages[:limit]
        rows = [_row(m) for m in messages]
        if json:
            self.stdout.write(_dumps(rows))
        else:
            self.stdout.write(_text(rows))

    def _act(self, name: str, queue_ids: list[str]) -> None:
        action, done = ACTIONS[name]
        actor = f"cli:{getpass.getuser()}"
        missing = []
        for queue_id in queue_ids:
            try:
                entry = action(queue_id, actor_name=actor)
            except LookupError:
                missing.append(queue_id)
                continue
            if entry is None:
                self.stdout.write(f"{queue_id}: nothing to do (no recipient in a state for "
                                  f"--{name})")
            else:
                self.stdout.write(f"{queue_id}: {len(entry.recipients)} recipient(s) {done}")
        if missing:
            raise CommandError(f"no message with queue id {', '.join(missing)}")


def _when(value) -> str | None:
    return value.isoformat() if value else None


def _row(m: Message) -> dict:
    return {
        "queue_id": m.queue_id,
        "id": m.pk,
        "kind": m.kind,
        "received_at": m.received_at.isoformat(),
        "size": m.size,
        "mail_from": m.mail_from,
        "login": m.login.username if m.login else None,
        "client_ip": m.client_ip,
        "ret": m.ret,
        "envid": m.envid,
        "features": m.features,
        "tags": m.tags,
        "max_deliver_until": _when(m.max_deliver_until),
        "recipients": [
            {
                "address": r.address,
                "state": r.state,
                "notify": r.notify,
                "orcpt": r.orcpt,
                "attempts": r.attempts,
                "next_attempt_at": _when(r.next_attempt_at),
                "first_deferred_at": _when(r.first_deferred_at),
                "leased_until": _when(r.lease_until),
                "last_code": r.last_code,
                "last_enhanced": r.last_enhanced,
                "last_response": r.last_response,
                "captured": r.captured,
            }
            for r in m.recipients.all()
        ],
    }


def _dumps(rows: list[dict]) -> str:
    return json.dumps({"messages": rows, "count": len(rows)}, indent=2)


def _text(rows: list[dict]) -> str:
    if not rows:
        return "Mail queue is empty"
    out = [f"{'-Queue ID-':<18} {'--Size--':>8} {'----Arrival Time----':<20} -Sender/Recipient-"]
    for r in rows:
        when = r["received_at"][:19].replace("T", " ")
        out.append(f"{r['queue_id']:<18} {r['size']:>8} {when:<20} {r['mail_from'] or '<>'}")
        for rc in r["recipients"]:
            if rc["last_response"]:
                out.append(f"{'':<49}({rc['last_response'][:200]})")
            line = f"{'':<49}{rc['address']} [{rc['state']}]"
            if rc["attempts"]:
                line += f" {rc['attempts']} attempt{'s' if rc['attempts'] != 1 else ''}"
            if rc["state"] in PENDING and rc["next_attempt_at"]:
                line += f", next {rc['next_attempt_at'][:19].replace('T', ' ')}"
            out.append(line)
        out.append("")
    total = sum(r["size"] for r in rows)
    plural = "s" if len(rows) != 1 else ""
    out.append(f"-- {(total + 1023) // 1024} Kbytes in {len(rows)} Request{plural}.")
    return "\n".join(out)
