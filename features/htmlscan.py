"""What an HTML parser will build from a part, estimated from its tags before anything parses it.

The CSS inliners build a tree and walk it recursively (css-inline overflows the C stack past
about 10,000 levels; premailer's libxml2 silently drops everything past 256), and copy every
matching rule into every element (a few rules over many elements multiply the part's size).
`scan()` reads the tags once, as the HTML tokenizer splits them (quoted attribute values,
comments, raw-text elements), and replays the tree builder's main rules (void elements,
implied end tags, formatting elements reopened after an implied close) closely enough to bound
the depth and count the elements; `growth()` bounds what inlining the rules can add.
"""
from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from itertools import accumulate
from typing import NamedTuple

_WS = r"[\t\n\f\r ]"
# A tag's attributes as the HTML tokenizer reads them: a quote opens a value only after "=".
_TAG_BODY = (
    r"(?:" + _WS + r"++|/|(?:=[^\t\n\f\r />=]*+|[^\t\n\f\r />=]++)"
    r"(?:" + _WS + r"*+=" + _WS + r"*+(?:\"[^\"]*+(?:\"|\Z)|'[^']*+(?:'|\Z)"
    r"|[^\t\n\f\r >\"'][^\t\n\f\r >]*+|))?+)*+"
)
# One item per tag, with the first character of any text before it: comments and doctypes
# give no name; a raw-text element's content (style, script, ...) is skipped with its start.
_ITEMS = re.compile(
    r"([^<])?[^<]*+<(?:"
    r"!--(?:-?>|.*?(?:--!?>|\Z))"
    r"|[!?][^>]*+(?:>|\Z)"
    r"|/([A-Za-z][^\t\n\f\r />]*+)" + _TAG_BODY + r"(?:>|\Z)"
    r"|/(?:>|[^A-Za-z>][^>]*+(?:>|\Z)|\Z)"
    r"|(style|xmp|iframe|noembed|noframes|script|title|textarea)(?=[\t\n\f\r />])"
    + _TAG_BODY + r"(?:>.*?(?=</\3[\t\n\f\r />])|>.*|\Z)"
    r"|([A-Za-z][^\t\n\f\r />]*+)" + _TAG_BODY + r"(?:>|\Z)"
    r"|)",
    re.S | re.I,
)
_VOID = frozenset({
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "image", "img",
    "input", "keygen", "link", "meta", "param", "source", "track", "wbr",
    "html", "head", "body",  # merged into the implied ones, never nested
})
_FORMATTING = frozenset({"a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small",
                         "strike", "strong", "tt", "u"})
# Start tags that close an open <p> first.
_CLOSES_P = frozenset({
    "address", "article", "aside", "blockquote", "center", "details", "dialog", "dir", "div",
    "dl", "fieldset", "figcaption", "figure", "footer", "header", "hgroup", "main", "menu",
    "nav", "ol", "p", "search", "section", "summary", "ul", "h1", "h2", "h3", "h4", "h5", "h6",
    "pre", "listing", "form", "hr", "xmp", "li", "dd", "dt", "plaintext",  # table: not in quirks
})
# Start tags before which closed formatting elements are not reopened (text reopens them).
_NO_REOPEN = _CLOSES_P | frozenset({
    "table", "tbody", "thead", "tfoot", "tr", "td", "th", "caption", "colgroup", "col",
    "li", "dd", "dt", "template", "script", "style", "title", "textarea",
})
# A start tag of the key closes an open element of these names (as far as that one).
_SIBLINGS = {
    "li": ("li",), "dd": ("dd", "dt"), "dt": ("dd", "dt"),
    "td": ("td", "th"), "th": ("td", "th"), "tr": ("tr",),
    "tbody": ("tbody", "thead", "tfoot"), "thead": ("tbody", "thead", "tfoot"),
    "tfoot": ("tbody", "thead", "tfoot"), "option": ("option",), "optgroup": ("optgroup",),
}
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_IMPLIED = frozenset({"html", "head", "body", "tbody", "tr", "colgroup"})
_TABLE_PARTS = frozenset({"td", "th", "tr"})
_SCOPE_LOOK = 64
_TABLE_ONLY = frozenset({"td", "th", "tr", "tbody", "thead", "tfoot"})
_SECTIONS = frozenset({"tbody", "thead", "tfoot"})
_TABLE_CONTEXT = frozenset({"table", "tbody", "thead", "tfoot", "tr", "template", "html"})
_DEFAULT_SCOPE = frozenset({"applet", "caption", "html", "table", "td", "th", "marquee",
                            "object", "template", "svg", "math", "foreignobject", "desc",
                            "title", "mi", "mo", "mn", "ms", "mtext", "annotation-xml"})
