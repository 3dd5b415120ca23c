"""How an archive's outcome is worded when none of its members could be ingested."""

from __future__ import annotations


def outcome_message(
    *,
    failed: list[tuple[str, str]],
    failed_total: int,
    refused: list[tuple[str, str]],
    refused_total: int,
    others: int = 0,
) -> str:
    """Why no member of an archive could be ingested, naming the first few and their reasons."""

    def listing(items: list[tuple[str, str]], total: int) -> str:
        shown = ", ".join(f"'{name}' ({reason})" for name, reason in items[:5])
        more = total - min(len(items), 5)
        return shown + (f", and {more} more" if more > 0 else "")

    if not (failed_total or refused_total or others):
        message = "the archive holds no files"
    elif not (failed_total or others):
        message = f"all {refused_total} members refused: {listing(refused, refused_total)}"
    elif not (refused_total or others):
        message = f"all {failed_total} members failed: {listing(failed, failed_total)}"
    else:
        parts = []
        if failed_total:
            parts.append(f"{failed_total} failed: {listing(failed, failed_total)}")
        if refused_total:
            parts.append(f"{refused_total} refused: {listing(refused, refused_total)}")
        if others:
            parts.append(f"{others} cancelled or removed")
        message = "no member could be ingested: " + "; ".join(parts)
    return message if len(message) <= 2000 else message[:1997] + "..."
