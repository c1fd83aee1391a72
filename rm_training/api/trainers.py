"""What each RLHF trainer sends, turned into what the scorer reads: OpenRLHF's rendered queries,
verl's texts for vLLM's /classify and SGLang's /v1/embeddings (already in the reward model's chat
template, leading BOS stripped), and NeMo Gym's OpenAI Responses request + Response pairs."""

from __future__ import annotations

from ..scoring import Item, Scorer


class ProtocolError(ValueError):
    """The payload is well-formed JSON but not a conversation this protocol can carry (-> 422)."""


def openrlhf_text(sc: Scorer, query: str, prompt: str | None) -> str:
    """OpenRLHF's query is prompt + response as the policy rendered it (decoded with its special
    tokens). A query already in this model's chat template (it opens as this template opens a
    conversation: its BOS, or the text before the first role name, e.g. ChatML's `<|im_start|>`)
    is scored as it is; else, when `prompt` is its prefix, the rest is scored as the response to
    that prompt in this model's template; anything else as a response with no context."""
    tok = sc.tokenizer
    pad, eos = tok.pad_token or "", tok.eos_token or ""
    q = query
    for t in (pad, eos):  # OpenRLHF's own server strips pad/eos around a query the same way
        if t:
            while q.endswith(t):
                q = q[: -len(t)]
            while q.startswith(t):
                q = q[len(t):]
    opening, closes_with_eos = _template_marks(sc)
    if opening and q.startswith(opening):  # already rendered with this model's template
        return q + (eos if closes_with_eos else "")
    if prompt is not None and q.startswith(prompt) and prompt:
        return sc.text(Item([{"role": "user", "content": prompt}], q[len(prompt):]))
    return sc.text(Item([], q))


def _template_marks(sc: Scorer) -> tuple[str, bool]:
    """How this model's chat template opens a conversation (the text before the first role name or,
    without one, before the first message's content) and whether it ends one with the EOS token."""
    probe = sc.text(Item([{"role": "user", "content": "\u2063Q\u2063"}], "\u2063A\u2063"))
    head = probe[: probe.index("\u2063Q")]
    if "user" in head:
        head = head[: head.index("user")]
    eos = sc.tokenizer.eos_token or ""
    return head.strip() and head, bool(eos) and probe.endswith(eos)


def template_bos(sc: Scorer) -> str:
    """The BOS text this model's chat template starts a conversation with ('' when none): verl
    strips it from the rendered text before sending, and vLLM adds the BOS token back when it
    tokenizes, so this server puts it back too."""
    bos = sc.tokenizer.bos_token or ""
    if not bos:
        return ""
    probe = sc.text(Item([{"role": "user", "content": "x"}], "y"))
    return bos if probe.startswith(bos) else ""


def rendered_text(sc: Scorer, text: str, bos: str) -> str:
    """A text rendered by the client with this model's template, as /v1/score would have rendered it."""
    return text if not bos or text.startswith(bos) else bos + text


def _text_of(content, where: str) -> str:
    """The text of an OpenAI Responses content: a string, or a list of parts whose `text` fields
    are joined (input_text, output_text, text); other parts (images, files, refusals) carry none."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for k, part in enumerate(content):
            if not isinstance(part, dict):
                raise ProtocolError(f"{where}[{k}]: a content part must be an object with a type, got {type(part).__name__}")
            if isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                parts.append(part["refusal"])
        return "".join(parts)
    raise ProtocolError(f"{where}: content must be a string or a list of content parts, got {type(content).__name__}")


def responses_conversation(params: dict, response: dict) -> tuple[list[dict], str]:
    """(context, response text) from NeMo Gym's verify payload. `responses_create_params`:
    `instructions` (a system turn) and `input` (a string: one user turn; or a list of message
    items {role, content}, tool calls and their outputs skipped). `response.output`: the assistant
    message items' output text, joined; reasoning and tool-call items are not part of the answer."""
    context: list[dict] = []
    if isinstance(params.get("instructions"), str) and params["instructions"]:
        context.append({"role": "system", "content": params["instructions"]})
    inp = params.get("input")
    if isinstance(inp, str):
        context.append({"role": "user", "content": inp})
    elif isinstance(inp, list):
        for k, item in enumerate(inp):
            if not isinstance(item, dict):
                raise ProtocolError(f"responses_create_params.input[{k}]: an input item must be an object, got {type(item).__name__}")
            if item.get("type", "message") != "message" or "role" not in item:
                continue  # function_call / function_call_output / reasoning items
            if not isinstance(item["role"], str):
                raise ProtocolError(f"responses_create_params.input[{k}].role: expected a string (user, assistant, system, developer), got {type(item['role']).__name__}")
            role = "system" if item["role"] == "developer" else item["role"]
            context.append({"role": role, "content": _text_of(item.get("content", ""), f"responses_create_params.input[{k}].content")})
    else:
        raise ProtocolError("responses_create_params.input: give the conversation as a string or a list of message items")
    output = response.get("output")
    if not isinstance(output, list):
        raise ProtocolError("response.output: the OpenAI Response must have an output list")
    texts = []
    for k, item in enumerate(output):
        if isinstance(item, dict) and item.get("type", "message") == "message" and item.get("role", "assistant") == "assistant":
            texts.append(_text_of(item.get("content", []), f"response.output[{k}].content"))
    if not texts:
        raise ProtocolError("response.output: no assistant message to score (only reasoning or tool-call items)")
    return context, "".join(texts)
