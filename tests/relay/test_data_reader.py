"""The DATA reader against a line-by-line reference, for any bytes and any packet boundaries.

It must end the message exactly where RFC 5321 says (CRLF "." CRLF at a line start), leave
everything after it to the command loop, unstuff dots, and refuse bare CR/LF, long lines and
oversized messages like the reference does.
"""
import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.wire import WireSMTP, read_data

LIMIT = 3000


def reference(stream: bytes):
    """(content or None, problem, rest): the plain reading of RFC 5321 4.5.2 and our rules."""
    content, size, problem = bytearray(), 0, None
    pos = 0
    while True:
        end = stream.find(b"\r\n", pos)
        assert end >= 0, "test streams always end with a terminator"
        line, pos = stream[pos : end + 2], end + 2
        if line == b".\r\n":
            break
        if line.startswith(b"."):
            line = line[1:]
        size += len(line)
        if problem:
            continue
        if len(line) > 1000:
            problem = "long"
        elif size > LIMIT:
            problem = "big"
        elif line.count(b"\r") != 1 or line.count(b"\n") != 1:
            problem = "bare"
        else:
            content += line
    return (None if problem else bytes(content)), problem, stream[pos:]


async def read_with(stream: bytes, cuts: list[int]):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=WireSMTP.line_length_limit, loop=loop)
    task = asyncio.create_task(read_data(reader, bytearray(), LIMIT, hold=lambda n: True,
                                         release=lambda: None, active=lambda: None))
    start = 0
    for cut in sorted(set(cuts)) + [len(stream)]:
        reader.feed_data(stream[start:cut])
        start = cut
        for _ in range(3):
            await asyncio.sleep(0)
    buf, size, problem = await asyncio.wait_for(task, 5)
    return (None if buf is None else bytes(buf)), problem, bytes(reader._buffer)


pieces = st.sampled_from([b"\r\n", b"\r", b"\n", b".", b"..", b"a", b"bc", b"\r\n.", b".\r",
                          b"x" * 300, b"\r\n.\n", b"\n.\r\n"])


@settings(max_examples=400, deadline=None)
@given(
    body=st.lists(pieces, max_size=40).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_data_reader_matches_the_reference(body, cuts):
    stream = body + b"\r\n.\r\nMAIL FROM:<next@example.com>\r\n"
    cuts = [c for c in cuts if c < len(stream)]
    got = asyncio.run(read_with(stream, cuts))
    content, problem, rest = reference(stream)
    assert got[2] == rest  # the command loop gets exactly what follows the end of data
    assert got[1] == problem or (problem and got[1]), (got, problem)
    if problem is None:
        assert got[0] == content


def test_a_message_that_is_only_the_terminator_is_empty():
    assert asyncio.run(read_with(b".\r\nQUIT\r\n", [1])) == (b"", None, b"QUIT\r\n")


def test_long_line_split_over_packets():
    stream = b"a" * 2500 + b"\r\n.\r\nNOOP\r\n"
    got = asyncio.run(read_with(stream, [700, 1500, 2501]))
    assert got == (None, "long", b"NOOP\r\n")
