"""PRD templates: the Markdown a new PRD starts with."""

from __future__ import annotations

STANDARD_SECTIONS = (
    ("Overview", "What is this, for whom, and why now? One paragraph."),
    ("Problem", "The problem in the customer's words, with evidence (data, quotes, tickets)."),
    ("Goals", "What success changes for users and the business."),
    ("Non-goals", "What this work deliberately does not do."),
    ("User stories", "- As a <role>, I want <capability> so that <benefit>."),
    ("Requirements", "Functional and non-functional requirements, each testable."),
    ("Success metrics", "How we will know it worked: metric, baseline, target, date."),
    ("Open questions", "- Question - owner - due date"),
)


def _standard(title: str) -> str:
    parts = [f"# {title}\n"]
    for heading, hint in STANDARD_SECTIONS:
        parts.append(f"## {heading}\n\n{hint}\n")
    return "\n".join(parts)


TEMPLATES = {
    "blank": ("Blank", "An empty document with just the title.", lambda title: f"# {title}\n"),
    "standard": ("Standard PRD", "The standard PRD sections with writing hints.", _standard),
}


def render(template: str, title: str) -> str:
    return TEMPLATES[template][2](title)


def catalogue() -> list[dict[str, object]]:
    return [
        {"id": key, "name": name, "description": description,
         "sections": [s for s, _ in STANDARD_SECTIONS] if key == "standard" else []}
        for key, (name, description, _) in TEMPLATES.items()
    ]
