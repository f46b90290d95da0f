"""Run one function's handler on one sample event, in this process, against the local stack.

    python -m localdev.invoke HealthFunction events/health/get.json [--verbose] [--template template.yaml]

Loads ``.local/stack.env`` (written by ``make up``) without overriding variables already set, prints the
handler's JSON answer on stdout (the handler's own logs go to stderr), and exits 1 if the handler raised.
"""

import argparse
import contextlib
import json
import os
import sys
import traceback
from pathlib import Path

from localdev.lambda_runtime import DEFAULT_REGION, HandlerLoader, invoke
from localdev.template import ROOT, TEMPLATE, load

STACK_ENV = ROOT / ".local" / "stack.env"


def load_env_file(path: Path) -> None:
    """``KEY=value`` lines (``make up`` writes them); comments, blanks and ``export`` prefixes allowed."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip().removeprefix("export ").strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        os.environ.setdefault(key.strip(), value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.invoke", description=__doc__.splitlines()[0])
    parser.add_argument("function", help="logical id in the template, e.g. HealthFunction")
    parser.add_argument("event", type=Path, help="event file, e.g. events/health/get.json")
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="SAM template (template.yaml)")
    parser.add_argument("--verbose", action="store_true", help="print the traceback when the handler raises")
    parser.add_argument("--env-file", type=Path, default=STACK_ENV, help="KEY=value file (.local/stack.env)")
    args = parser.parse_args(argv)

    template = load(args.template)
    function = template.functions.get(args.function)
    if function is None:
        parser.error(
            f"no function {args.function!r} in the template; one of: {', '.join(template.functions)}"
        )
    event = json.loads(args.event.read_text())
    load_env_file(args.env_file)
    region = os.environ.get("AWS_REGION", DEFAULT_REGION)
    try:
        # stdout carries only the answer: the handler's logs (Powertools writes to stdout) go to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            result = invoke(HandlerLoader(), function, event, region)
    except Exception as error:
        if args.verbose:
            traceback.print_exc()
        print(f"{args.function} raised {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        _close_clients()
    print(json.dumps(result, indent=2))
    return 0


def _close_clients() -> None:
    """Stop the database pool's threads before the interpreter exits: left running, each one holds the
    exit up for five seconds (psycopg_pool's join timeout), which made every invoke take 20 s."""
    wiring = sys.modules.get("companion_memory.wiring")
    if wiring is not None:
        wiring.reset()


if __name__ == "__main__":
    sys.exit(main())
