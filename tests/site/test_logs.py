"""smtpeter_site.logs: a record of several lines is written as that many prefixed lines."""
import logging

from smtpeter_site.logs import EveryLineFormatter


def test_every_line_of_a_record_gets_the_prefix_and_a_traceback_stays_one_block():
    formatter = EveryLineFormatter("%(levelname)s %(name)s %(message)s")
    record = logging.LogRecord("relay.delivery", logging.INFO, __file__, 1, "%s",
                               ("a: to=<x>\nb: to=<y>",), None)
    assert formatter.format(record) == ("INFO relay.delivery a: to=<x>\n"
                                        "INFO relay.delivery b: to=<y>")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "one\ntwo", (),
                                   sys.exc_info())
    text = formatter.format(failed)
    assert text.startswith("ERROR x one\nERROR x two\nTraceback")
    assert "ERROR x ValueError" not in text
