"""Read an eval set: questions and their right answers, from JSONL or CSV bytes.

JSONL: one object per line, bare or wrapped as OpenAI's eval items (`{"item": {...}}`);
`expected_filenames` match a file's name or its `source` attribute (a synced file's path):

    {"question": "Who wrote the essay?", "expected_filenames": ["ideas-page.html"]}
    {"question": "…", "expected_attributes": {"source": "handbook/leave.md"}, "id": "q7"}

CSV: a header row with `question`, optional `id`, optional `expected_filenames` (several
separated by `|`) and any `expected_attributes.<key>` columns (one row's attribute cells
form one set of key/values, compared as strings; use JSONL for numbers or booleans).

Every question needs at least one expectation. A bad row is refused with its line number
(`EvalSetError`, a 400 at the API); nothing is half-read.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from prepshelf.domain.evals import Question
from prepshelf.errors import InvalidRequestError

MAX_QUESTION_CHARS = 8192
MAX_EXPECTED = 100
MAX_ATTRIBUTES = 16
ATTRIBUTE_PREFIX = "expected_attributes."


class EvalSetError(InvalidRequestError):
    """The eval set could not be read."""


def parse_eval_set(
    data: bytes, *, filename: str | None, max_questions: int, param: str
) -> list[Question]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EvalSetError(f"The eval set is not UTF-8 text: {exc}", param=param) from exc
    if "\x00" in text:
        raise EvalSetError("The eval set contains NUL characters", param=param)
    name = (filename or "").lower()
    is_csv = name.endswith(".csv") or (
        not name.endswith((".jsonl", ".json")) and not text.lstrip().startswith("{")
    )
    rows = _csv_rows(text, param) if is_csv else _jsonl_rows(text, param)
    questions: list[Question] = []
    for line_no, row in rows:
        if len(questions) == max_questions:
            raise EvalSetError(
                f"The eval set holds more than {max_questions} questions "
                "(PREPSHELF_EVAL_MAX_QUESTIONS)",
                param=param,
            )
        questions.append(question_from(row, item_no=len(questions), where=f"line {line_no}"))
    if not questions:
        raise EvalSetError("The eval set holds no questions", param=param)
    return questions


def _jsonl_rows(text: str, param: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise EvalSetError(f"Line {line_no} is not valid JSON: {exc}", param=param) from exc
        if isinstance(obj, dict) and isinstance(obj.get("item"), dict):
            obj = obj["item"]
        if not isinstance(obj, dict):
            raise EvalSetError(f"Line {line_no} is not a JSON object", param=param)
        rows.append((line_no, obj))
    return rows


def _csv_rows(text: str, param: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        if "question" not in header:
            raise EvalSetError(
                "A CSV eval set needs a header row with a 'question' column", param=param
            )
        rows = []
        for record in reader:
            line_no = reader.line_num
            row: dict[str, Any] = {"question": record.get("question")}
            if record.get("id"):
                row["id"] = record["id"]
            names = (record.get("expected_filenames") or "").split("|")
            if any(n.strip() for n in names):
                row["expected_filenames"] = [n.strip() for n in names if n.strip()]
            attrs = {
                key[len(ATTRIBUTE_PREFIX) :]: value
                for key, value in record.items()
                if key and key.startswith(ATTRIBUTE_PREFIX) and value
            }
            if attrs:
                row["expected_attributes"] = attrs
            rows.append((line_no, row))
        return rows
    except csv.Error as exc:
        raise EvalSetError(f"The CSV eval set cannot be read: {exc}", param=param) from exc


def question_from(row: dict[str, Any], *, item_no: int, where: str) -> Question:
    """Validate one question's fields (also used for questions given inline)."""

    def bad(message: str) -> EvalSetError:
        return EvalSetError(f"{where}: {message}", param="data_source_config")

    question = row.get("question", row.get("query"))
    if not isinstance(question, str) or not question.strip():
        raise bad("'question' must be a non-empty string")
    if len(question) > MAX_QUESTION_CHARS:
        raise bad(f"'question' is longer than {MAX_QUESTION_CHARS} characters")
    filenames = row.get("expected_filenames", row.get("expected_filename", []))
    if isinstance(filenames, str):
        filenames = [filenames]
    if not isinstance(filenames, list) or not all(
        isinstance(f, str) and 0 < len(f) <= 512 for f in filenames
    ):
        raise bad("'expected_filenames' must be a list of file names (1 to 512 characters)")
    attributes = row.get("expected_attributes", [])
    if isinstance(attributes, dict):
        attributes = [attributes]
    if not isinstance(attributes, list) or not all(_attribute_map(a) for a in attributes):
        raise bad(
            "'expected_attributes' must be an object (or a list of objects) of at most "
            f"{MAX_ATTRIBUTES} keys with string, number or boolean values"
        )
    if not filenames and not attributes:
        raise bad("give 'expected_filenames' or 'expected_attributes': what counts as right")
    if len(filenames) + len(attributes) > MAX_EXPECTED:
        raise bad(f"at most {MAX_EXPECTED} expected answers per question")
    ref = row.get("id")
    if ref is not None and not isinstance(ref, str | int):
        raise bad("'id' must be a string or a number")
    if _has_nul([question, ref, *filenames, *attributes]):
        raise bad("NUL characters cannot be stored")
    return Question(
        item_no=item_no,
        question=question,
        expected_filenames=tuple(dict.fromkeys(filenames)),
        expected_attributes=tuple(attributes),
        ref=None if ref is None else str(ref)[:128],
    )


def _has_nul(values: list[Any]) -> bool:
    for value in values:
        parts = [*value.keys(), *value.values()] if isinstance(value, dict) else [value]
        if any(isinstance(p, str) and "\x00" in p for p in parts):
            return True
    return False


def _attribute_map(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and 0 < len(value) <= MAX_ATTRIBUTES
        and all(isinstance(k, str) and 0 < len(k) <= 64 and _scalar(v) for k, v in value.items())
    )


def _scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= 512
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")  # no NaN or infinity
    return isinstance(value, int | bool)
