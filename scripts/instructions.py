#!/usr/bin/env python3
"""Instructions per accepted trigger from a callgrind profile of the server (see
scripts/instructions.sh): the whole process and its main parts, each inclusive of what it
calls. Accepted triggers are counted as calls of the function that writes the answer."""

import re
import subprocess
import sys

# (label, function name pattern); inclusive counts, so nested rows are parts of the row above.
PARTS = [
    ("HTTP connections (hyper, axum, handler)", r"axum::serve::handle_connection::\{\{closure\}\}::\{\{closure\}\}$"),
    ("  trigger handler", r"callgate_server::http::public::accept::\{\{closure\}\}$"),
    ("    body JSON parse", r"callgate_server::http::extract::(whole_parse|members_parse)$"),
    ("      context kept as text", r"callgate_domain::context::InitialContext::from_text$"),
    ("    context text as sent (whole parse)", r"callgate_server::http::extract::member_text$"),
    ("    checks, context, templates", r"callgate_server::trigger::prepare::\{\{closure\}\}$"),
    ("      context limits", r"callgate_domain::context::(InitialContext::)?check_initial_context$"),
    ("      templates", r"callgate_domain::template::render$"),
    ("    answer", r"callgate_server::http::public::respond$"),
    ("call lifecycle tasks", r"callgate_server::worker::events::run::\{\{closure\}\}$"),
    ("dispatcher tasks", r"callgate_server::worker::dispatcher::run::\{\{closure\}\}$"),
    ("SQLite writer thread", r"callgate_store_sqlite::conn::writer_loop$"),
    ("  lifecycle updates", r"callgate_store_sqlite::runs::apply_one$"),
    ("SQLite checkpoint thread", r"callgate_store_sqlite::conn::checkpoint_loop$"),
]
ANSWER = r"callgate_server::http::public::respond$"


def calls_of(path: str, pattern: str) -> int:
    """Sums the `calls=` lines of every call to a function matching `pattern`."""
    names: dict[str, str] = {}
    target = None
    total = 0
    with open(path) as f:
        for line in f:
            if line.startswith(("fn=", "cfn=")):
                kind, rest = line.rstrip("\n").split("=", 1)
                m = re.match(r"\((\d+)\)(?: (.*))?", rest)
                name = rest
                if m:
                    if m.group(2):
                        names[m.group(1)] = m.group(2)
                    name = names.get(m.group(1), "")
                if kind == "cfn":
                    target = name
            elif line.startswith("calls=") and target and re.search(pattern, target):
                total += int(line[6:].split()[0])
    return total


def inclusive(path: str) -> tuple[int, dict[str, int]]:
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
        check=True, capture_output=True, text=True,
    ).stdout
    total = 0
    costs: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        rest = m.group(2)
        if rest.startswith("PROGRAM TOTALS"):
            total = n
            continue
        # "file:function [object]"; keep the function.
        func = re.sub(r"\s*\[[^\]]*\]$", "", rest)
        func = func.split(":", 1)[1] if ":" in func else func
        costs[func] = max(costs.get(func, 0), n)
    return total, costs


def main() -> None:
    path = sys.argv[1]
    answers = calls_of(path, ANSWER)
    if answers == 0:
        sys.exit("no accepted trigger in the profile")
    total, costs = inclusive(path)
    print(f"accepted triggers counted: {answers}")
    print(f"{'instructions per trigger':<42} {total / answers:>10,.0f}")
    for label, pattern in PARTS:
        n = max((v for k, v in costs.items() if re.search(pattern, k)), default=0)
        print(f"{label:<42} {n / answers:>10,.0f}")


if __name__ == "__main__":
    main()
