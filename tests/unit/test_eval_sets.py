"""Eval sets from JSONL and CSV: the questions, their right answers, and precise refusals."""

from __future__ import annotations

import pytest

from prepshelf.pipeline.eval_sets import EvalSetError, parse_eval_set


def _parse(text: str, filename: str | None = None, limit: int = 100) -> list:  # type: ignore[type-arg]
    return parse_eval_set(text.encode(), filename=filename, max_questions=limit, param="file")


def test_jsonl_bare_and_openai_items() -> None:
    found = _parse(
        '{"question": "Who?", "expected_filenames": ["a.md", "a.md"], "id": 7}\n'
        "\n"
        '{"item": {"question": "Where?", "expected_attributes": {"source": "x/y.md"}}}\n'
        '{"query": "What?", "expected_filename": "b.pdf", '
        '"expected_attributes": [{"k": 1}, {"flag": true}]}\n'
    )
    assert [q.question for q in found] == ["Who?", "Where?", "What?"]
    assert [q.item_no for q in found] == [0, 1, 2]
    assert found[0].expected_filenames == ("a.md",) and found[0].ref == "7"
    assert found[1].expected_attributes == ({"source": "x/y.md"},)
    assert found[2].expected_filenames == ("b.pdf",)
    assert found[2].expected_attributes == ({"k": 1}, {"flag": True})


def test_csv_with_filenames_and_attribute_columns() -> None:
    found = _parse(
        "\ufeffid,question,expected_filenames,expected_attributes.source\n"
        'q1,"Who, really?",a.md|b.md,\n'
        "q2,Where?,,docs/c.md\n",
        filename="set.csv",
    )
    assert found[0].question == "Who, really?" and found[0].expected_filenames == ("a.md", "b.md")
    assert found[1].expected_attributes == ({"source": "docs/c.md"},) and found[1].ref == "q2"


@pytest.mark.parametrize(
    ("text", "filename", "message"),
    [
        ('{"question": "x"}\n', None, "line 1: give 'expected_filenames'"),
        ('{"question": "ok", "expected_filenames": ["a"]}\n{oops\n', None, "Line 2 is not valid"),
        ("[1, 2]\n", "set.jsonl", "Line 1 is not a JSON object"),
        ('{"question": "", "expected_filenames": ["a"]}\n', None, "non-empty"),
        ('{"question": "q", "expected_filenames": [3]}\n', None, "list of file names"),
        ('{"question": "q", "expected_attributes": {"k": [1]}}\n', None, "expected_attributes"),
        ('{"question": "q", "expected_attributes": {"k": NaN}}\n', None, "expected_attributes"),
        ("name,answer\nx,y\n", "set.csv", "'question' column"),
        ("", "set.jsonl", "no questions"),
        ('{"question": "a\\u0000", "expected_filenames": ["a"]}\n', None, "NUL"),
    ],
)
def test_bad_sets_are_refused_with_where(text: str, filename: str | None, message: str) -> None:
    with pytest.raises(EvalSetError) as err:
        _parse(text, filename)
    assert message in err.value.message


def test_nul_bytes_and_other_encodings_are_refused() -> None:
    with pytest.raises(EvalSetError, match="NUL"):
        parse_eval_set(b"question\nq\x00\n", filename="x.csv", max_questions=5, param="f")
    with pytest.raises(EvalSetError, match="UTF-8"):
        parse_eval_set(
            "question\nqué\n".encode("latin-1"), filename="x.csv", max_questions=5, param="f"
        )


def test_too_many_questions() -> None:
    line = '{"question": "q", "expected_filenames": ["a"]}\n'
    assert len(_parse(line * 3, limit=3)) == 3
    with pytest.raises(EvalSetError, match="more than 3"):
        _parse(line * 4, limit=3)
