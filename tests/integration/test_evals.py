"""Evaluation runs over real documents of the dev corpus, checked against numbers worked out
by hand and against an independent computation through the public search API.

Seven questions: five each aimed at one document (found first), one whose right answer is
not in the store (scores 0), and one with two right answers marked by an attribute (both
found first and second: nDCG 1). Three search settings side by side: vector (the store's
default), hybrid, and a score threshold no hit reaches. A second run after a document left
the store is marked "store changed" and its diff names the question that got worse; a third
after a settings change is marked "settings changed". /metrics exports the latest scores.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.corpus import CORPUS, needs_corpus
from support.runs import ok, run_cli, wait_job
from support.service import Service
from support.sse import events

# The expected numbers are hand-computed from the real model's rankings.
pytestmark = [needs_corpus, pytest.mark.real_model]

DOCS = {
    "category-level.docx": {},
    "ideas-page.html": {},
    "eng_spa_mult.docx": {"topic": "rights"},
    "UDHR_first_article_all.txt": {"topic": "rights"},
    "crazyones-pdfa.pdf": {},
    "simple-table.md": {},
    "minimal-document.pdf": {},
}
QUESTIONS: list[dict[str, Any]] = [
    {
        "id": "moby",
        "question": "Call me Ishmael: with no money in my purse I would sail about and see the "
        "watery part of the world",
        "expected_filenames": ["category-level.docx"],
    },
    {
        "id": "ideas",
        "question": "How to get new ideas: an essay on noticing the gaps in knowledge",
        "expected_filenames": ["ideas-page.html"],
    },
    {
        "id": "crazy",
        "question": "Here's to the crazy ones, the misfits, the rebels, the troublemakers",
        "expected_filenames": ["crazyones-pdfa.pdf"],
    },
    {
        "id": "table",
        "question": "Juicy Apples cost 1.99 and Bananas 1.89: price and number in stock",
        "expected_filenames": ["simple-table.md"],
    },
    {
        "id": "lorem",
        "question": "Lorem ipsum dolor sit amet, consetetur sadipscing elitr",
        "expected_filenames": ["minimal-document.pdf"],
    },
    {
        "id": "absent",
        "question": "Duties of a chapter 13 bankruptcy trustee",
        "expected_filenames": ["handbook-872p.docx"],  # not in the store
    },
    {
        "id": "rights",
        "question": "All human beings are born free and equal in dignity and rights",
        "expected_attributes": {"topic": "rights"},
    },
]
CRITERIA = [
    {"type": "search", "name": "vector"},
    {
        "type": "search",
        "name": "hybrid",
        "ranking_options": {"hybrid_search": {"embedding_weight": 1, "text_weight": 1}},
    },
    {"type": "search", "name": "strict", "ranking_options": {"score_threshold": 0.99}},
]


@pytest.fixture(scope="module")
def store(service: Service) -> Iterator[dict[str, Any]]:
    with service.http() as http:
        vs = ok(http.post("/v1/vector_stores", json={"name": "eval corpus"}))
        files = []
        for name, attributes in DOCS.items():
            uploaded = ok(
                http.post(
                    "/v1/files",
                    files={"file": (name, (CORPUS / name).read_bytes())},
                    data={"purpose": "assistants"},
                )
            )
            files.append({"file_id": uploaded["id"], "attributes": attributes})
        batch = ok(http.post(f"/v1/vector_stores/{vs['id']}/file_batches", json={"files": files}))
        for _ in range(1200):
            batch = ok(http.get(f"/v1/vector_stores/{vs['id']}/file_batches/{batch['id']}"))
            if batch["status"] != "in_progress":
                break
            time.sleep(0.3)
        assert batch["file_counts"]["completed"] == len(DOCS), batch
        yield vs


def _eval_set(http: httpx.Client) -> str:
    body = "".join(json.dumps({"item": q}) + "\n" for q in QUESTIONS).encode()
    return ok(
        http.post("/v1/files", files={"file": ("questions.jsonl", body)}, data={"purpose": "evals"})
    )["id"]


def _run(http: httpx.Client, eval_id: str, **body: Any) -> dict[str, Any]:
    run = ok(http.post(f"/v1/evals/{eval_id}/runs", json=body))
    assert run["status"] in ("queued", "in_progress") and run["job_id"]
    job = wait_job(http, run["job_id"])
    assert job["status"] == "succeeded", job
    assert job["kind"] == "eval_run" and job["eval_run_id"] == run["id"]
    return ok(http.get(f"/v1/evals/{eval_id}/runs/{run['id']}"))


def _items(http: httpx.Client, eval_id: str, run_id: str) -> list[dict[str, Any]]:
    page = ok(http.get(f"/v1/evals/{eval_id}/runs/{run_id}/output_items", params={"limit": 100}))
    assert not page["has_more"]
    return sorted(page["data"], key=lambda i: i["datasource_item_id"])


def _relevant(question: dict[str, Any], hit: dict[str, Any]) -> bool:
    names = question.get("expected_filenames", [])
    if hit["filename"] in names or hit["attributes"].get("source") in names:
        return True
    want = question.get("expected_attributes") or {}
    return bool(want) and all(hit["attributes"].get(k) == v for k, v in want.items())


def _independent_rank(
    http: httpx.Client, store_id: str, question: dict[str, Any], criterion: dict[str, Any]
) -> int | None:
    """The first right answer's rank among distinct files, via the public search route."""
    body: dict[str, Any] = {"query": question["question"], "max_num_results": 50}
    if "ranking_options" in criterion:
        body["ranking_options"] = criterion["ranking_options"]
    hits = ok(http.post(f"/v1/vector_stores/{store_id}/search", json=body))["data"]
    files: list[dict[str, Any]] = []
    for hit in hits:
        if hit["file_id"] not in {f["file_id"] for f in files}:
            files.append(hit)
    for rank, hit in enumerate(files[:10], start=1):
        if _relevant(question, hit):
            return rank
    return None


