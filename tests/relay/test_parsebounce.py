"""`manage.py parsebounce FILE... [--json]` through call_command, on the written samples."""
import io
import json

import pytest
from django.core.management import CommandError, call_command

from . import bounce_samples as s


def run(*args) -> str:
    out = io.StringIO()
    call_command("parsebounce", *args, stdout=out)
    return out.getvalue()


def test_json_one_object_per_file_exact_shape(tmp_path):
    bounce, arf, vacation = tmp_path / "b.eml", tmp_path / "a.eml", tmp_path / "v.eml"
    bounce.write_bytes(s.POSTFIX_TEXT)
    arf.write_bytes(s.ARF_RFC)
    vacation.write_bytes(s.VACATION)
    lines = run(str(bounce), str(arf), str(vacation), "--json").splitlines()
    objs = [json.loads(line) for line in lines]
    assert [list(o) for o in objs] == [["file", "type", "feedback_type", "recipients"]] * 3
    assert objs[0] == {
        "file": str(bounce), "type": "bounce", "feedback_type": None,
        "recipients": [
            {"address": "nobody@example.org", "status": "5.1.1", "action": "failed",
             "class": "hard", "reason": "invalid_recipient",
             "diagnostic": objs[0]["recipients"][0]["diagnostic"],
             "remote_mta": "mx.example.org"},
            {"address": "gone@nxdomain.example", "status": "5.0.0", "action": "failed",
             "class": "hard", "reason": "bad_domain",
             "diagnostic": objs[0]["recipients"][1]["diagnostic"], "remote_mta": None},
        ]}
    assert objs[0]["recipients"][0]["diagnostic"].startswith("host mx.example.org[192.0.2.7]")
    assert (objs[1]["type"], objs[1]["feedback_type"]) == ("complaint", "abuse")
    assert objs[1]["recipients"][0]["address"] == "user@example.com"
    assert objs[2] == {"file": str(vacation), "type": "auto-reply", "feedback_type": None,
                       "recipients": []}


def test_human_output_says_why(tmp_path):
    path = tmp_path / "exim.eml"
    path.write_bytes(s.EXIM)
    out = run(str(path))
    assert "exim.eml: bounce, found by text" in out
    assert "quota@example.org: 4.2.2 failed -> soft / mailbox_full" in out
    assert "said: host mx.example.org [192.0.2.9]" in out


def test_unreadable_file_is_reported_after_the_others(tmp_path):
    good = tmp_path / "g.eml"
    good.write_bytes(s.QMAIL)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="could not read: .*missing.eml"):
        call_command("parsebounce", str(tmp_path / "missing.eml"), str(good), "--json",
                     stdout=out, stderr=err)
    assert json.loads(out.getvalue())["type"] == "bounce"
    assert "missing.eml" in err.getvalue()
