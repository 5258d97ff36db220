"""Turn the logs of the three CUAD exploration scripts into ``bench/results/cuad_explore.json``.

Each scored line of a log (``name ... micro M macro A`` from ``frozen_fusion.py``, or
``name (M, A)`` from the other two) becomes ``{"source", "config", "val_micro_f1",
"val_macro_f1"}``; every figure is on the validation contracts, never the test ones.

    .venv/bin/python bench/cuad_explore/collect.py /tmp/cuad_exp.log /tmp/cuad_ft.log \\
        /tmp/cuad_pertype.log
"""

import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "results" / "cuad_explore.json"
PLAIN = re.compile(r"^(?P<name>.+?)\s+micro\s+(?P<mi>[\d.]+)\s+macro\s+(?P<ma>[\d.]+)\s*$")
TUPLE = re.compile(
    r"^(?P<name>.+?) \((?:np\.float64\()?(?P<mi>[\d.]+)\)?, (?:np\.float64\()?(?P<ma>[\d.]+)\)?\)"
)


def main() -> None:
    rows = []
    for log in sys.argv[1:]:
        for line in Path(log).read_text().splitlines():
            m = PLAIN.match(line) or TUPLE.match(line)
            if m:
                rows.append({
                    "source": Path(log).name,
                    "config": m["name"].strip(),
                    "val_micro_f1": float(m["mi"]),
                    "val_macro_f1": float(m["ma"]),
                })  # fmt: skip
    OUT.write_text(json.dumps({"split": "validation contracts (index % 5 == 1 of 150)",
                               "rows": rows}, indent=1) + "\n")  # fmt: skip
    print(f"{len(rows)} rows -> {OUT}")


if __name__ == "__main__":
    main()