def _by_hand(
    ranks: list[int | None], relevant: list[int], found: list[list[int]]
) -> dict[str, float]:
    """hit@k, MRR and nDCG@10 written out for this test (not the server's code)."""
    n = len(ranks)

    def dcg(positions: list[int]) -> float:
        return sum(1 / math.log2(p + 1) for p in positions)

    ndcg = [
        dcg(f) / dcg(list(range(1, min(10, max(r, len(f))) + 1))) if max(r, len(f)) else 0.0
        for f, r in zip(found, relevant, strict=True)
    ]
    return {
        "hit_at_1": sum(1 for r in ranks if r is not None and r <= 1) / n,
        "hit_at_3": sum(1 for r in ranks if r is not None and r <= 3) / n,
        "hit_at_10": sum(1 for r in ranks if r is not None and r <= 10) / n,
        "mrr": sum(1 / r for r in ranks if r is not None) / n,
        "ndcg_at_10": sum(ndcg) / n,
    }


def test_eval_run_matches_hand_computed_numbers(service: Service, store: dict[str, Any]) -> None:
    with service.http() as http:
        evaluation = ok(
            http.post(
                "/v1/evals",
                json={
                    "name": "corpus questions",
                    "data_source_config": {"type": "file", "file_id": _eval_set(http)},
                    "vector_store_id": store["id"],
                    "testing_criteria": CRITERIA,
                    "metadata": {"team": "search"},
                },
            )
        )
        assert evaluation["object"] == "eval"
        assert evaluation["data_source_config"]["question_count"] == len(QUESTIONS)
        run = _run(http, evaluation["id"], name="first")
        assert run["object"] == "eval.run" and run["status"] == "completed"
        assert run["data_source"] == {"type": "vector_store", "vector_store_id": store["id"]}
        assert run["store"]["files"] == len(DOCS)
        assert run["changes"] == {"store": False, "settings": False}  # nothing before it
        results = {r["testing_criteria"]: r for r in run["per_testing_criteria_results"]}
        assert list(results) == ["vector", "hybrid", "strict"]

        # By hand: five questions find their document first, "absent" finds nothing (its
        # answer is not in the store), "rights" finds both right answers first and second.
        six_of_seven = 6 / 7
        for name in ("vector", "hybrid"):
            metrics = results[name]["metrics"]
            for key in ("hit_at_1", "hit_at_3", "hit_at_10", "mrr", "ndcg_at_10"):
                assert metrics[key] == pytest.approx(six_of_seven), (name, key, metrics)
            assert (results[name]["passed"], results[name]["failed"]) == (6, 1)
        assert results["strict"]["metrics"] == dict.fromkeys(
            ("hit_at_1", "hit_at_3", "hit_at_10", "mrr", "ndcg_at_10"), 0.0
        )
        # An item passes when every setting passes: "strict" fails them all.
        assert run["result_counts"] == {"total": 7, "errored": 0, "failed": 7, "passed": 0}

        items = _items(http, evaluation["id"], run["id"])
        assert [i["datasource_item"]["id"] for i in items] == [q["id"] for q in QUESTIONS]
        ranks: dict[str, list[int | None]] = {c["name"]: [] for c in CRITERIA}
        relevant: list[int] = []
        found: dict[str, list[list[int]]] = {c["name"]: [] for c in CRITERIA}
        for item, question in zip(items, QUESTIONS, strict=True):
            per = {r["name"]: r for r in item["results"]}
            relevant.append(per["vector"]["relevant_in_store"])
            for criterion in CRITERIA:
                result = per[criterion["name"]]
                # The same rank as a search through the public route, worked out here.
                expected = _independent_rank(http, store["id"], question, criterion)
                assert result["rank"] == expected, (question["id"], criterion["name"], result)
                ranks[criterion["name"]].append(result["rank"])
                hits = result["sample"]["hits"]
                found[criterion["name"]].append(
                    [i + 1 for i, h in enumerate(hits) if h["relevant"]]
                )
                # Consistency, not speed: a search's latency includes its own search time.
                search, latency = result["search_ms"], result["latency_ms"]
                assert 0 < search <= latency
        assert relevant == [1, 1, 1, 1, 1, 0, 2]
        assert ranks["vector"] == [1, 1, 1, 1, 1, None, 1]
        assert found["vector"][6] == [1, 2]  # both right answers, first and second
        for name in ("vector", "hybrid", "strict"):
            hand = _by_hand(ranks[name], relevant, found[name])
            for key, value in hand.items():
                assert results[name]["metrics"][key] == pytest.approx(value), (name, key)
        latency = results["vector"]["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]

        # The run is an ordinary job: its events tell its life, and the stream ends with it.
        with http.stream("GET", f"/v1/jobs/{run['job_id']}/events", timeout=30) as stream:
            kinds = [f.event for f in events(stream)]
        assert kinds[0] == "job.created" and kinds[-1] == "job.succeeded", kinds
        assert "job.stage" in kinds or "job.running" in kinds

        # The official SDK reads the same objects.
        sdk = service.openai()
        got = sdk.evals.runs.retrieve(run["id"], eval_id=evaluation["id"])
        assert got.status == "completed" and got.result_counts.total == 7
        assert {r.testing_criteria: r.passed for r in got.per_testing_criteria_results} == {
            "vector": 6,
            "hybrid": 6,
            "strict": 0,
        }
        sdk_items = sdk.evals.runs.output_items.list(
            run["id"], eval_id=evaluation["id"], status="fail", limit=100
        )
        assert len(sdk_items.data) == 7 and sdk_items.data[0].object == "eval.run.output_item"
        assert sdk.evals.retrieve(evaluation["id"]).name == "corpus questions"

        failed = ok(
            http.get(
                f"/v1/evals/{evaluation['id']}/runs/{run['id']}/output_items",
                params={"status": "fail", "limit": 100},
            )
        )["data"]
        assert len(failed) == 7
        one = ok(
            http.get(f"/v1/evals/{evaluation['id']}/runs/{run['id']}/output_items/{items[0]['id']}")
        )
        assert one["object"] == "eval.run.output_item" and one["id"] == items[0]["id"]

        # The store changes: the essay leaves. The next run is marked, and its diff names the
        # question that got worse.
        ideas = next(
            f
            for f in ok(http.get(f"/v1/vector_stores/{store['id']}/files", params={"limit": 100}))[
                "data"
            ]
            if f["filename"] == "ideas-page.html"
        )
        ok(http.delete(f"/v1/vector_stores/{store['id']}/files/{ideas['id']}"))
        second = _run(http, evaluation["id"], name="after removal")
        assert second["changes"] == {"store": True, "settings": False}
        assert second["store"]["files"] == len(DOCS) - 1
        vector = {r["testing_criteria"]: r for r in second["per_testing_criteria_results"]}
        assert vector["vector"]["metrics"]["hit_at_1"] == pytest.approx(5 / 7)
        diff = ok(http.get(f"/v1/evals/{evaluation['id']}/runs/{second['id']}/diff"))
        assert diff["base_run_id"] == run["id"]
        worse = [d for d in diff["data"] if d["change"] == "worse"]
        assert {(d["datasource_item_id"], d["testing_criteria"]) for d in worse} == {
            (1, "vector"),
            (1, "hybrid"),
        }
        assert diff["data"][0]["change"] == "worse" and diff["data"][0]["base_rank"] == 1
        assert diff["counts"]["worse"] == 2 and diff["counts"]["better"] == 0
        deltas = {c["name"]: c["metrics"] for c in diff["testing_criteria"]}
        assert deltas["vector"]["hit_at_1"]["delta"] == pytest.approx(-1 / 7, abs=1e-6)

        # The settings change (another ef_search): the third run is marked for that.
        criteria = [
            *CRITERIA[:2],
            {
                "type": "search",
                "name": "strict",
                "ef_search": 40,
                "ranking_options": {"score_threshold": 0.99},
            },
        ]
        ok(http.post(f"/v1/evals/{evaluation['id']}", json={"testing_criteria": criteria}))
        third = _run(http, evaluation["id"])
        assert third["changes"] == {"store": False, "settings": True}

        runs = ok(http.get(f"/v1/evals/{evaluation['id']}/runs", params={"order": "asc"}))["data"]
        assert [r["id"] for r in runs] == [run["id"], second["id"], third["id"]]

        # /metrics: the latest scores, per eval and setting, for alerting on a drop.
        text = httpx.get(f"http://127.0.0.1:{service.port}/metrics").text
        pattern = (
            rf'prepshelf_eval_score\{{eval_id="{evaluation["id"]}",metric="hit_at_1",'
            rf'testing_criteria="vector"\}} ([0-9.e+-]+)'
        )
        line = re.search(pattern, text)
        assert line is not None, text[-3000:]
        assert float(line.group(1)) == pytest.approx(5 / 7)
        assert (
            f'prepshelf_eval_last_completed_timestamp_seconds{{eval_id="{evaluation["id"]}"}}'
            in text
        )


def test_csv_eval_sets_and_refusals(service: Service, store: dict[str, Any]) -> None:
    with service.http() as http:
        csv_body = (
            b"id,question,expected_filenames,expected_attributes.topic\n"
            b"q1,Call me Ishmael,category-level.docx,\n"
            b"q2,Born free and equal,,rights\n"
        )
        file_id = ok(
            http.post("/v1/files", files={"file": ("set.csv", csv_body)}, data={"purpose": "evals"})
        )["id"]
        created = ok(
            http.post(
                "/v1/evals",
                json={"data_source_config": {"type": "file", "file_id": file_id}},
            )
        )
        assert created["data_source_config"]["question_count"] == 2
        assert [c["name"] for c in created["testing_criteria"]] == ["default"]
        # No store named anywhere: a run must say which.
        refused = http.post(f"/v1/evals/{created['id']}/runs", json={})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "data_source"
        run = _run(
            http,
            created["id"],
            data_source={"type": "vector_store", "vector_store_id": store["id"]},
        )
        assert run["result_counts"]["total"] == 2

        bad_line = b'{"question": "ok", "expected_filenames": ["a"]}\n{"question": "no answer"}\n'
        bad_id = ok(
            http.post(
                "/v1/files", files={"file": ("bad.jsonl", bad_line)}, data={"purpose": "evals"}
            )
        )["id"]
        for body, param in [
            ({"data_source_config": {"type": "file", "file_id": bad_id}}, "data_source_config"),
            (
                {"data_source_config": {"type": "file", "file_id": "file-nope"}},
                "data_source_config.file_id",
            ),
            (
                {"data_source_config": {"type": "items", "items": [{"question": "q"}]}},
                "data_source_config",
            ),
            (
                {
                    "data_source_config": {
                        "type": "items",
                        "items": [{"question": "q", "expected_filenames": ["a"]}],
                    },
                    "testing_criteria": [
                        {"name": "x", "filters": {"type": "zz", "key": "a", "value": 1}}
                    ],
                },
                "testing_criteria[0].filters.type",
            ),
            (
                {
                    "data_source_config": {
                        "type": "items",
                        "items": [{"question": "q", "expected_filenames": ["a"]}],
                    },
                    "testing_criteria": [{"name": "x"}, {"name": "x"}],
                },
                None,
            ),
            (
                {
                    "data_source_config": {
                        "type": "items",
                        "items": [{"question": "q", "expected_filenames": ["a"]}],
                    },
                    "vector_store_id": "vs_nope",
                },
                "vector_store_id",
            ),
        ]:
            response = http.post("/v1/evals", json=body)
            assert response.status_code in (400, 404), (body, response.text)
            if param is not None:
                assert response.json()["error"]["param"].startswith(param), response.text


def test_another_project_sees_no_eval(service: Service, store: dict[str, Any]) -> None:
    with service.http() as http:
        evaluation = ok(
            http.post(
                "/v1/evals",
                json={
                    "data_source_config": {
                        "type": "items",
                        "items": [{"item": {"question": "q", "expected_filenames": ["a"]}}],
                    },
                    "vector_store_id": store["id"],
                },
            )
        )
        run = _run(http, evaluation["id"])
        schedule = ok(
            http.post(
                "/v1/schedules",
                json={
                    "kind": "eval_run",
                    "cron": "@daily",
                    "params": {"eval_id": evaluation["id"]},
                },
            )
        )
        project = ok(http.post("/v1/admin/projects", json={"name": "other-team"}))
        key = ok(http.post("/v1/admin/keys", json={"project_id": project["id"]}))["value"]
    other = service.http(key)
    with other:
        base = f"/v1/evals/{evaluation['id']}"
        for method, path in [
            ("GET", base),
            ("POST", base),
            ("DELETE", base),
            ("GET", f"{base}/runs"),
            ("POST", f"{base}/runs"),
            ("GET", f"{base}/runs/{run['id']}"),
            ("GET", f"{base}/runs/{run['id']}/output_items"),
            ("GET", f"{base}/runs/{run['id']}/diff"),
        ]:
            response = other.request(method, path, json={} if method == "POST" else None)
            assert response.status_code == 404, (method, path, response.text)
        assert ok(other.get("/v1/evals"))["data"] == []
        for method, path in [
            ("GET", f"/v1/schedules/{schedule['id']}"),
            ("POST", f"/v1/schedules/{schedule['id']}"),
            ("POST", f"/v1/schedules/{schedule['id']}/pause"),
            ("POST", f"/v1/schedules/{schedule['id']}/resume"),
            ("POST", f"/v1/schedules/{schedule['id']}/run"),
            ("GET", f"/v1/schedules/{schedule['id']}/runs"),
            ("DELETE", f"/v1/schedules/{schedule['id']}"),
        ]:
            response = other.request(method, path, json={} if method == "POST" else None)
            assert response.status_code == 404, (method, path, response.text)
        assert ok(other.get("/v1/schedules"))["data"] == []
        # Nor schedule a run of the first project's eval.
        response = other.post(
            "/v1/schedules",
            json={"kind": "eval_run", "cron": "@daily", "params": {"eval_id": evaluation["id"]}},
        )
        assert response.status_code == 404
        # Nor can it point its own eval at the first project's store.
        response = other.post(
            "/v1/evals",
            json={
                "data_source_config": {
                    "type": "items",
                    "items": [{"question": "q", "expected_filenames": ["a"]}],
                },
                "vector_store_id": store["id"],
            },
        )
        assert response.status_code == 404


def _rows(stdout: str, header_start: str) -> list[dict[str, str]]:
    """The tab-separated table that starts with `header_start` in plain CLI output."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header = lines[start].split("\t")
    rows = []
    for line in lines[start + 1 :]:
        cells = line.split("\t")
        if len(cells) != len(header):
            break
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def test_cli_eval_run_list_diff(service: Service, store: dict[str, Any], tmp_path: Any) -> None:
    questions = tmp_path / "cli-questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS[2:5]))
    args = (service.port, service.api_key)
    first = run_cli(
        *args,
        "eval",
        "run",
        "cli eval",
        "--questions",
        str(questions),
        "--store",
        "eval corpus",
        "--hybrid",
        "--name",
        "first",
    )
    assert first.returncode == 0, first.stderr + first.stdout
    assert "created eval 'cli eval'" in first.stdout
    table = {r["criterion"]: r for r in _rows(first.stdout, "run\t")}
    assert set(table) == {"default", "hybrid"}
    with service.http() as http:
        evaluation = next(
            e
            for e in ok(http.get("/v1/evals", params={"limit": 100}))["data"]
            if e["name"] == "cli eval"
        )
        (api_run,) = ok(http.get(f"/v1/evals/{evaluation['id']}/runs"))["data"]
    for result in api_run["per_testing_criteria_results"]:
        row = table[result["testing_criteria"]]
        assert row["run"] == api_run["id"] and row["status"] == "completed"
        for key, label in (("hit_at_1", "hit@1"), ("mrr", "MRR"), ("ndcg_at_10", "nDCG@10")):
            assert row[label] == f"{result['metrics'][key]:.3f}"

    second = run_cli(*args, "eval", "run", "cli eval", "--name", "second")
    assert second.returncode == 0, second.stderr + second.stdout
    listed = run_cli(*args, "eval", "list", "cli eval")
    assert listed.returncode == 0 and {r["name"] for r in _rows(listed.stdout, "run\t")} == {
        "first",
        "second",
    }
    assert "cli eval" in run_cli(*args, "eval", "list").stdout
    diff = run_cli(*args, "eval", "diff", "cli eval", "--all")
    assert diff.returncode == 0, diff.stderr + diff.stdout  # nothing got worse
    assert "0 worse" in diff.stdout and len(_rows(diff.stdout, "#\t")) == 6  # 3 questions x 2
    missing = run_cli(*args, "eval", "run", "no such eval")
    assert missing.returncode == 1 and "--questions" in missing.stderr
    assert run_cli(*args, "schedules", "list").returncode == 0


def test_hostile_inputs_are_4xx(service: Service, store: dict[str, Any]) -> None:
    items = [{"question": "q", "expected_filenames": ["a"]}]
    with service.http() as http:
        evaluation = ok(
            http.post(
                "/v1/evals",
                json={"data_source_config": {"type": "items", "items": items}},
            )
        )
        base = f"/v1/evals/{evaluation['id']}"
        schedule = {"kind": "eval_run", "cron": "@daily", "params": {"eval_id": evaluation["id"]}}
        cases: list[tuple[str, str, Any]] = [
            ("POST", "/v1/schedules", {**schedule, "cron": "0 3 * * *\x00"}),
            ("POST", "/v1/schedules", {**schedule, "timezone": "UTC\x00"}),
            ("POST", "/v1/schedules", {**schedule, "timezone": ""}),
            ("POST", "/v1/schedules", {**schedule, "name": "nul\x00name"}),
            ("POST", "/v1/schedules", {**schedule, "params": {"eval_id": "x\x00"}}),
            ("POST", "/v1/schedules", {**schedule, "params": []}),
            ("POST", "/v1/schedules", {**schedule, "params": {"eval_id": {"$gt": ""}}}),
            (
                "POST",
                "/v1/schedules",
                {
                    "kind": "source_sync",
                    "cron": "@daily",
                    "params": {"vector_store_id": store["id"], "source": "/tmp\x00/x"},
                },
            ),
            (
                "POST",
                "/v1/schedules",
                {
                    "kind": "source_sync",
                    "cron": "@daily",
                    "params": {
                        "vector_store_id": store["id"],
                        "source": "/tmp",
                        "chunking_strategy": {
                            "type": "static",
                            "static": {"max_chunk_size_tokens": 9999},
                        },
                    },
                },
            ),
            (
                "POST",
                "/v1/evals",
                {"data_source_config": {"type": "items", "items": [{"item": 5}]}},
            ),
            ("POST", "/v1/evals", {"data_source_config": {"type": "items", "items": [[1]]}}),
            (
                "POST",
                "/v1/evals",
                {
                    "data_source_config": {"type": "items", "items": items},
                    "testing_criteria": [
                        {"name": "x", "filters": {"type": "eq", "key": "k", "value": "\x00"}}
                    ],
                },
            ),
            (
                "POST",
                "/v1/evals",
                {
                    "data_source_config": {"type": "items", "items": items},
                    "testing_criteria": [{"name": "bad name!"}],
                },
            ),
            (
                "POST",
                f"{base}/runs",
                {"data_source": {"type": "vector_store", "vector_store_id": "vs_x"}},
            ),
            ("GET", f"{base}/runs/evalrun_nope/diff?base_run_id=evalrun_other", None),
            ("GET", f"{base}/runs/evalrun_nope/output_items/outputitem_x", None),
            ("GET", f"{base}/runs?after=evalrun_unknown", None),
            ("GET", "/v1/schedules?kind=nope", None),
            ("POST", "/v1/schedules/sched_nope/run", None),
            ("POST", "/v1/schedules/sched_nope", {"cron": "@hourly"}),
        ]
        for method, path, body in cases:
            response = http.request(method, path, json=body)
            assert 400 <= response.status_code < 500, (method, path, body, response.text)
            assert response.json()["error"]["message"], response.text
        # A finished run: cancel leaves it as it was; delete removes it and its items.
        run = _run(
            http,
            evaluation["id"],
            data_source={"type": "vector_store", "vector_store_id": store["id"]},
        )
        assert ok(http.post(f"{base}/runs/{run['id']}"))["status"] == "completed"
        assert ok(http.delete(f"{base}/runs/{run['id']}"))["deleted"] is True
        assert http.get(f"{base}/runs/{run['id']}").status_code == 404
