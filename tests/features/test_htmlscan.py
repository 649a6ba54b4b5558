"""The pre-scan that bounds what an inliner may see, against the parser css-inline really runs."""
import re

import css_inline
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.htmlscan import scan, tags

_OUT_TAG = re.compile(r'<(/?)([A-Za-z][^\s/>]*)(?:[^>"]|"[^"]*")*>')
_VOID = frozenset("area base basefont bgsound br col embed frame hr img input keygen link meta "
                  "param source track wbr".split())
_RAW = ("style", "script", "xmp", "iframe", "noembed", "noframes", "plaintext")
_INLINER = css_inline.CSSInliner(keep_style_tags=True)


def tree_depth(html: str) -> int:
    """Depth of the tree css-inline's parser builds (html is 1), read from its serialization,
    which closes every element but the void ones."""
    out = _INLINER.inline("<style>p{}</style>" + html)
    stack: list[str] = []
    deepest = 0
    void = None
    pos = 0
    while (m := _OUT_TAG.search(out, pos)) is not None:
        pos = m.end()
        end, name = m.group(1), m.group(2)
        if void is not None and not (end and name == void):
            stack.pop()  # a void element: no end tag followed
        void = None
        if end:
            while stack and stack.pop() != name:
                pass
            continue
        foreign = "svg" in stack or "math" in stack  # (may be HTML again: counts deeper)
        stack.append(name)
        deepest = max(deepest, len(stack))
        if name in _VOID and not foreign:
            void = name
        elif name in _RAW and not foreign:
            pos = out.index(f"</{name}>", pos)
    return deepest


TOKENS = st.sampled_from([
    "<div>", "</div>", "<span>", "</span>", "<p>", "</p>", "<b>", "</b>", "<i class=x>", "</i>",
    "<font color=red>", "</font>", "<a href=x>", "</a>", "<nobr>", "</nobr>", "<table>",
    "</table>", "<tr>", "</tr>", "<td>", "</td>", "<th>", "<tbody>", "<caption>", "<li>",
    "</li>", "<ul>", "</ul>", "<dd>", "<dt>", "<form>", "</form>", "<object>", "</object>",
    "<marquee>", "<template>", "</template>", "<svg>", "</svg>", "<math>", "<mi>",
    "<foreignObject>", "<title>", "</title>", "<desc>", "<select>", "<option>", "</select>",
    "<h1>", "<h2>", "</h1>", "<button>", "</button>", "<br>", "</br>", "<img>", "<x/>", "<g/>",
    "</x>", "text", " ", "<!-- c -->", "<textarea>", "</textarea>", "<hr>", "<col>", "<center>",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TOKENS, max_size=80), st.integers(1, 6))
def test_a_tree_is_never_more_than_four_levels_deeper_than_it_has_tags(tokens, repeat):
    # The stack css-inline runs on is sized by this bound (features.inline.MAX_TAGS): it is the
    # one promise the crash guard rests on, so it is checked against the real parser.
    html = "".join(tokens) * repeat
    assert tree_depth(html) <= 4 * tags(html).count + 8


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([
    "<div>", "</div>", "<p>", "</p>", "<span>", "</span>", "<table><tr><td>", "</table>", "<tr>",
    "<td>", "</td>", "</tr>", "<li>", "<ul>", "</ul>", "text", "<br>", "<img>", "<h2>", "</h2>",
]), max_size=60), st.integers(1, 20))
def test_the_full_scan_reads_common_markup_as_deep_as_the_parser(tokens, repeat):
    # Ordinary tags, open or closed as sloppy authors leave them: the replayed rules follow the
    # parser (the full scan decides only when the quick count is over the bound). Content put
    # in a table outside its cells is not replayed: such markup may read shallower than it is,
    # which costs a policy, not the process (the stack guard above holds for every input).
    html = "".join(tokens) * repeat
    found = scan("<style>p{}</style>" + html, 10**6, 10**6)
    assert found.complete
    assert found.depth >= tree_depth(html) - 1  # the scan does not count <head>'s level


def test_the_quick_count_and_the_issue_shapes():
    assert tags("<div>" * 12_000).depth == 12_002
    assert tags("<p>x</p>" * 50).depth == 3
    deep = scan("<div>" * 12_000, 1_000, 10**6)
    assert not deep.complete and deep.depth == 1_001
    flat = scan("<table>" + "<tr><td><p>x<li>y" * 3_000, 1_000, 10**6)
    assert flat.complete and flat.depth < 10
