"""The upstream configuration: TOML file or JSON variable, validated with every problem named,
keys kept secret, models routed to their upstream."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from prepshelf.domain.upstreams import (
    ModelNotServedError,
    RateLimits,
    UpstreamConfigError,
    parse_upstreams,
)
from prepshelf.settings import Settings
from prepshelf.upstream_config import load_upstreams
from support.service import base_env

GOOD_TOML = """
[upstreams.gpu1]
base_url = "http://gpu1:8000/v1/"
api_key_env = "GPU1_KEY"
endpoints = ["/v1/chat/completions", "/v1/completions"]
rpm = 600
tpm = 400000
max_concurrent = 16
timeout_s = 120
retries = 3
models = ["llama-3.1-8b", "qwen2.5-7b"]

[upstreams.speech]
base_url = "https://speech.example.org/v1"
api_key = "sk-inline-secret"

[upstreams.speech.models."whisper-large"]
endpoints = ["/v1/audio/transcriptions"]
upstream_model = "Systran/faster-whisper-large-v3"

[upstreams.speech.models."bge-m3"]
endpoints = ["/v1/embeddings"]
dimensions = 1024
"""
SECRET = "sk-from-env-7f3a9"


def _settings(**kw: object) -> Settings:
    return Settings(**kw)  # type: ignore[arg-type]


def _problems(data: object, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(UpstreamConfigError) as info:
        parse_upstreams(data, source="test", environ=environ or {}, reserved_model_ids={"local"})
    return info.value.problems


def test_a_toml_file_becomes_typed_upstreams_and_models(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.toml"
    path.write_text(GOOD_TOML)
    config = load_upstreams(_settings(upstreams_file=path), environ={"GPU1_KEY": SECRET})
    gpu1, speech = config.upstreams
    assert gpu1.name == "gpu1" and gpu1.base_url == "http://gpu1:8000/v1"
    assert gpu1.url("/v1/chat/completions") == "http://gpu1:8000/v1/chat/completions"
    assert gpu1.limits == RateLimits(rpm=600, tpm=400000, max_concurrent=16)
    assert (gpu1.timeout_s, gpu1.retries) == (120, 3)
    assert gpu1.api_key is not None and gpu1.api_key.get_secret_value() == SECRET
    # Defaults: no rpm/tpm limit, 8 at once, 5 retries.
    assert speech.limits == RateLimits(rpm=None, tpm=None, max_concurrent=8)
    assert speech.retries == 5 and speech.default_max_tokens == 1024
    assert [m.id for m in config.models] == [
        "llama-3.1-8b",
        "qwen2.5-7b",
        "whisper-large",
        "bge-m3",
    ]
    llama = config.model("llama-3.1-8b")
    assert llama is not None and llama.kind == "chat" and llama.upstream == "gpu1"
    assert llama.endpoints == ("/v1/chat/completions", "/v1/completions")
    whisper, upstream = config.route("whisper-large", "/v1/audio/transcriptions")
    assert whisper.upstream_model == "Systran/faster-whisper-large-v3" and upstream is speech
    assert whisper.kind == "transcription"
    bge = config.model("bge-m3")
    assert bge is not None and bge.kind == "embedding" and bge.dimensions == 1024
    assert [m.id for m in config.models_for("/v1/completions")] == ["llama-3.1-8b", "qwen2.5-7b"]
    assert "PREPSHELF_UPSTREAMS_FILE" in config.source


def test_keys_never_show_in_reprs_or_messages(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.toml"
    path.write_text(GOOD_TOML)
    config = load_upstreams(_settings(upstreams_file=path), environ={"GPU1_KEY": SECRET})
    shown = repr(config) + str(config)
    assert SECRET not in shown and "sk-inline-secret" not in shown
    # A document with a key and a mistake: the message names the mistake, not the key.
    bad = {"upstreams": {"a": {"base_url": "ftp://x", "api_key": "sk-leak-me", "models": ["m"]}}}
    problems = _problems(bad)
    assert not any("sk-leak-me" in p for p in problems)


def test_the_same_document_as_json_in_the_environment() -> None:
    doc = {
        "upstreams": {
            "vllm": {
                "base_url": "http://127.0.0.1:9/v1",
                "endpoints": ["/v1/chat/completions"],
                "rpm": 60,
                "models": {"m": {}},
            }
        }
    }
    config = load_upstreams(_settings(upstreams=json.dumps(doc)))
    assert config.source == "PREPSHELF_UPSTREAMS" and config.upstreams[0].api_key is None
    assert config.upstreams[0].limits.rpm == 60


def test_nothing_configured_is_an_empty_configuration() -> None:
    config = load_upstreams(_settings())
    assert config.models == () and config.upstreams == () and config.source == ""
    with pytest.raises(
        ModelNotServedError, match="Models configured for /v1/chat/completions: none"
    ):
        config.route("gpt-4o", "/v1/chat/completions")


def test_routing_refuses_unknown_models_and_other_endpoints(tmp_path: Path) -> None:
    path = tmp_path / "u.toml"
    path.write_text(GOOD_TOML)
    config = load_upstreams(_settings(upstreams_file=path), environ={"GPU1_KEY": SECRET})
    with pytest.raises(ModelNotServedError) as info:
        config.route("whisper-large", "/v1/chat/completions")
    err = info.value
    assert (err.status_code, err.code, err.param) == (404, "model_not_found", "model")
    assert "`llama-3.1-8b`, `qwen2.5-7b`" in err.message and "whisper" in err.message


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        ({"base_url": "gpu1:8000", "models": ["m"]}, "base_url: must be an http:// or https://"),
        ({"base_url": "http://u:pw@h/v1", "models": ["m"]}, "base_url: must not hold credentials"),
        ({"base_url": "http://h/v1?x=1", "models": ["m"]}, "base_url: must not have a query"),
        ({"models": ["m"]}, "upstreams.u.base_url: Field required"),
        ({"base_url": "http://h", "models": []}, "models: must name at least one model"),
        ({"base_url": "http://h", "models": ["m", "m"]}, "models: lists m more than once"),
        (
            {"base_url": "http://h", "models": ["m"], "rpm": 0},
            "upstreams.u.rpm: Input should be greater than 0",
        ),
        (
            {"base_url": "http://h", "models": ["m"], "tpm": "lots"},
            "upstreams.u.tpm: Input should be a valid integer",
        ),
        (
            {"base_url": "http://h", "models": ["m"], "max_concurrent": -1},
            "max_concurrent: Input should be greater than 0",
        ),
        (
            {"base_url": "http://h", "models": ["m"], "timeout_s": 0},
            "timeout_s: Input should be greater than 0",
        ),
        (
            {"base_url": "http://h", "models": ["m"], "retries": 99},
            "retries: Input should be less than or equal to 20",
        ),
        (
            {"base_url": "http://h", "models": ["m"], "rmp": 5},
            "upstreams.u.rmp: Extra inputs are not permitted",
        ),
        ({"base_url": "http://h", "models": ["m"]}, "upstreams.u.models.m: no endpoints"),
        (
            {"base_url": "http://h", "models": {"m": {"endpoints": ["/v1/responses"]}}},
            "upstreams.u.models.m.endpoints.0: Input should be '/v1/chat/completions'",
        ),
        (
            {
                "base_url": "http://h",
                "endpoints": ["/v1/completions"],
                "models": {"m": {"dimensions": 8}},
            },
            "models.m.dimensions: only for models serving /v1/embeddings",
        ),
        (
            {"base_url": "http://h", "endpoints": ["/v1/completions"], "models": ["local"]},
            "`local` is the local embedding model's name",
        ),
        (
            {"base_url": "http://h", "endpoints": ["/v1/completions"], "models": ["two words"]},
            "a model name is 1-200 characters without spaces",
        ),
        (
            {
                "base_url": "http://h",
                "endpoints": ["/v1/completions"],
                "models": ["m"],
                "api_key": "k",
                "api_key_env": "K",
            },
            "give api_key or api_key_env, not both",
        ),
        (
            {
                "base_url": "http://h",
                "endpoints": ["/v1/completions"],
                "models": ["m"],
                "api_key_env": "NOT_SET_ANYWHERE",
            },
            "api_key_env: the environment variable NOT_SET_ANYWHERE is not set or empty",
        ),
        (
            {
                "base_url": "http://h",
                "endpoints": ["/v1/completions"],
                "models": ["m"],
                "api_key_env": "$HOME",
            },
            "api_key_env: must be the name of an environment variable",
        ),
        (
            {
                "base_url": "http://h",
                "endpoints": ["/v1/completions"],
                "models": ["m"],
                "backoff_base_s": 9,
                "backoff_max_s": 2,
            },
            "backoff_max_s: must not be below backoff_base_s",
        ),
    ],
)
def test_each_mistake_is_named_with_its_path(upstream: dict[str, object], expected: str) -> None:
    problems = _problems({"upstreams": {"u": upstream}})
    assert any(expected in p for p in problems), problems


def test_every_problem_is_reported_at_once_and_names_are_checked() -> None:
    doc = {
        "upstreams": {
            "a b": {"base_url": "http://h", "endpoints": ["/v1/completions"], "models": ["x"]},
            "c": {"base_url": "http://h", "endpoints": ["/v1/completions"], "models": ["x"]},
        },
    }
    problems = _problems(doc)
    assert any(p.startswith("upstreams.a b: the name must be") for p in problems)
    assert "upstreams.c.models.x: `x` is also served by upstreams.a b" in problems
    assert _problems({"upstreams": {}, "extra": 1}) == ["extra: Extra inputs are not permitted"]
    assert _problems({}) == ["upstreams: Field required"]


def test_file_problems_are_precise(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(UpstreamConfigError, match=r"nope.toml\): cannot read the file"):
        load_upstreams(_settings(upstreams_file=missing))
    broken = tmp_path / "broken.toml"
    broken.write_text("[upstreams.a\nbase_url = 1\n")
    with pytest.raises(UpstreamConfigError, match="not valid TOML"):
        load_upstreams(_settings(upstreams_file=broken))
    as_json = tmp_path / "u.json"
    as_json.write_text("{nope")
    with pytest.raises(UpstreamConfigError, match=r"not valid JSON: .* at line 1 column 2"):
        load_upstreams(_settings(upstreams_file=as_json))
    with pytest.raises(UpstreamConfigError, match="in one of them, not both"):
        load_upstreams(_settings(upstreams_file=as_json, upstreams="{}"))
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UpstreamConfigError, match="not UTF-8 text"):
        load_upstreams(_settings(upstreams_file=binary))


def test_the_default_embedding_model_name_is_reserved() -> None:
    doc = {
        "upstreams": {
            "u": {
                "base_url": "http://h",
                "endpoints": ["/v1/embeddings"],
                "models": ["all-MiniLM-L6-v2"],
            }
        }
    }
    with pytest.raises(UpstreamConfigError, match="is the local embedding model's name"):
        load_upstreams(_settings(upstreams=json.dumps(doc)))


@pytest.mark.parametrize("role", ["api", "worker", "serve"])
def test_roles_refuse_to_start_with_a_bad_configuration(role: str, tmp_path: Path) -> None:
    doc = {
        "upstreams": {
            "u": {"base_url": "http://h", "api_key": "sk-do-not-print", "rpm": -5, "models": ["m"]}
        }
    }
    env = base_env(
        PREPSHELF_UPSTREAMS=json.dumps(doc),
        PREPSHELF_DATABASE_URL="postgresql://127.0.0.1:9/none",  # never reached
        PREPSHELF_DATA_DIR=str(tmp_path),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "prepshelf", role],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"prepshelf {role}: invalid upstream configuration (PREPSHELF_UPSTREAMS)" in proc.stderr
    assert "upstreams.u.rpm: Input should be greater than 0" in proc.stderr
    assert "sk-do-not-print" not in proc.stderr + proc.stdout


def test_the_documented_examples_are_valid() -> None:
    """docs/upstreams.md and domain/upstreams.py show configurations; both must load."""
    import textwrap
    import tomllib

    import prepshelf.domain.upstreams as module

    docs = Path(__file__).resolve().parents[2] / "docs" / "upstreams.md"
    block = docs.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    config = parse_upstreams(tomllib.loads(block), source="docs", environ={"GPU1_KEY": "k"})
    assert [m.id for m in config.models] == [
        "llama-3.1-8b-instruct",
        "qwen2.5-7b-instruct",
        "whisper-large-v3",
        "bge-m3",
    ]
    assert module.__doc__ is not None
    example = module.__doc__.split("reads::", 1)[1].split("(TOML allows", 1)[0]
    config = parse_upstreams(
        tomllib.loads(textwrap.dedent(example)), source="docstring", environ={"GPU1_KEY": "k"}
    )
    assert config.model("whisper-large-v3") is not None
