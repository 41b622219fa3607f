"""Export JSON Schema for every event to schemas/json/ (`make schemas`)."""

from __future__ import annotations

import json
from pathlib import Path

from schemas import EVENT_TYPES

JSON_DIR = Path(__file__).parent / "json"


def render_all() -> dict[str, str]:
    """File name -> JSON Schema text, for every event type."""
    return {
        f"{name}.json": json.dumps(cls.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, cls in sorted(EVENT_TYPES.items())
    }


def main() -> None:
    JSON_DIR.mkdir(exist_ok=True)
    for filename, text in render_all().items():
        (JSON_DIR / filename).write_text(text)
    print(f"wrote {len(EVENT_TYPES)} schemas to {JSON_DIR}")


if __name__ == "__main__":
    main()
