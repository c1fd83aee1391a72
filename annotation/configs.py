"""Label Studio labeling configs generated from the platform's schema, and the task payloads that
go with them. Names follow ../shared/CONTRACT.md: a rating Choices is named after its attribute,
preference strength is `preference` (-3..3, negative = response A better) with its text in
`justification`, principle fulfilment is `fulfilment` (Yes/No), free-text feedback is `feedback`.
The conversation is shown with Paragraphs in dialogue layout, so multi-turn contexts read well."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from helpsteer.schema import HELPSTEER_ATTRIBUTES

KINDS = ("ratings", "preference", "principle", "feedback")

_SCALE_HINTS = {0: "0 - very poor", 1: "1", 2: "2", 3: "3", 4: "4 - excellent"}
_PREF_HINTS = {-3: "A is much better", -2: "A is better", -1: "A is slightly better", 0: "About the same",
               1: "B is slightly better", 2: "B is better", 3: "B is much better"}

_DIALOGUE = '  <Header value="Conversation"/>\n  <Paragraphs name="dialogue" value="$messages" layout="dialogue" nameKey="role" textKey="content"/>\n'


def labeling_config(kind: str, attributes: tuple[str, ...] = HELPSTEER_ATTRIBUTES, low: int = 0, high: int = 4) -> str:
    """The XML labeling config of a project kind."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    parts = ["<View>\n", _DIALOGUE]
    if kind == "preference":
        parts.append('  <Header value="Response A"/>\n  <Text name="response_a" value="$response_a"/>\n')
        parts.append('  <Header value="Response B"/>\n  <Text name="response_b" value="$response_b"/>\n')
        parts.append('  <Header value="Which response is better, and by how much?"/>\n')
        parts.append('  <Choices name="preference" toName="response_a" choice="single-radio" required="true" showInline="true">\n')
        for v in range(-3, 4):
            parts.append(f'    <Choice value="{v}" hint={quoteattr(_PREF_HINTS[v])}/>\n')
        parts.append("  </Choices>\n")
        parts.append('  <Header value="Justification"/>\n  <TextArea name="justification" toName="response_a" required="true" maxSubmissions="1" rows="3"/>\n')
    else:
        parts.append('  <Header value="Response"/>\n  <Text name="response" value="$response"/>\n')
        if kind == "ratings":
            for attr in attributes:
                parts.append(f"  <Header value={quoteattr(attr.capitalize())}/>\n")
                parts.append(f'  <Choices name={quoteattr(attr)} toName="response" choice="single-radio" required="true" showInline="true">\n')
                for v in range(low, high + 1):
                    hint = _SCALE_HINTS.get(v, str(v)) if (low, high) == (0, 4) else str(v)
                    parts.append(f'    <Choice value="{v}" hint={quoteattr(hint)}/>\n')
                parts.append("  </Choices>\n")
        elif kind == "principle":
            parts.append('  <Header value="Principle"/>\n  <Text name="principle" value="$principle"/>\n')
            parts.append('  <Choices name="fulfilment" toName="response" choice="single-radio" required="true" showInline="true">\n'
                         '    <Choice value="Yes"/>\n    <Choice value="No"/>\n  </Choices>\n')
        else:
            parts.append('  <Header value="Feedback: is the response helpful? Say what is wrong or missing."/>\n')
            parts.append('  <TextArea name="feedback" toName="response" required="true" maxSubmissions="1" rows="4"/>\n')
    parts.append("</View>\n")
    return "".join(parts)


def validate_config(xml: str) -> None:
    """Parse the config with the SDK's LabelInterface (raises on an invalid config)."""
    from label_studio_sdk.label_interface import LabelInterface

    LabelInterface(xml)
