"""The RLHF trainers' own protocols against a real `helpsteer serve` process: OpenRLHF's remote
reward client (its real code), verl's reward-loop request code (its real functions, read from the
installed verl source), NeMo Gym's verify payload, and TRL's GRPOTrainer rewarded by a run
directory by path and by `rm_training.reward_function` over HTTP. Each reward is checked against
/v1/score or `helpsteer score` of the same conversation."""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
import types
from types import SimpleNamespace

import httpx
import numpy as np
import polars as pl
import pytest
from conftest import ROOT, run_cli

CLIENTS = ROOT / ".cache" / "rlhf-clients"  # `make rlhf-clients`: openrlhf and verl installed --no-deps


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two small BT runs: a tiny Llama fine-tuned from a checkpoint with a ChatML template (loads in
    plain transformers) and the NemotronH preset (loads with trust_remote_code); and a regression run."""
    from checkpoints import build

    from helpsteer.synth import SynthConfig, write_synthetic

    root = tmp_path_factory.mktemp("trainers")
    write_synthetic(SynthConfig(seed=12, n_prompts=40), root / "syn")
    ws = root / "ws"
    assert run_cli("ingest", root / "syn" / "helpsteer2" / "preference" / "preference.jsonl.gz", "--workspace", ws, "--name", "pref") == 0
    assert run_cli("ingest", root / "syn" / "helpsteer2" / "train.jsonl.gz", "--workspace", ws, "--name", "hs2") == 0
    common = ["--workspace", ws, "--objective", "bt", "--name", "pref", "--max_steps", "6", "--max_length", "96", "--save_strategy", "no", "--dtype", "float32"]
    assert run_cli("train", *common, "--backbone", build("llama-chatml", root / "llama"), "--learning_rate", "1e-3", "--out", "llama") == 0
    assert run_cli("train", *common, "--backbone", "tiny", "--out", "nemotron") == 0
    assert run_cli("train", "--workspace", ws, "--name", "hs2", "--objective", "regression", "--backbone", "tiny", "--max_steps", "4",
                   "--max_length", "96", "--save_strategy", "no", "--dtype", "float32", "--out", "regression") == 0
    return {"ws": ws, "root": root, **{k: ws / "runs" / k for k in ("llama", "nemotron", "regression")}}


@pytest.fixture(scope="module")
def server(runs):
    from serve_process import Server

    with Server(runs["llama"], "--device", "cpu") as srv:
        yield srv


def _score(url: str, messages: list[dict], response: str) -> dict:
    r = httpx.post(url + "/v1/score", json={"items": [{"messages": messages, "response": response}]}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["scores"][0]


CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]
ANSWER = "Paris is the capital of France."


def test_config_carries_openrlhf_normalisation_and_the_nemotron_head_code(runs):
    for k in ("llama", "nemotron"):
        cfg = json.loads((runs[k] / "config.json").read_text())
        assert cfg["mean"] == cfg["reward_mean"] and cfg["std"] == cfg["reward_std"] > 0
    cfg = json.loads((runs["nemotron"] / "config.json").read_text())
    assert cfg["auto_map"] == {"AutoModelForSequenceClassification": "modeling_helpsteer_reward.NemotronHForSequenceClassification"}
    assert "trust_remote_code=True" in (runs["nemotron"] / "README.md").read_text()
    assert "auto_map" not in json.loads((runs["llama"] / "config.json").read_text())


@pytest.mark.slow
def test_nemotron_run_loads_with_trust_remote_code_without_this_package(runs):
    """A fresh interpreter that never imports rm_training loads the NemotronH run through
    auto_map and gives the Scorer's logits."""
    from rm_training.scoring import Scorer

    sc = Scorer(runs["nemotron"], device="cpu")
    text = sc.text(__import__("rm_training.scoring", fromlist=["Item"]).Item(CONV, ANSWER))
    want = float(sc.logits(sc.encode_texts([text])[0])[0, 0])
    code = ("import sys, json, torch; from transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
            f"p = {str(runs['nemotron'])!r}\n"
            "m = AutoModelForSequenceClassification.from_pretrained(p, num_labels=1, trust_remote_code=True); t = AutoTokenizer.from_pretrained(p)\n"
            f"enc = t([{text!r}], add_special_tokens=False, return_tensors='pt')\n"
            "assert 'rm_training' not in sys.modules\n"
            "print(json.dumps(float(m(**enc).logits[0, 0])))")
    out = subprocess.run([sys.executable, "-c", code], cwd=runs["root"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == pytest.approx(want, abs=1e-5)


def _openrlhf_agent():
    if not (CLIENTS / "openrlhf" / "utils" / "agent.py").exists():
        pytest.skip(f"OpenRLHF's client is not installed in {CLIENTS} (make rlhf-clients)")
    # openrlhf/utils/__init__.py imports its training stack (deepspeed, pylatexenc); the remote
    # reward client (agent.py) needs only aiohttp and its logging module, so those load for real
    # from the installed package with the package __init__ files skipped
    for name, sub in (("openrlhf", "openrlhf"), ("openrlhf.utils", "openrlhf/utils")):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(CLIENTS / sub)]
            sys.modules[name] = pkg
    import importlib

    return importlib.import_module("openrlhf.utils.agent")


@pytest.mark.slow
def test_openrlhf_remote_reward_client_gets_rewards_scores_and_extra_logs(runs, server):
    """OpenRLHF's SingleTurnAgentExecutor._fetch_rewards_via_http (aiohttp, 180 s timeout, 5 retries,
    no auth) posts {query, prompts, labels}; the reward equals /v1/score of the conversation, the
    score is sigmoid(reward - mean) in [0, 1]."""
    from transformers import AutoTokenizer

    agent = _openrlhf_agent()
    tok = AutoTokenizer.from_pretrained(runs["llama"])
    prompt = tok.apply_chat_template(CONV, tokenize=False)
    query = tok.apply_chat_template(CONV + [{"role": "assistant", "content": ANSWER}], tokenize=False)
    ex = agent.SingleTurnAgentExecutor(remote_rm_url=server.url + "/get_reward")
    out = asyncio.run(ex._fetch_rewards_via_http([query], [prompt], ["Paris"]))[0]
    want = _score(server.url, CONV, ANSWER)["reward"]
    assert out["rewards"][0] == pytest.approx(want, abs=1e-5)
    mean = json.loads((runs["llama"] / "config.json").read_text())["mean"]
    assert out["scores"][0] == pytest.approx(1 / (1 + np.exp(-(want - mean))), abs=1e-6)
    assert out["extra_logs"] == {}


def _verl_functions():
    """verl's RewardLoopWorker request code (_preprocess_reward_inputs, compute_score_disrm,
    _post_request), its real source read from the installed verl: the module itself imports ray,
    tensordict and omegaconf, which this CPU environment does not install."""
    src = CLIENTS / "verl" / "experimental" / "reward_loop" / "reward_loop.py"
    if not src.exists():
        pytest.skip(f"verl is not installed in {CLIENTS} (make rlhf-clients)")
    tree = ast.parse(src.read_text())
    worker = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RewardLoopWorker")
    keep = [f for f in worker.body if isinstance(f, ast.AsyncFunctionDef) and f.name in ("_preprocess_reward_inputs", "compute_score_disrm", "_post_request")]
    assert len(keep) == 3, "verl's RewardLoopWorker changed: update this test"
    import logging

    import aiohttp

    ns = {"aiohttp": aiohttp, "asyncio": asyncio, "logger": logging.getLogger("verl")}
    cls = ast.ClassDef(name="Worker", bases=[], keywords=[], body=keep, decorator_list=[], type_params=[])
    exec(compile(ast.fix_missing_locations(ast.Module(body=[cls], type_ignores=[])), str(src), "exec"), ns)
    return ns["Worker"]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_verl_reward_loop_scores_like_v1_score(runs, server, engine):
    """verl renders the conversation with the RM's chat template, strips a leading BOS, and posts
    to /classify (vLLM: data[-1].probs[-1]) or /v1/embeddings (SGLang: data[-1].embedding[-1])."""
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(runs["llama"])
    w = _verl_functions()()
    w.reward_router_address = server.url.removeprefix("http://")
    w.input_tokenizer = w.reward_model_tokenizer = tok
    w.config = SimpleNamespace(reward=SimpleNamespace(reward_model=SimpleNamespace(rollout=SimpleNamespace(name=engine), model_path=str(runs["llama"]))))
    resp = tok(ANSWER, add_special_tokens=False)["input_ids"]
    item = SimpleNamespace(non_tensor_batch={"raw_prompt": np.array(CONV, dtype=object)},
                           batch={"responses": torch.tensor(resp), "attention_mask": torch.ones(5 + len(resp), dtype=torch.long)})
    got = asyncio.run(w.compute_score_disrm([item]))["reward_score"]
    assert got == pytest.approx(_score(server.url, CONV, ANSWER)["reward"], abs=1e-5)


def test_pooling_endpoints_put_bos_back_and_validate(runs, server):
    """The exact vLLM/SGLang payloads: one text or a list; BOS stripped or not gives the same reward;
    bad input is a 4xx with one sentence."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(runs["llama"])
    text = tok.apply_chat_template(CONV + [{"role": "assistant", "content": ANSWER}], tokenize=False)
    want = _score(server.url, CONV, ANSWER)["reward"]
    stripped = text.removeprefix(tok.bos_token) if tok.bos_token else text
    r = httpx.post(server.url + "/classify", json={"model": "rm", "input": [stripped, text], "activation": False}, timeout=60).json()
    assert [d["probs"][-1] for d in r["data"]] == pytest.approx([want, want], abs=1e-5)
    assert r["data"][0]["num_classes"] == 1 and r["usage"]["prompt_tokens"] > 0 and r["model"] == "rm"
    act = httpx.post(server.url + "/classify", json={"input": stripped, "use_activation": True}, timeout=60).json()
    assert act["data"][0]["probs"][-1] == pytest.approx(1 / (1 + np.exp(-want)), abs=1e-6)
    e = httpx.post(server.url + "/v1/embeddings", json={"model": "rm", "input": stripped}, timeout=60).json()
    assert e["data"][-1]["embedding"][-1] == pytest.approx(want, abs=1e-5) and e["object"] == "list"
    for path, body, status, detail in [
        ("/classify", {"model": "rm"}, 422, "input: Field required"),
        ("/classify", {"input": []}, 422, "input: an empty list; give a text or a list of texts"),
        ("/v1/embeddings", {"input": 3}, 422, "input: must be a text or a list of texts (already rendered with the model's chat template), got int"),
        ("/v1/embeddings", {"input": ["a", {"t": 1}]}, 422,
         "input: must be a text or a list of texts (already rendered with the model's chat template), got list items"),
        ("/verify", {"responses_create_params": {"input": "hi"}}, 422, "response: Field required"),
        ("/verify", {"responses_create_params": {"input": "hi"}, "response": {"output": [{"type": "reasoning", "summary": []}]}}, 422,
         "response.output: no assistant message to score (only reasoning or tool-call items)"),
        ("/verify", {"responses_create_params": {"input": [{"role": 5, "content": "x"}]}, "response": {"output": []}}, 422,
         "responses_create_params.input[0].role: expected a string (user, assistant, system, developer), got int"),
        ("/verify", {"responses_create_params": {"input": 5}, "response": {"output": []}}, 422,
         "responses_create_params.input: give the conversation as a string or a list of message items"),
    ]:
        r = httpx.post(server.url + path, json=body, timeout=60)
        assert (r.status_code, r.json()["detail"]) == (status, detail), (path, body)


NEMO_GYM_VERIFY = {
    # NeMo Gym's resources_servers/library_judge_math/client.py: a Responses create params + an
    # OpenAI Response object, plus the task's own fields
    "responses_create_params": {"instructions": "Be brief.", "input": [{"role": "user", "content": "What is the capital of France?"}]},
    "response": {"id": "response_1", "created_at": 1.0, "model": "model_1", "object": "response",
                 "output": [{"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking"}]},
                            {"id": "message_1", "content": [{"annotations": [], "text": ANSWER, "type": "output_text"}], "role": "assistant",
                             "status": "completed", "type": "message"}],
                 "parallel_tool_calls": False, "tool_choice": "none", "tools": []},
    "question": "What is the capital of France?", "expected_answer": "Paris",
}


def test_nemo_gym_verify_echoes_the_request_with_reward_and_components(server):
    r = httpx.post(server.url + "/verify", json=NEMO_GYM_VERIFY, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    want = _score(server.url, CONV, ANSWER)["reward"]
    assert out["reward"] == pytest.approx(want, abs=1e-5)
    assert out["reward_components"] == {"reward": pytest.approx(want, abs=1e-5)}
    for k, v in NEMO_GYM_VERIFY.items():
        assert out[k] == v


@pytest.mark.slow
def test_regression_run_reports_attributes_to_every_trainer(runs):
    from serve_process import Server

    with Server(runs["regression"], "--device", "cpu") as srv:
        s = _score(srv.url, CONV, ANSWER)
        g = httpx.post(srv.url + "/get_reward", json={"query": [ANSWER], "prompts": ["x"]}, timeout=60).json()
        assert set(g["extra_logs"]) == set(s["attributes"]) and 0 <= g["scores"][0] <= 1
        v = httpx.post(srv.url + "/verify", json=NEMO_GYM_VERIFY, timeout=60).json()
        assert v["reward_components"] == pytest.approx(s["attributes"], abs=1e-5)
        from transformers import AutoTokenizer

        text = AutoTokenizer.from_pretrained(runs["regression"]).apply_chat_template(CONV + [{"role": "assistant", "content": ANSWER}], tokenize=False)
        c = httpx.post(srv.url + "/classify", json={"input": [text]}, timeout=60).json()["data"][0]
        assert c["num_classes"] == len(s["attributes"]) + 1 and c["probs"][:-1] == pytest.approx(list(s["attributes"].values()), abs=1e-5)
        assert c["probs"][-1] == pytest.approx(s["reward"], abs=1e-5)


@pytest.mark.slow
def test_trl_grpo_rewarded_by_the_run_directory_and_by_reward_function_over_http(runs, server, tmp_path):
    """A few GRPOTrainer steps on the CPU with a tiny policy: the rewards it logs for the run
    directory (loaded by path, plain transformers) and for reward_function(URL) equal `helpsteer
    score` of the same completions."""
    import datasets
    from checkpoints import build
    from trl import GRPOConfig, GRPOTrainer

    from rm_training import reward_function

    policy = build("llama-chatml", tmp_path / "policy")
    seen: list[tuple] = []

    def recorder(prompts, completions, **kwargs):
        seen.extend(zip(prompts, completions))
        return [0.0] * len(prompts)

    http = reward_function(server.url)
    prompts = [[{"role": "user", "content": q}] for q in ("What is the capital of France?", "Name a prime number.", "How do I sort a list?", "Say hi.")]
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4, num_generations=2, max_completion_length=8, max_steps=2,
                      logging_steps=1, learning_rate=1e-5, report_to="none", use_cpu=True, bf16=False, seed=0, reward_weights=[1.0, 0.0, 0.0],
                      save_strategy="no")
    trainer = GRPOTrainer(model=str(policy), reward_funcs=[str(runs["llama"]), http, recorder], args=args,
                          train_dataset=datasets.Dataset.from_dict({"prompt": prompts}))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/llama/mean" in h]
    assert len(logs) == 2 and len(seen) == 8
    rows = [{"messages": p, "response": c[-1]["content"]} for p, c in seen]
    data = tmp_path / "completions.jsonl"
    # (HelpSteer2's shape, the ratings there only to make it one: score reads the responses)
    attrs = dict.fromkeys(("helpfulness", "correctness", "coherence", "complexity", "verbosity"), 2)
    data.write_text("".join(json.dumps({"prompt": r["messages"][0]["content"], "response": r["response"], **attrs}) + "\n" for r in rows))
    assert run_cli("score", "--model", runs["llama"], "--data", data, "--out", tmp_path / "scored.parquet", "--level", "responses") == 0
    scored = pl.read_parquet(tmp_path / "scored.parquet")
    by_text = {(p, r): x for p, r, x in zip(scored["prompt"], scored["response"], scored["reward"])}
    want = [by_text[(r["messages"][0]["content"], r["response"])] for r in rows]
    for step, h in enumerate(logs):
        step_want = float(np.mean(want[4 * step : 4 * step + 4]))
        assert h["rewards/llama/mean"] == pytest.approx(step_want, abs=1e-4)
        assert h[f"rewards/{http.__name__}/mean"] == pytest.approx(step_want, abs=1e-4)
