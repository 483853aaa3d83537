"""Where the corpus manifest predates a revision of product.md, the revised spec decides.

Each entry: case id → (the reason code the revised spec gives, the sentence that says so).
The corpus tests use these in place of the manifest's `spec_reason`.
"""

from __future__ import annotations

from typing import Any

REVISED_REASONS: dict[str, tuple[str, str]] = {
    "ns-too-many-transforms": (
        "unsupported",
        "product.md §2 (revised): a Reference with more than two Transforms → unsupported, "
        "checked before xmlsec digests anything (this Reference has three)",
    ),
}


def allowed_reasons(case: dict[str, Any]) -> set[str]:
    """The reason codes a rejected corpus case may get."""
    if case["id"] in REVISED_REASONS:
        return {REVISED_REASONS[case["id"]][0]}
    return {case["spec_reason"], *case.get("spec_reason_also", [])}