_BUTTON_SCOPE = _DEFAULT_SCOPE | {"button"}
_TABLE_SCOPE = frozenset({"html", "table", "template"})
# The parser's "special" elements: an <li> (<dd>, <dt>) closes an open one only if none of
# these but address, div and p is in between.
_SPECIAL = frozenset({
    "address", "applet", "area", "article", "aside", "base", "basefont", "bgsound",
    "blockquote", "body", "br", "button", "caption", "center", "col", "colgroup", "dd",
    "details", "dir", "div", "dl", "dt", "embed", "fieldset", "figcaption", "figure", "footer",
    "form", "frame", "frameset", "h1", "h2", "h3", "h4", "h5", "h6", "head", "header", "hgroup",
    "hr", "html", "iframe", "img", "input", "keygen", "li", "link", "listing", "main", "marquee",
    "menu", "meta", "nav", "noembed", "noframes", "noscript", "object", "ol", "p", "param",
    "plaintext", "pre", "script", "search", "section", "select", "source", "style", "summary",
    "table", "tbody", "td", "template", "textarea", "tfoot", "th", "thead", "title", "tr",
    "track", "ul", "wbr", "xmp", "svg", "math",
})
_LIST_SCOPE = _SPECIAL - {"address", "div", "p", "li", "dd", "dt"}
_ORDINARY_END_SCOPE = _SPECIAL | _DEFAULT_SCOPE
_END_SCOPES = {
    **dict.fromkeys(_SPECIAL, _DEFAULT_SCOPE),
    "p": _BUTTON_SCOPE, "li": _DEFAULT_SCOPE | {"ol", "ul"},
    **dict.fromkeys(("td", "th", "tr", "tbody", "thead", "tfoot", "table"), _TABLE_SCOPE),
    **dict.fromkeys(("applet", "marquee", "object", "caption", "template"),
                    frozenset({"html", "table", "template"})),
}
_SCOPES = {
    "li": _LIST_SCOPE, "dd": _LIST_SCOPE, "dt": _LIST_SCOPE,
    "td": _TABLE_SCOPE, "th": _TABLE_SCOPE, "tr": _TABLE_SCOPE,
    "tbody": _TABLE_SCOPE, "thead": _TABLE_SCOPE, "tfoot": _TABLE_SCOPE,
    "option": _DEFAULT_SCOPE, "optgroup": _DEFAULT_SCOPE,
}
_CLOSERS = _CLOSES_P | frozenset(_SIBLINGS) | _TABLE_PARTS
_TRACKED = frozenset(_FORMATTING | _CLOSERS | _IMPLIED | _TABLE_CONTEXT | {"svg", "math", "p"})


_TAGS = re.compile(r"<(/?[A-Za-z][^\t\n\f\r />]*+)")


class Tags(NamedTuple):
    """A quick look: depth if every end tag closed the latest open element (sloppy markup, such
    as unclosed <p> or <td>, reads deeper than it is); start tags, and by lowercase name."""

    depth: int
    starts: int
    names: Counter
    count: int  # start and end tags


def tags(html: str) -> Tags:
    """One regex pass and C-level counting: cheap enough to run on every part."""
    found = _TAGS.findall(html)
    weight: dict[str, int] = {}
    names: Counter = Counter()
    for key, n in Counter(found).items():
        if key[0] == "/":
            weight[key] = -1
        else:
            low = key.lower()
            names[low] += n
            weight[key] = 0 if low in _VOID else 1
    depth = max(accumulate(map(weight.__getitem__, found), initial=0)) + 2  # html, body
    return Tags(depth, names.total(), names, len(found))


class Scan(NamedTuple):
    """depth: deepest element (html is 1); elements: how many the tree gets; names: start tags
    by name; reopened: elements the parser adds by reopening formatting elements (copies of
    them, attributes and all); complete: False when the scan stopped at a bound."""

    depth: int
    elements: int
    names: Counter
    reopened: int
    complete: bool


