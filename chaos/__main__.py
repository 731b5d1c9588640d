"""``python -m chaos --profile full|ci [--only R1,R3]``: run the fault scenarios in turn, each in
a fresh work directory, print one JSON line per scenario as it finishes and a summary line;
exit 1 if any failed. A scenario whose module cannot be imported fails with the import error:
nothing is skipped silently."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run from elsewhere: chaos.* and the workers' job module
    sys.path.insert(0, str(REPO_ROOT))

# every scenario of issue 17, in order; each module exposes SCENARIO and run(profile, work_dir)
SCENARIOS = [
    "r1_kill_storm",
    "r2_downstream_outage",
    "r3_redis_outage",
    "r4_broker_restart",
    "r5_hostile_input",
    "r6_slow_downstream",
    "r7_bridge_restarts",
]
PROFILES = ("full", "ci")
# what every scenario's line says, whatever else it adds
REQUIRED = ("scenario", "sent", "applied", "lost", "doubled", "passed")

log = logging.getLogger("chaos")


def code_of(module_name: str) -> str:
    """``r3_redis_outage`` -> ``R3`` (a module that does not import still has its code)."""
    return module_name.split("_", 1)[0].upper()


def run_one(module_name: str, profile: str, work_dir: Path) -> dict[str, Any]:
    """One scenario's line: its own dict, or passed false with the error that stopped it."""
    code = code_of(module_name)
    started = time.monotonic()
    try:
        module = importlib.import_module(f"chaos.{module_name}")
    except Exception as exc:  # a scenario not importable fails, named
        return {"scenario": code, "passed": False, "duration_s": 0.0,
                "error": f"chaos.{module_name} does not import: {type(exc).__name__}: {exc}"}
    code = getattr(module, "SCENARIO", code)
    try:
        result = dict(module.run(profile, work_dir))
    except Exception as exc:  # one scenario's crash must not stop the others
        log.error("%s crashed:\n%s", code, traceback.format_exc())
        result = {"scenario": code, "passed": False, "error": f"{type(exc).__name__}: {exc}"}
    result.setdefault("scenario", code)
    result.setdefault("duration_s", round(time.monotonic() - started, 1))
    missing = [key for key in REQUIRED if key not in result]
    if missing:
        result["passed"] = False
        result.setdefault("error", f"the scenario's result lacks {', '.join(missing)}")
    result["passed"] = result["passed"] is True
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--profile", choices=PROFILES, default="full",
                        help="full: the issue's figures; ci: shorter, the same assertions")
    parser.add_argument("--only", default="",
                        help="a comma-separated list of scenarios to run, e.g. R1,R3")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where each scenario's logs go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    known = {code_of(name): name for name in SCENARIOS}
    chosen = [part.strip().upper() for part in args.only.split(",") if part.strip()]
    unknown = [code for code in chosen if code not in known]
    if unknown:
        parser.error(f"no scenario {', '.join(unknown)}; there are {', '.join(known)}")
    names = [known[code] for code in chosen] if chosen else SCENARIOS
    base = args.work_dir or Path(tempfile.mkdtemp(prefix="cronbus-chaos-"))
    log.info("chaos profile %s: %s; logs under %s", args.profile, ", ".join(names), base)

    started, failed, passed = time.monotonic(), [], 0
    for name in names:
        work_dir = base / code_of(name)
        work_dir.mkdir(parents=True, exist_ok=True)
        result = run_one(name, args.profile, work_dir)
        print(json.dumps(result), flush=True)
        if result["passed"]:
            passed += 1
        else:
            failed.append(result["scenario"])
    print(json.dumps({"summary": True, "profile": args.profile, "passed": passed,
                      "failed": failed, "elapsed_s": round(time.monotonic() - started, 1),
                      "work_dir": str(base)}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
