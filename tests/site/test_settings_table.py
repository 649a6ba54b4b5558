"""docs/configuration.md's table names exactly the environment variables the code reads."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# env("NAME"...), env.int("NAME"...), env.db("NAME"...), env_int(env, "NAME"...) (envvars.py),
# on one line or the next.
READ = re.compile(r"\benv(?:\.\w+|_\w+)?\(\s*(?:env,\s*)?\"([A-Z][A-Z0-9_]*)\"")
ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \|", re.M)


def variables_read() -> set[str]:
    names: set[str] = set()
    for path in [ROOT / "smtpeter_site" / "settings.py",
                 *ROOT.glob("[a-z]*/**/*.py")]:
        if ".venv" in path.parts or "tests" in path.parts or "bench" in path.parts:
            continue
        names.update(READ.findall(path.read_text()))
    return names


def test_every_setting_is_in_the_readme_table_and_nothing_else():
    table = set(ROW.findall((ROOT / "docs" / "configuration.md").read_text()))
    read = variables_read()
    assert len(read) > 30  # the pattern still finds the settings
    assert read - table == set(), "settings missing from the table in docs/configuration.md"
    assert table - read == set(), "rows in docs/configuration.md for settings nothing reads"