def scan(html: str, max_depth: int, max_elements: int) -> Scan:
    """Depth and size of the tree an HTML5 parser builds from html, read from its tags alone.

    Stops early (complete=False) once the depth passes max_depth or the elements pass
    max_elements, so its own work is bounded by the input's length.
    """
    stack: list[str] = ["html", "body"]
    open_count: dict[str, int] = dict.fromkeys(_TRACKED, 0)
    open_count["html"] = open_count["body"] = 1
    closed_fmt: list[str] = []  # formatting elements closed by another's end: reopened later
    names: Counter = Counter()
    elements = 3  # html, head, body
    reopened = 0
    deepest = 2
    for text, end, raw, start in _ITEMS.findall(html):
        name = start or raw
        if not name:
            if end:
                end = end.lower()
                if open_count.get(end, 0):
                    scope = _END_SCOPES.get(end, _ORDINARY_END_SCOPE)
                    _close_in_scope(stack, open_count, closed_fmt, (end,), scope)
                elif end in _FORMATTING and end in closed_fmt:
                    del closed_fmt[len(closed_fmt) - 1 - closed_fmt[::-1].index(end)]
            continue
        name = name.lower()
        names[name] += 1
        if closed_fmt and (text or name not in _NO_REOPEN):
            # Text, and most start tags, reopen the formatting elements an end tag closed.
            elements += len(closed_fmt)
            reopened += len(closed_fmt)
            for fmt in closed_fmt:
                stack.append(fmt)
                open_count[fmt] += 1
            closed_fmt.clear()
        if name in _CLOSERS:
            if name in _TABLE_ONLY and not open_count["table"]:
                continue  # outside a table the parser ignores these
            if name == "table" and stack[-1] in _TABLE_CONTEXT and stack[-1] != "html":
                _close(stack, open_count, closed_fmt, ("table",))  # a table directly in one
            if name in _CLOSES_P and open_count["p"]:
                _close_in_scope(stack, open_count, closed_fmt, ("p",), _BUTTON_SCOPE)
            siblings = _SIBLINGS.get(name)
            if siblings and any(open_count[s] for s in siblings):
                _close_in_scope(stack, open_count, closed_fmt, siblings, _SCOPES[name])
            elif name in _HEADINGS and stack[-1] in _HEADINGS:
                _close(stack, open_count, closed_fmt, (stack[-1],))
            if name in _TABLE_PARTS:
                # Back to the table (what was put in it is placed before it), and the tbody
                # and tr the parser adds.
                _close_in_scope(stack, open_count, closed_fmt, (), _TABLE_CONTEXT, keep=True)
                top = stack[-1]
                implied = (() if top == "tr" or top in _SECTIONS and name == "tr"
                           else ("tr",) if top in _SECTIONS
                           else ("tbody",) if name == "tr" else ("tbody", "tr"))
                elements += len(implied)
                for part in implied:
                    stack.append(part)
                    open_count[part] += 1
        if name in _VOID:
            continue
        stack.append(name)
        if name in open_count:
            open_count[name] += 1
        else:
            open_count[name] = 1
        elements += 1
        if len(stack) > deepest:
            deepest = len(stack)
            if deepest > max_depth:
                return Scan(deepest, elements, names, reopened, False)
        if elements > max_elements:
            return Scan(deepest, elements, names, reopened, False)
    return Scan(deepest, elements, names, reopened, True)


def _close_in_scope(stack: list[str], open_count: dict[str, int], closed_fmt: list[str],
                    wanted: tuple[str, ...], scope: frozenset[str], keep: bool = False) -> None:
    """_close() when an element named one of wanted is open above every element of scope;
    keep: pop down to the nearest element of scope instead (and keep it).

    Looks at most _SCOPE_LOOK elements down: past that, nothing is closed.
    """
    for i in range(len(stack) - 1, max(len(stack) - 1 - _SCOPE_LOOK, -1), -1):
        name = stack[i]
        if name in wanted:
            _close(stack, open_count, closed_fmt, wanted)
            return
        if name in scope:
            if keep:
                while len(stack) > i + 1:
                    top = stack.pop()
                    open_count[top] -= 1
                    if top in _FORMATTING:
                        closed_fmt.append(top)
            return


def _close(stack: list[str], open_count: Counter, closed_fmt: list[str],
           wanted: tuple[str, ...]) -> None:
    """Pop up to and including the innermost open element named one of wanted."""
    while stack:
        top = stack.pop()
        open_count[top] -= 1
        if top in wanted:
            return
        if top in _FORMATTING:
            closed_fmt.append(top)


_STYLE_OPEN = re.compile(r"<style(?=[\t\n\f\r />])" + _TAG_BODY + r">", re.I)
_STYLE_CLOSE = re.compile(r"</style(?=[\t\n\f\r />])", re.I)
_STYLE_TEXT = re.compile(
    r"<style(?=[\t\n\f\r />])" + _TAG_BODY + r">(.*?)(?:</style(?=[\t\n\f\r />])|\Z)", re.I | re.S
)
_CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|\Z)", re.S)
_RULE = re.compile(r"([^{}]*+)\{([^{}]*+)\}")
_CLASS_ATTR = re.compile(
    r"""[\t\n\f\r ]class[\t\n\f\r ]*+=[\t\n\f\r ]*+("[^"]*+"|'[^']*+'|[^\t\n\f\r >]*+)""", re.I
)
_COMPOUND_END = re.compile(r"[\s>+~]")
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*")
_AT_RULE_END = re.compile(r"[;{}]")
_OPAQUE = re.compile(r"[\[(\"'\\\\|]")
_CLASS_NAME = re.compile(r"\.(-?[_a-zA-Z][_a-zA-Z0-9-]*)")


