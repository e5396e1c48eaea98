"""Prompts from the user's own JSONL file, one conversation a line, in any of three layouts:

    {"prompt": "..."}
    {"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]}
    {"conversations": [{"from": "system" | "human" | "gpt", "value": "..."}, ...]}   # ShareGPT

A line gives a system text (its system messages, "" if none) and its user messages in order; the
recorded answers are dropped, since the server under test answers itself. A request without
sessions sends the system text and first user message of its line (to a chat endpoint as a system
message and a user message, to a completions endpoint joined by a newline); a session's turns send
the user messages of its line one by one (again from the first if the session has more turns),
after the same system message.
"""

import json
from pathlib import Path

import msgspec

from metron.prompts import PREFIX_SEPARATOR
from metron.sessions import Turn, first_turn

_ROLES = {"messages": ("role", "content", "system", "user"), "conversations": ("from", "value", "system", "human")}


class Conversation(msgspec.Struct, frozen=True):
    system: str
    user_messages: list[str]

    def user_message(self, turn: int) -> str:
        return self.user_messages[turn % len(self.user_messages)]

    def first_turn(self, prefix: str = "") -> Turn:
        """The line's first turn after the run's shared `prefix` ("" for none), which joins the
        system text."""
        head = prefix + PREFIX_SEPARATOR if prefix else ""
        if self.system:
            return first_turn(self.user_messages[0], system=head + self.system)
        return first_turn(head + self.user_messages[0])


def read_prompts_file(path: str | Path) -> list[Conversation]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"the prompts file (--prompts-file) {path} does not exist")
    conversations = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                conversations.append(_conversation(json.loads(line)))
            except (json.JSONDecodeError, ValueError) as error:
                raise ValueError(f"the prompts file (--prompts-file) {path} line {number}: {error}") from None
    if not conversations:
        raise ValueError(f"the prompts file (--prompts-file) {path} holds no prompts")
    return conversations


def _conversation(entry: object) -> Conversation:
    if not isinstance(entry, dict):
        raise ValueError("a line must be a JSON object")
    if isinstance(entry.get("prompt"), str) and entry["prompt"]:
        return Conversation("", [entry["prompt"]])
    for layout, (role_key, text_key, system_role, user_role) in _ROLES.items():
        turns = entry.get(layout)
        if turns is None:
            continue
        if not isinstance(turns, list) or not all(
            isinstance(t, dict) and isinstance(t.get(role_key), str) and isinstance(t.get(text_key), str) for t in turns
        ):
            raise ValueError(f'"{layout}" must be a list of objects with string "{role_key}" and "{text_key}"')
        system = "\n".join(t[text_key] for t in turns if t[role_key] == system_role)
        users = [t[text_key] for t in turns if t[role_key] == user_role and t[text_key]]
        if not users:
            raise ValueError(f'"{layout}" holds no non-empty "{user_role}" turn')
        return Conversation(system, users)
    raise ValueError('a line needs a non-empty "prompt", a "messages" list or a ShareGPT "conversations" list')
