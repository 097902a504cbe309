"""One check's outcome, and the report of all of them as text or JSON."""

import json
from dataclasses import asdict, dataclass
from enum import Enum


class Status(str, Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"  # the check does not apply here (e.g. no HF model configured)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def __post_init__(self):
        if self.status in (Status.WARN, Status.FAIL) and not self.fix:
            raise ValueError(f"check {self.name!r} is {self.status.value} but says no fix")


def failed(checks: list[Check]) -> bool:
    return any(check.status is Status.FAIL for check in checks)


def summary(checks: list[Check]) -> dict[str, int]:
    return {status.value: sum(c.status is status for c in checks) for status in Status}


def to_json(checks: list[Check], platform: str) -> str:
    document = {
        "ok": not failed(checks),
        "platform": platform,
        "summary": summary(checks),
        "checks": [{**asdict(c), "status": c.status.value} for c in checks],
    }
    return json.dumps(document, indent=2)


def to_text(checks: list[Check], platform: str) -> str:
    width = max((len(c.name) for c in checks), default=0)
    lines = [f"primus-bridge doctor ({platform})"]
    for check in checks:
        lines.append(f"{check.status.value.upper():<4}  {check.name:<{width}}  {check.detail}")
        if check.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {check.fix}")
    counts = summary(checks)
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    return "\n".join(lines)