def style_text(html: str, count: int) -> str:
    """The text of the part's <style> elements; count is how many <style> tags tags() saw."""
    if not count:
        return ""
    if html.count("<style") != count:  # other spellings: the (slower) regex finds them all
        return "".join(_STYLE_TEXT.findall(html))
    out = []
    pos = html.find("<style")
    while pos >= 0:
        m = _STYLE_OPEN.match(html, pos)
        if m is None:
            pos = html.find("<style", pos + 6)
            continue
        end = _STYLE_CLOSE.search(html, m.end())
        out.append(html[m.end() : end.start() if end else len(html)])
        pos = html.find("<style", end.end() if end else len(html))
    return "".join(out)


def growth(html: str, css: str, names: Counter, elements: int, reopened: int = 0,
           budget: int = 0) -> int:
    """At most how many characters inlining the rules of css (the part's <style> text) adds.

    Each rule adds its declarations at most once to every element its selector's last compound
    can match: an element of that type, an element whose class attribute names that class, or
    any element. elements bounds the tree's elements; reopened counts the copies the parser
    makes of formatting elements (they match what the originals match). @-rules (media
    queries) stay in the <style> element and add nothing. Classes are counted (one more pass
    over html) only when the bound without them is over budget.
    """
    if not css:
        return 0
    rules = _rules(css)
    total = _growth(rules, names, elements, reopened, None)
    if total > budget and any(kind == "class" for _, needs in rules for kind, _ in needs):
        total = _growth(rules, names, elements, reopened, _class_counts(html, elements))
    return total


def _growth(rules, names: Counter, elements: int, reopened: int,
            classes: Counter | None) -> int:
    total = 0
    for cost, needs in rules:
        matches = 0
        for kind, key in needs:
            if kind == "tag":
                matches += names[key] + (reopened if key in _FORMATTING else 0)
            elif kind == "class" and classes is not None:
                matches += min(classes[k] for k in key) + classes[""] + reopened
            else:
                matches = elements
                break
        total += cost * min(matches, elements)
    return total


@lru_cache(maxsize=64)
def _rules(css: str) -> tuple[tuple[int, tuple], ...]:
    """(characters a rule adds to an element, what its selectors' last compounds need) for each
    rule of css; kept per style sheet, as a campaign sends one sheet many times."""
    if "/*" in css:
        css = _CSS_COMMENT.sub("", css)
    rules = []
    for selectors, block in _RULE.findall(_without_at_rules(css)):
        needs: list[tuple[str, object]] = []
        for selector in selectors.split(","):
            if _OPAQUE.search(selector):  # attribute values, functions, escapes: anything
                needs = [("any", None)]
                break
            last = _COMPOUND_END.split(selector.strip())[-1]
            tag = _TYPE.match(last)
            if tag and tag.group(0).lower() not in _IMPLIED:
                needs.append(("tag", tag.group(0).lower()))
                continue
            classes = _CLASS_NAME.findall(last)
            needs.append(("class", tuple(classes)) if classes else ("any", None))
        rules.append((len(block) + 16, tuple(needs)))  # "; " and the style="" around them
    return tuple(rules)


def _without_at_rules(css: str) -> str:
    """css with every @-rule (and its block, however nested) taken out."""
    if "@" not in css:
        return css
    out = []
    pos = 0
    while (at := css.find("@", pos)) >= 0:
        out.append(css[pos:at])
        depth = 0
        pos = len(css)
        for m in _AT_RULE_END.finditer(css, at):
            c = m.group(0)
            if c == "{":
                depth += 1
                continue
            if c == "}":
                depth -= 1
            if depth <= 0:
                pos = m.end()
                break
    out.append(css[pos:])
    return "".join(out)


def _class_counts(html: str, everything: int) -> Counter:
    """How many tags name each class; key "" counts class attributes whose names we cannot
    read exactly (character references): they may be any class."""
    counts: Counter = Counter()
    for value in _CLASS_ATTR.findall(html):
        if value[:1] in "\"'":
            value = value[1:-1]
        if "&" in value:
            counts[""] += 1
        else:
            counts.update(set(value.split()))
    if counts[""]:
        counts[""] = min(counts[""], everything)
    return counts
