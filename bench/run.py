"""`make bench`: run every bench/*_bench.py in turn with this Python, and keep each one's
output in bench/results/ (not committed; copy the numbers into bench/README.md by hand).

python bench/run.py [name-substring ...]   e.g. `python bench/run.py smtp` runs only SMTP.
"""
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    wanted = sys.argv[1:]
    scripts = sorted(p for p in HERE.glob("*_bench.py")
                     if not wanted or any(w in p.name for w in wanted))
    if not scripts:
        print("no benchmark matched", file=sys.stderr)
        return 1
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    failed = []
    for script in scripts:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        out_file = results / f"{script.stem}-{stamp}.txt"
        print(f"== {script.name}", flush=True)
        with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, cwd=HERE.parent) as proc:
            with out_file.open("w") as fh:
                for line in proc.stdout:
                    sys.stdout.write(line)
                    fh.write(line)
        if proc.returncode:
            failed.append(script.name)
        print(f"== {script.name}: exit {proc.returncode}, output in {out_file}", flush=True)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
