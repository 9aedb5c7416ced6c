"""Export on CPU: tiny fine-tunes -> GGUF -> load and generate in llama.cpp -> registry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent.backends.llama_repack import model_params, repack_enabled
from tests.trainer.tiny import OracleBackend, mbpp_solutions, shared_tiny
from trainer.train.config import TrainConfig

pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("llama_cpp")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from agent import paths

    base, data = shared_tiny(tmp_path_factory.getbasetemp())
    root = tmp_path_factory.mktemp("export")
    return {
        "base": base,
        "data": data,
        "runs": root / "runs",
        "registry": root / "registry",
        # The converter is fetched once per machine into the real cache (a 77 MB sdist).
        "cache": paths.default_cache_dir(),
    }


def _config(env: dict[str, Path], method: str, base: Path) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "method": method,
            "base": str(base),
            "data_dir": env["data"],
            "out_dir": env["runs"],
            "lr": 3e-2,
            "max_steps": 3,
            "batch_size": 4,
            "lora_r": 8,
            "lora_alpha": 16,
            "max_len": 128,
            "warmup_ratio": 0.0,
        }
    )


def _train(env: dict[str, Path], method: str, base: Path) -> Path:
    from trainer.train.loop import run_training

    return run_training(
        _config(env, method, base),
        cache_dir=env["cache"],
        registry_dir=env["registry"],
        progress=False,
    ).run_dir


def test_retrain_leti_end_to_end(env: dict[str, Path]) -> None:
    """train (LeTI, new tokens) -> merged Q4_K_M GGUF -> load check -> registry -> gate."""
    from llama_cpp import Llama

    from agent.config import Settings
    from agent.models import ModelSpec, Registry
    from evals.suites import load_mbpp
    from trainer.export.pipeline import ExportError, export_run
    from trainer.retrain import GatePlan, retrain

    settings = Settings(
        data_dir=env["registry"],
        cache_dir=env["cache"],
        sessions_dir=env["runs"].parent / "sessions",
        max_turns=2,
    )
    reg = Registry(env["registry"])
    reg.add(
        ModelSpec(
            name="current",
            description="the model in use",
            filename="base.gguf",
            sha256="0" * 64,
            size=4,
            path=env["base"] / "config.json",
            kind="local",
        )
    )
    tasks = load_mbpp("validation")[:4]
    solutions = mbpp_solutions(tasks)
    # The eval outcomes are scripted (a random tiny model solves nothing): the candidate
    # "knows" every task, the current model half; the export and its checks are real.
    backends = {"current": OracleBackend("current", solutions, set(list(solutions)[:2]))}

    def backend_for(name: str) -> OracleBackend:
        return backends.get(name) or OracleBackend(name, solutions, set(solutions))

    result = retrain(
        settings.model_copy(update={"model": "current"}),
        _config(env, "leti", env["base"]),
        sessions=[],
        skip_build=True,
        gate=GatePlan(tasks=tasks),
        backend_for=backend_for,
        progress=False,
    )
    exported = result.export
    assert exported.gguf.read_bytes()[:4] == b"GGUF"
    assert exported.gguf.name.endswith("-Q4_K_M.gguf")
    assert exported.check is not None and exported.check.tokens == 8
    # LeTI's tokens survived the round trip as single special tokens.
    vocab = Llama(model_path=str(exported.gguf), vocab_only=True, verbose=False)
    good = vocab.tokenize(b"<|good|>", add_bos=False, special=True)
    assert len(good) == 1 and good[0] >= 49152
    vocab.close()

    spec = reg.get(exported.name)
    assert spec.kind == "trained" and spec.path == exported.gguf.resolve()
    assert spec.sha256 == hashlib.sha256(exported.gguf.read_bytes()).hexdigest()
    lin = spec.lineage
    manifest = env["data"] / "manifest.json"
    assert lin["method"] == "leti" and lin["base"] == str(env["base"])
    assert lin["data_manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert lin["metrics"]["steps"] == 3 and lin["export"] == "merged"
    assert lin["gate"]["promoted"] is True and lin["inference_prefix"] == "<|good|>"
    assert reg.active() == exported.name  # the gate promoted it
    report = result.report_md.read_text()
    assert "| pass@1 | 2/4 50.0%" in report and "PROMOTED" in report
    assert result.report_png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ExportError, match="cannot carry"):
        export_run(
            result.train.run_dir,
            cache_dir=env["cache"],
            data_dir=env["registry"],
            lora_only=True,
            name="x",
            progress=False,
        )


def test_lora_only_export_applies_to_a_quantized_gguf_base(env: dict[str, Path]) -> None:
    from llama_cpp import Llama

    from agent.models import Registry
    from trainer.export.converter import ensure_converter
    from trainer.export.pipeline import export_run
    from trainer.export.quantize import quantize

    conv = ensure_converter(env["cache"])
    f16 = env["runs"].parent / "tiny-f16.gguf"
    conv.run(conv.hf_script, [str(env["base"]), "--outfile", str(f16), "--outtype", "f16"])
    base_gguf = quantize(f16, env["runs"].parent / "tiny-Q8_0.gguf", "Q8_0")
    assert base_gguf.stat().st_size < f16.stat().st_size

    run = _train(env, "sft", base_gguf)  # the base is dequantized by transformers
    result = export_run(
        run, cache_dir=env["cache"], data_dir=env["registry"], lora_only=True, progress=False
    )
    assert result.adapter is not None and result.adapter.read_bytes()[:4] == b"GGUF"
    assert result.gguf == base_gguf.resolve()
    spec = Registry(env["registry"]).get(result.name)
    assert spec.adapter == result.adapter.resolve() and spec.lineage["export"] == "lora"

    def last_logits(lora: Path | None) -> list[float]:
        with model_params(repack=repack_enabled(None)):
            llm = Llama(
                model_path=str(base_gguf),
                lora_path=str(lora) if lora else None,
                n_ctx=64,
                logits_all=True,
                verbose=False,
            )
        llm.eval(llm.tokenize(b"def add(a, b):"))
        out = [float(x) for x in llm.scores[llm.n_tokens - 1][:200]]
        llm.close()
        return out

    plain, tuned = last_logits(None), last_logits(result.adapter)
    assert max(abs(a - b) for a, b in zip(plain, tuned, strict=True)) > 1e-3


def test_unknown_quantization_is_refused() -> None:
    from trainer.export.quantize import QuantizeError, check_quant

    assert check_quant("q8_0") == "Q8_0"
    with pytest.raises(QuantizeError, match="Q4_K_M, Q8_0"):
        check_quant("Q3_K")


def test_generation_check_reads_the_logits_llama_cpp_computed(
    env: dict[str, Path], tmp_path: Path
) -> None:
    """Regression: the check read `Llama.scores` without `logits_all`, i.e. uninitialized
    memory, so a model with NaN weights could pass and a healthy one could fail."""
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.export.check import GenerationCheckError, check_generates
    from trainer.export.converter import ensure_converter

    conv = ensure_converter(env["cache"])

    def to_gguf(model_dir: Path, name: str) -> Path:
        out = tmp_path / f"{name}.gguf"
        conv.run(conv.hf_script, [str(model_dir), "--outfile", str(out), "--outtype", "f32"])
        return out

    healthy = check_generates(to_gguf(env["base"], "healthy"))
    assert healthy.tokens > 0 and healthy.logit_max > healthy.logit_min

    model = AutoModelForCausalLM.from_pretrained(str(env["base"]), dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    broken_dir = tmp_path / "broken"
    model.save_pretrained(broken_dir)
    for f in env["base"].iterdir():  # the tokenizer files the converter needs
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            (broken_dir / f.name).write_bytes(f.read_bytes())
    with pytest.raises(GenerationCheckError, match="non-finite logits"):
        check_generates(to_gguf(broken_dir, "broken"))


def test_two_runs_started_in_the_same_second_get_different_version_names() -> None:
    """`new_run_dir` adds -2 to the second run of a second; the version name keeps it (the
    retrain test world trains twice within one second, and the second export was refused)."""
    from trainer.export.pipeline import version_name

    meta = {"base": {"name": "qwen2.5-coder-0.5b"}, "config": {"method": "sft"}}
    first = version_name(Path("runs/20261201-083415-sft"), meta)
    second = version_name(Path("runs/20261201-083415-sft-2"), meta)
    assert first == "qwen2.5-coder-0.5b-sft-20261201-083415"
    assert second == "qwen2.5-coder-0.5b-sft-20261201-083415-2"
