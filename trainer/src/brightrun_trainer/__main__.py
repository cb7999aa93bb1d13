"""``python -m brightrun_trainer RUN_DIR``: runs (or resumes) the submission in
``RUN_DIR/spec.json`` and reports into that folder (see ``reports``). Exit code 0 when the run
completed or stopped on request, 1 when it failed (``state.json`` says why)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .train import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="brightrun-trainer", description=__doc__)
    parser.add_argument("run_dir", type=Path, help="the run folder (holds spec.json)")
    parser.add_argument("--spec", type=Path, help="the submission (default RUN_DIR/spec.json)")
    parser.add_argument("--models-dir", type=Path, help="overrides TRAINER_MODELS_DIR")
    args = parser.parse_args(argv)
    spec = json.loads((args.spec or args.run_dir / "spec.json").read_text())
    return run(spec, args.run_dir, args.models_dir)


if __name__ == "__main__":
    sys.exit(main())
